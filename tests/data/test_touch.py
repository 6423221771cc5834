"""Target-aware touch signals: brute-force reference, raw-id matching (OOV never matches OOV), the model's
component, and the feature store round trip."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from adsformer.adpm.touch import TouchComponent
from adsformer.config import DataConfig, SequenceConfig, SplitConfig, VocabConfig
from adsformer.data.features import build_features
from adsformer.data.schema import Dataset, DatasetMeta
from adsformer.data.touch import NEVER, NO_MATCH, raw_codes, rows_by_value, touch_of_entries, touch_signals

BASE = 1_700_000_000
LISTINGS = [f"l{i}" for i in range(6)]


DAY = 86_400
# a user with no events, days later: the validation and test rows (the cases under test are all training)
LATER = [("rv", "u9", BASE + 5 * DAY, "l0", 0), ("rt", "u9", BASE + 6 * DAY + 1, "l0", 1)]


def _dataset(events: list[tuple], imps: list[tuple]) -> Dataset:
    imps = imps + LATER
    listings = pl.DataFrame(
        {
            "listing_id": LISTINGS,
            "shop_id": ["s0", "s0", "s1", "s1", "s2", None],  # l5 has no shop: matches no shop
        }
    )
    ev = pl.DataFrame(events, schema=["user_id", "ts", "action", "listing_id"], orient="row").with_columns(
        pl.col("ts").cast(pl.Int64)
    )
    im = pl.DataFrame(
        imps, schema=["request_id", "user_id", "ts", "listing_id", "clicked"], orient="row"
    ).with_columns(pl.col("ts").cast(pl.Int64), pl.col("clicked").cast(pl.Int8))
    return Dataset(listings, ev, im, DatasetMeta(name="touch", source="tests"))


def _cfg(window_s: int = 100, max_len: int = 4, top_k: int = 750_000) -> DataConfig:
    return DataConfig(
        sequences=SequenceConfig(pairs=("listing:view", "shop:view"), window_s=window_s, max_len=max_len),
        vocab=VocabConfig(listing_top_k=top_k, shop_top_k=top_k),
        split=SplitConfig(mode="days", val_days=1, test_days=1),
    )


def _reference(events, imps, entity: str, window_s: int, max_len: int) -> np.ndarray:
    """Plain Python: per impression, the user's views in [t - W, t) that have the entity (a shop sequence
    holds the views whose listing has a shop), newest first (ties: later input first), the first M; count of
    entries equal to the target's value, age of the newest equal one."""
    shop = {"l0": "s0", "l1": "s0", "l2": "s1", "l3": "s1", "l4": "s2", "l5": None}
    value = (lambda lid: lid) if entity == "listing" else shop.get
    out = []
    for _, user, t, target, _ in imps:
        seq = [
            (ts, i, lid)
            for i, (u, ts, a, lid) in enumerate(events)
            if u == user and t - window_s <= ts < t and value(lid) is not None
        ]
        seq.sort(key=lambda e: (e[0], e[1]), reverse=True)
        seq = seq[:max_len]
        want = value(target)
        hits = [ts for ts, _, lid in seq if want is not None and value(lid) == want]
        out.append((len(hits), t - hits[0] if hits else NEVER))
    return np.array(out, np.float32).reshape(-1, 2)


event_st = st.tuples(
    st.sampled_from(["u1", "u2"]),
    st.integers(BASE, BASE + 300),
    st.just("view"),
    st.sampled_from([*LISTINGS, "new_a", "new_b"]),  # ids no listing row or vocabulary knows
)
imp_st = st.tuples(
    st.just("r"),
    st.sampled_from(["u1", "u2"]),
    st.integers(BASE, BASE + 350),
    st.sampled_from([*LISTINGS, "new_a", "new_c"]),
    st.just(0),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=st.lists(event_st, min_size=1, max_size=25),
    imps=st.lists(imp_st, min_size=1, max_size=8),
    window=st.sampled_from([0, 30, 100, 400]),
    max_len=st.sampled_from([1, 3, 50]),
    top_k=st.sampled_from([1, 750_000]),
)
@example(  # the newest view's listing has no shop: the shop sequence holds the older view of shop s0
    events=[("u1", BASE + 10, "view", "l0"), ("u1", BASE + 10, "view", "l5")],
    imps=[("r", "u1", BASE + 20, "l0", 0)],
    window=100,
    max_len=1,
    top_k=1,
)
def test_touch_signals_equal_a_brute_force_reference(events, imps, window, max_len, top_k):
    imps = [(f"r{i}", u, t, lid, c) for i, (_, u, t, lid, c) in enumerate(imps)]
    fs = build_features(_dataset(events, imps), _cfg(window, max_len, top_k))
    assert fs.touch_pairs == ["listing:view", "shop:view"]
    for j, entity in enumerate(("listing", "shop")):
        ref = _reference(events, imps, entity, window, max_len)
        np.testing.assert_array_equal(fs.touch[: len(imps), j], ref)


def test_two_different_oov_ids_never_match_and_a_new_item_matches_itself():
    events = [("u1", BASE + 10, "view", "new_a"), ("u1", BASE + 20, "view", "l0")]
    events += [("u2", BASE + t, "view", "l0") for t in (1, 2, 3)]  # l0: the one id the vocabulary keeps
    imps = [("r1", "u1", BASE + 50, "new_b", 0), ("r2", "u1", BASE + 60, "new_a", 1)]
    fs = build_features(_dataset(events, imps), _cfg(top_k=1))  # every other id is OOV
    (newest_seq, _), target = fs.sequences["listing:view"].padded(np.array([0])), fs.target["listing"]
    assert target[0] == target[1] == newest_seq[0, 1]  # vocabulary indices cannot tell the ids apart
    assert fs.touch[0, 0].tolist() == [0.0, NEVER]  # new_b was never touched
    assert fs.touch[1, 0].tolist() == [1.0, 50.0]  # new_a was, 50 s before
    assert fs.touch_count("listing")[:2].tolist() == [0.0, 1.0]


