"""Train/serve parity: what the service serves for a request equals what the offline builder
(:meth:`Predictor.features`, i.e. ``data/features.py`` and ``data/sequences.py``) makes of the same events
-- the features, the sequences, the calibrated probabilities -- and the feature logs rebuild them."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from adsformer.data.batching import make_batch
from adsformer.data.features import MERGED_PAIR
from adsformer.data.schema import Dataset, DatasetMeta
from adsformer.serving.demo import pick_users
from adsformer.serving.feature_log import read_log
from adsformer.serving.outcome import RankQuery

EVENT_COLS = ("ts", "action", "listing_id", "shop_id", "taxonomy_id", "query")
# Predictor scores a PCCVR run only on frames with a purchased column (its labels); the values are unused
_UNLABELLED = [pl.lit(1, pl.Int8).alias("clicked"), pl.lit(0, pl.Int8).alias("purchased")]


def _events(sim_data, catalog):
    """A real user's hour before one of their searches, plus edge cases: an unseen listing, an event whose
    own shop differs from its listing's, an unseen query, several actions in one second."""
    (user,) = pick_users(sim_data, 1)
    rows = [{k: r.get(k) for k in EVENT_COLS} for r in user.events.to_dicts()]
    now = int(user.events["ts"].max()) + 30
    some = catalog.ids[7]
    rows += [
        {"ts": now - 20, "action": "view", "listing_id": "l_never_seen"},
        {"ts": now - 20, "action": "view", "listing_id": some, "shop_id": "s_other"},
        {"ts": now - 20, "action": "search", "query": "a query nobody typed"},
        {"ts": now - 10, "action": "favorite", "listing_id": some},
        {"ts": now, "action": "view", "listing_id": catalog.ids[8]},  # at the request's second: excluded
    ]
    return user, rows, now


def _offline(model, catalog, key, rows, ids, query, now, bids):
    events = pl.DataFrame([{"user_id": key, **r} for r in rows], schema_overrides={"ts": pl.Int64})
    imps = pl.DataFrame(
        {"request_id": "r", "user_id": key, "ts": now, "listing_id": ids, "query": query, "bid": bids},
        schema_overrides={"ts": pl.Int64},
    ).with_columns(_UNLABELLED)
    ds = Dataset(catalog.listings, events, imps, DatasetMeta(name="parity", source="tests"))
    predictor = model.predictor
    fs = predictor.features(ds)
    return fs, predictor.predict_features(fs)


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_served_features_equal_the_offline_builder(store, make_service, catalog, sim_data, request, tmp_path):
    url = request.getfixturevalue("redis_server").url if store == "redis" else None
    service = make_service(redis_url=url, feature_log_dir=tmp_path / "log")
    user, rows, now = _events(sim_data, catalog)
    key = f"browser:{user.user_id}" if user.user_id.startswith("b_") else f"user:{user.user_id}"
    service.clock = lambda: float(now)  # the server clock of the replayed request
    service.ingest(key, rows)
    out = service.rank(RankQuery(query=user.query, user_key=key, n=10_000, ts=now))
    assert out.personalized and out.candidates > 5 and out.history_events > 5

    # every candidate: the service's own feature builder against the offline one, for both runs
    ids = [c.listing_id for c in service.retrieve(RankQuery(query=user.query))[0]]
    bids = service.bids(ids)
    state = service.store.read(key, service.pairs, now)
    for model in service.models:
        online = model.features(ids, query=user.query, state=state, now=now, bids=bids)
        fs, p_offline = _offline(model, catalog, key, rows, ids, user.query, now, bids)
        batch = make_batch(fs, np.arange(len(ids)))
        for e in online.target:
            assert np.array_equal(online.target[e].numpy(), batch.target[e].numpy()), e
        assert set(online.categorical) == set(batch.categorical)
        for c in online.categorical:
            assert np.array_equal(online.categorical[c].numpy(), batch.categorical[c].numpy()), c
        assert "rank(price)" in fs.dense_names  # request-relative features: ranked over the same candidates
        np.testing.assert_allclose(online.dense.numpy(), batch.dense.numpy(), rtol=0, atol=1e-7)
        assert set(online.seq_ids) == set(batch.seq_ids) == set(model.pairs)
        for pair in model.pairs:
            n = int(online.seq_len[pair][0])
            assert (batch.seq_len[pair].numpy() == n).all(), pair
            assert np.array_equal(batch.seq_ids[pair][0, :n].numpy(), online.seq_ids[pair][0, :n].numpy()), (
                pair
            )
        assert sum(int(v[0]) for v in online.seq_len.values()) > 10  # the sequences are not trivially empty
        # the touch signals, matched on raw ids on both sides by the one function
        assert online.touch is not None and batch.touch is not None
        np.testing.assert_array_equal(online.touch.numpy(), batch.touch.numpy())
        assert (online.touch[:, :, 0] > 0).any()  # some candidate's listing, shop or taxonomy was touched
        np.testing.assert_allclose(model.probabilities(online), p_offline, rtol=0, atol=1e-6)

    # the served ads carry exactly the offline probabilities
    shown = [a.listing_id for a in out.ads]
    p_ctr = dict(
        zip(ids, _offline(service.ctr, catalog, key, rows, ids, user.query, now, bids)[1], strict=True)
    )
    np.testing.assert_allclose([a.p_ctr for a in out.ads], [p_ctr[i] for i in shown], rtol=0, atol=1e-6)

    # the feature logs are a dataset: offline features from them give the served probabilities
    service.feature_log.flush()
    events_log = read_log(tmp_path / "log", "events")
    imps_log = read_log(tmp_path / "log", "impressions")
    requests_log = read_log(tmp_path / "log", "requests")
    assert events_log.height == len(rows) and imps_log.height == len(shown)
    ds = Dataset(
        catalog.listings,
        events_log,
        imps_log.with_columns(_UNLABELLED),
        DatasetMeta(name="from-logs", source="feature log", has_conversions=True),
    )
    np.testing.assert_allclose(
        service.ctr.predictor.predict_dataset(ds), imps_log["p_ctr"].to_numpy(), atol=1e-6
    )
    np.testing.assert_allclose(
        service.pccvr.predictor.predict_dataset(ds), imps_log["p_pccvr"].to_numpy(), atol=1e-6
    )
    logged = {s["pair"]: s["ids"] for s in requests_log["sequences"][0]}
    fs = service.ctr.predictor.features(ds)
    vocabs, encoders = service.ctr.predictor.artifact.vocabs, service.ctr.online.encoders

    def known(entity: str, v: str) -> str:
        return v if v in encoders[entity].index else "<oov>"

    for pair, column in fs.sequences.items():
        ids_, lengths = column.padded(np.array([0]))
        tokens = ids_[0, : lengths[0]]
        if pair == MERGED_PAIR:  # packed listing * A + action; logged as "ACTION LISTING"
            A = vocabs["action"].size
            decoded = [
                f"{a} {li}"
                for a, li in zip(
                    vocabs["action"].decode(tokens % A), vocabs["listing"].decode(tokens // A), strict=True
                )
            ]
            served = [
                f"{known('action', v.split(' ', 1)[0])} {known('listing', v.split(' ', 1)[1])}"
                for v in logged.get(pair, [])
            ]
            assert served, "the merged sequence is served"
        else:
            decoded = vocabs[pair.split(":")[0]].decode(tokens)
            served = [known(pair.split(":")[0], v) for v in logged.get(pair, [])]
        assert decoded == served, pair
