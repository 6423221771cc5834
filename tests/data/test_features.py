import numpy as np
import polars as pl

from adsformer.config import DataConfig, SplitConfig, apply_overrides
from adsformer.data.batching import iterate_batches, make_batch
from adsformer.data.features import build_features
from adsformer.data.splits import TRAIN


def _cfg(**over):
    cfg = DataConfig(split=SplitConfig(mode="fraction", val_fraction=0.2, test_fraction=0.2))
    return apply_overrides(cfg, over)


def test_pairs_all_resolves_present_pairs(tiny_dataset):
    fs = build_features(tiny_dataset, _cfg())
    assert set(fs.info.pairs) == {
        "listing:view",
        "shop:view",
        "taxonomy:view",
        "listing:favorite",
        "shop:favorite",
        "taxonomy:favorite",
        "query:search",
        "c_color:view",  # listing attributes become entities too
        "c_color:favorite",
        "listing:any",  # the merged listing sequence: listings come with two actions
    }


def test_merged_listing_sequence_packs_listing_and_action_in_time_order(tiny_dataset):
    fs = build_features(tiny_dataset, _cfg(pairs=["all"]))
    imps = tiny_dataset.impressions
    row = imps.with_row_index().filter((pl.col("request_id") == "r1a") & (pl.col("listing_id") == "l1"))[
        "index"
    ][0]
    ids, lengths = fs.sequences["listing:any"].padded(np.array([row]))
    tokens = ids[0, : lengths[0]]
    A = fs.vocabs["action"].size
    assert fs.vocabs["listing"].decode(tokens // A) == ["l3", "l3", "l1"]  # newest first, every action
    assert fs.vocabs["action"].decode(tokens % A) == ["favorite", "view", "view"]
    assert fs.listing_pair("auto") == "listing:view"  # views exist: the paper's sequence
    no_views = build_features(tiny_dataset, _cfg(pairs=["listing:favorite", "listing:any"]))
    assert no_views.listing_pair("auto") == "listing:any"
    only_fav = build_features(tiny_dataset, _cfg(pairs=["listing:favorite", "shop:view"]))
    assert only_fav.listing_pair("auto") == "listing:favorite"


def test_sequences_are_the_users_recent_events(tiny_dataset):
    fs = build_features(tiny_dataset, _cfg(pairs=["listing:view", "shop:view", "query:search"]))
    imps = tiny_dataset.impressions
    row = imps.with_row_index().filter((pl.col("request_id") == "r0a") & (pl.col("listing_id") == "l1"))[
        "index"
    ][0]
    ids, lengths = fs.sequences["listing:view"].padded(np.array([row]))
    decoded = fs.vocabs["listing"].decode(ids[0, : lengths[0]])
    assert decoded == ["l3", "l1"]  # newest first
    shops = fs.vocabs["shop"].decode(fs.sequences["shop:view"].padded(np.array([row]))[0][0, :2])
    assert shops == ["s2", "s1"]  # filled in from the listings table
    # u2's request at base+30 sees the search at +15 and view at +25
    row_b = imps.with_row_index().filter(pl.col("request_id") == "r0b")["index"][0]
    q = fs.sequences["query:search"].padded(np.array([row_b]))[0][0]
    assert fs.vocabs["query"].decode(q[:1]) == ["mug"]
    # u3 has no events: empty sequence everywhere
    row_c = imps.with_row_index().filter(pl.col("request_id") == "r0c")["index"][0]
    assert all(col.length[row_c] == 0 for col in fs.sequences.values())


def test_listing_attribute_sequences(tiny_dataset):
    fs = build_features(tiny_dataset, _cfg(pairs=["c_color:view"]))
    row = tiny_dataset.impressions.with_row_index().filter(pl.col("request_id") == "r0a")["index"][0]
    ids, n = fs.sequences["c_color:view"].padded(np.array([row]))
    assert fs.vocabs["c_color"].decode(ids[0, : n[0]]) == ["gold", "red"]  # colors of l3, l1, newest first


def test_window_override_empties_sequences(tiny_dataset):
    fs = build_features(tiny_dataset, _cfg(window_s=5))
    users = tiny_dataset.impressions["user_id"].to_numpy()
    lengths = fs.sequences["listing:view"].length
    # u1 requests at +40, last view at +20: outside a 5 s window; u2 viewed at +25, request at +30: inside
    assert (lengths[users == "u1"] == 0).all()
    assert (lengths[users == "u2"] == 1).all()


def test_vocab_fit_on_training_split_only(tiny_dataset):
    ds = tiny_dataset
    u1 = ds.impressions.with_row_index().filter(pl.col("user_id") == "u1").sort("ts").tail(1)
    late, last = u1["ts"][0], u1["index"][0]
    extra_listing = pl.DataFrame({"listing_id": ["l_new"]})
    ds.listings = pl.concat([ds.listings, extra_listing], how="diagonal_relaxed")
    ds.events = pl.concat(
        [
            ds.events,
            pl.DataFrame(
                {
                    "user_id": ["u1"],
                    "ts": [late - 1],
                    "action": ["view"],
                    "listing_id": ["l_new"],
                    "query": [None],
                },
                schema=ds.events.schema,
            ),
        ]
    )
    fs = build_features(ds, _cfg())
    assert "l_new" not in fs.vocabs["listing"].ids  # only seen after the training period
    ids, _ = fs.sequences["listing:view"].padded(np.array([last]))
    assert ids[0, 0] == 1  # OOV at evaluation time, never a crash


def test_dense_standardized_with_training_stats(tiny_dataset):
    fs = build_features(tiny_dataset, _cfg())
    assert fs.dense_names == ["price", "rank(price)"]  # the price and its rank within the request
    train = fs.dense[fs.split.split == TRAIN]
    assert np.abs(train.mean(axis=0)).max() < 1e-5


def test_rows_per_task_and_batches(tiny_dataset):
    fs = build_features(tiny_dataset, _cfg(neg_keep_rate=1.0))
    pccvr_rows = fs.rows("test", "pccvr")
    assert (fs.clicked[pccvr_rows] == 1).all()
    rows = fs.rows("train")
    batches = list(iterate_batches(fs, rows, batch_size=4, shuffle=True, seed=1))
    assert sum(len(b) for b in batches) == rows.size
    assert sorted(np.concatenate([b.rows for b in batches]).tolist()) == sorted(rows.tolist())
    b = make_batch(fs, rows[:3], trim=False)
    assert b.seq_ids["listing:view"].shape == (3, 50)
    assert b.dense.shape == (3, 2) and b.label.dtype.is_floating_point
    assert set(b.target) == {"listing", "shop", "taxonomy"}


def test_feature_info_is_typed_and_writes_the_same_json_keys(tiny_dataset):
    import dataclasses
    import json

    import pytest

    from adsformer.data.features import FeatureInfo, FeatureSet

    fs = build_features(tiny_dataset, _cfg())
    info = fs.info.to_dict()
    assert list(info) == [
        "pairs",
        "window_s",
        "max_len",
        "neg_keep_rate",
        "split_mode",
        "val_start",
        "test_start",
        "dense_stats",
    ]
    assert info["pairs"] == list(fs.info.pairs) and info["split_mode"] == "fraction"
    assert (info["window_s"], info["max_len"], info["neg_keep_rate"]) == (3600, 50, 0.5)
    assert (info["val_start"], info["test_start"]) == (fs.split.val_start, fs.split.test_start)
    assert list(info["dense_stats"]) == fs.dense_names  # one [mean, std] per dense column, in order
    back = FeatureInfo.from_dict(json.loads(json.dumps(info)))  # as a feature store reads it
    assert back == fs.info and back.to_dict() == info
    with pytest.raises(dataclasses.FrozenInstanceError):
        fs.info.neg_keep_rate = 1.0
    with pytest.raises(TypeError):
        FeatureSet(*[None] * 12)  # built with keywords only