def _codes(values: list[str | None], table: dict[str, int]) -> np.ndarray:
    """Codes of raw ids through one shared table (equal strings, equal codes; None -> NO_MATCH)."""
    return np.array([NO_MATCH if v is None else table.setdefault(v, len(table)) for v in values], np.int64)


def test_touch_signals_golden_values_and_padding():
    table: dict[str, int] = {}
    seq = _codes(["a", "b", "a", "zz_padding_garbage"], table)[None, :]  # (1, 4): newest first
    ts = np.array([[90, 80, 50, 10]])
    targets = _codes(["a", "b", "c", None], table)
    got = touch_signals(targets, seq, ts, np.array([3]), np.array([100]))
    assert got.tolist() == [[2.0, 10.0], [1.0, 20.0], [0.0, NEVER], [0.0, NEVER]]
    empty = touch_signals(targets, np.zeros((1, 0), np.int64), np.zeros((1, 0)), np.array([0]), np.array([1]))
    assert empty.tolist() == [[0.0, NEVER]] * 4
    online = touch_of_entries(rows_by_value(["a", "b", "c", None]), 4, [(90, "a"), (80, "b"), (50, "a")], 100)
    assert online.tolist() == got.tolist()


@settings(max_examples=200, deadline=None)
@given(
    targets=st.lists(st.one_of(st.none(), st.sampled_from(["a", "b", "c", "7", "dup"])), max_size=30),
    values=st.lists(st.sampled_from(["a", "b", "d", "7", "dup", "zz"]), max_size=50),
    ages=st.lists(st.integers(0, 5_000), min_size=50, max_size=50),
    now=st.integers(BASE, BASE + 10_000),
)
def test_the_online_touch_signals_equal_the_offline_function(targets, values, ages, now):
    """The service's per-user matching (index the candidates by value, walk the entries once) gives what the
    feature builder's padded comparison gives for the same raw ids, coded as the feature builder codes them
    (:func:`raw_codes`): counts, the age of the first (newest) match whatever the times, NEVER without one,
    a missing target matching nothing."""
    entries = [(now - ages[i], v) for i, v in enumerate(values)]  # in sequence order, times in any order
    target_codes, codes = raw_codes(pl.Series(targets, dtype=pl.String), pl.Series(values, dtype=pl.String))
    ts = np.array([[t for t, _ in entries]], np.int64).reshape(1, -1)
    offline = touch_signals(target_codes, codes.reshape(1, -1), ts, np.array([len(entries)]), np.array([now]))
    online = touch_of_entries(rows_by_value(targets), len(targets), entries, now)
    np.testing.assert_array_equal(online, offline.reshape(-1, 2))
    # ids are compared as text, as the data contract reads them: the integer 7 is the string "7"
    as_ints = [7 if t == "7" else t for t in targets]
    np.testing.assert_array_equal(
        touch_of_entries(rows_by_value(as_ints), len(targets), entries, now), online
    )


def test_touch_component_features():
    comp = TouchComponent(["shop:view", "listing:view"], ["listing:view", "shop:view"], window_s=3600)
    raw = torch.tensor([[[2.0, 0.0], [0.0, -1.0]], [[1.0, 3600.0], [4.0, 59.0]]])  # (B=2, P_all=2, 2)
    out = comp(raw)  # (2, 6): shop first (as configured), then listing
    expected = [
        [0.0, 1.0, 1.0, float(np.log1p(2.0)), 0.0, 0.0],
        [float(np.log1p(4.0)), 0.0, float(np.log1p(59.0) / np.log1p(3600.0)), float(np.log1p(1.0)), 0.0, 1.0],
    ]
    torch.testing.assert_close(out, torch.tensor(expected), rtol=1e-6, atol=1e-6)
    assert comp.out_dim == 6


def test_feature_store_keeps_the_touch_signals(tmp_path):
    from adsformer.data.stream import FeatureStore, write_store

    events = [("u1", BASE + 10, "view", "l1"), ("u1", BASE + 20, "view", "l2")]
    imps = [
        ("r1", "u1", BASE + 50, "l1", 1),
        ("r2", "u1", BASE + 60, "l3", 0),
        ("r3", "u2", BASE + 5, "l1", 0),
    ]
    cfg = _cfg()
    fs = build_features(_dataset(events, imps), cfg)
    store = FeatureStore.open(write_store(fs, tmp_path / "store", cfg))
    back = store.load(("train", "val", "test"))
    np.testing.assert_array_equal(back.touch, fs.touch)
    assert back.touch_pairs == fs.touch_pairs
    assert fs.touch[1, 1].tolist() == [1.0, 40.0]  # l3's shop s1 = l2's shop, viewed 40 s before


@pytest.mark.parametrize("engine", ["spark"])
def test_spark_engine_gives_the_same_touch_signals(engine):
    from adsformer.data.spark_sequences import spark_available

    if spark_available():
        pytest.skip(f"Spark engine unavailable: {spark_available()}")
    events = [("u1", BASE + i, "view", LISTINGS[i % 6]) for i in range(0, 90, 7)]
    imps = [(f"r{i}", "u1", BASE + 40 + i * 9, LISTINGS[i % 6], i % 2) for i in range(8)]
    ds, cfg = _dataset(events, imps), _cfg()
    local = build_features(ds, cfg)
    spark = build_features(ds, cfg, engine=engine)
    np.testing.assert_array_equal(spark.touch, local.touch)
    assert (local.touch[:, :, 0] > 0).any()
