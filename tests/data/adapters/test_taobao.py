"""Taobao UserBehavior adapter: parsing, skipped lines, the seeded impression protocol, purchase labels."""

from __future__ import annotations

import json
import time

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from adsformer.data.adapters import ADAPTERS, AdapterError
from adsformer.data.adapters.taobao import prepare_taobao, sample_negatives
from adsformer.data.validate import read_dataset

DAY = 86_400

# Category c1 has six listings, c2 one, c3 two (i8 only favourited: never viewed, never a negative).
GOOD = [
    "u1,i1,c1,pv,1000",  # 1: bought 100 s later -> purchased
    "u1,i2,c1,pv,1010",  # 2
    "u2,i3,c1,pv,1020",  # 3: bought one second after the window -> not purchased
    "u2,i4,c1,pv,1030",  # 4: bought exactly at the window's end -> purchased
    "u3,i5,c1,pv,1040",  # 5: bought in the same second -> purchased
    "u3,i6,c1,pv,1050",  # 6: bought before the view only -> not purchased
    "u1,i1,c1,buy,1100",  # 7
    f"u2,i3,c1,buy,{1020 + DAY + 1}",  # 8
    f"u2,i4,c1,buy,{1030 + DAY}",  # 9
    "u3,i5,c1,buy,1040",  # 10
    "u3,i6,c1,buy,900",  # 11
    "u4,j1,c2,pv,2000",  # 12: alone in its category -> a request with no negatives
    "u4,k1,c3,fav,2100",  # 13
    "u4,k2,c3,cart,2200",  # 14
    "u4,k2,c3,pv,2300",  # 15: c3's other listing k1 was never viewed -> no negatives
]
BAD = [
    ("u5,i7,c1,pv", "expected 5 comma-separated fields"),
    ("u5,i7,c1,click,3000", "unknown behavior 'click'"),
    ("u5,,c1,pv,3000", "column 2 (item_id) is empty"),
    ("u5,i7,c1,pv,30.5", "column 5 (unix_seconds): '30.5' is not an integer"),
    ("", "empty line"),
    ("u5,i7,c1,pv,-3", "negative"),
]


@pytest.fixture
def log(tmp_path, write_text):
    lines = [
        *GOOD[:6],
        BAD[0][0],
        *GOOD[6:10],
        BAD[1][0],
        BAD[2][0],
        *GOOD[10:],
        BAD[3][0],
        BAD[4][0],
        BAD[5][0],
    ]
    lines.append("u9,i9,c1,pv")  # truncated last line, no newline
    return write_text(tmp_path / "UserBehavior.csv", lines, final_newline=False), lines


def test_registry_names():
    assert ADAPTERS["taobao-userbehavior"] is prepare_taobao
    assert set(ADAPTERS) == {"taobao-userbehavior", "trivago", "movielens", "fashion"}


def test_events_listings_and_skipped_lines(tmp_path, log, assert_valid):
    path, lines = log
    res = prepare_taobao(path, tmp_path / "out")
    assert_valid(tmp_path / "out")
    assert res.out == tmp_path / "out"

    ev = res.dataset.events
    assert ev.height == len(GOOD)
    counts = dict(ev.group_by("action").len().iter_rows())
    assert counts == {"view": 8, "purchase": 5, "favorite": 1, "cart_add": 1}
    assert ev.filter(pl.col("listing_id") == "k1")["action"].to_list() == ["favorite"]
    assert ev.filter(pl.col("listing_id") == "k1")["taxonomy_id"].to_list() == ["c3"]
    assert ev["ts"].dtype == pl.Int64

    lis = res.dataset.listings.sort("listing_id")
    assert lis["listing_id"].to_list() == ["i1", "i2", "i3", "i4", "i5", "i6", "j1", "k1", "k2"]
    assert dict(lis.select("listing_id", "taxonomy_id").iter_rows())["k2"] == "c3"
    assert "shop_id" not in lis.columns

    # Every malformed line is reported with its 1-based line number, in order; the truncated last one too.
    expected = {
        i + 1: reason
        for i, text in enumerate(lines)
        for bad, reason in [*BAD, ("u9,i9,c1,pv", "")]
        if text == bad
    }
    assert [s.line for s in res.skipped_lines] == sorted(expected)
    for s in res.skipped_lines:
        assert expected[s.line] in s.reason
        assert s.file == "UserBehavior.csv"
        assert s.text == lines[s.line - 1]
    assert res.skipped_lines[-1].line == len(lines) and "found 4" in res.skipped_lines[-1].reason
    meta = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert meta["protocol"]["skipped_lines"] == len(expected)
    assert any("malformed" in n for n in meta["notes"])


def test_impression_protocol(tmp_path, log, assert_valid, assert_requests_well_formed):
    path, _ = log
    res = prepare_taobao(path, tmp_path / "out", negatives=4, seed=3)
    imp = res.dataset.impressions
    assert_requests_well_formed(imp)
    assert imp.schema["clicked"] == pl.Int8 and imp.schema["position"] == pl.Int32

    views = res.dataset.events.filter(pl.col("action") == "view")
    clicked = imp.filter(pl.col("clicked") == 1)
    assert clicked.height == views.height == imp["request_id"].n_unique()
    assert sorted(clicked.select("user_id", "ts", "listing_id").rows()) == sorted(
        views.select("user_id", "ts", "listing_id").rows()
    )

    tax = dict(res.dataset.listings.select("listing_id", "taxonomy_id").iter_rows())
    per = (
        imp.with_columns(pl.col("listing_id").replace_strict(tax).alias("cat"))
        .group_by("request_id")
        .agg(
            pl.col("cat").n_unique().alias("cats"),
            pl.len().alias("n"),
            pl.col("listing_id").filter(pl.col("clicked") == 1).first().alias("clicked_id"),
        )
    )
    assert (per["cats"] == 1).all()  # negatives share the clicked listing's category
    sizes = {r: n for r, n, clicked_id in per.select("request_id", "n", "clicked_id").rows() if clicked_id}
    # c1 has 6 viewed listings -> 4 negatives; j1 and k2 have no viewed neighbour -> alone.
    req_of = dict(clicked.select("listing_id", "request_id").iter_rows())
    assert {sizes[req_of[i]] for i in ["i1", "i2", "i3", "i4", "i5", "i6"]} == {5}
    assert sizes[req_of["j1"]] == 1 and sizes[req_of["k2"]] == 1
    assert "k1" not in imp["listing_id"].to_list()  # never viewed -> weight 0
    assert req_of["i1"] == "tb-1"

    # Purchases: within the window (inclusive, same second counts), never on non-clicks.
    bought = dict(clicked.select("listing_id", "purchased").iter_rows())
    assert bought == {"i1": 1, "i2": 0, "i3": 0, "i4": 1, "i5": 1, "i6": 0, "j1": 0, "k2": 0}
    assert imp.filter(pl.col("clicked") == 0)["purchased"].sum() == 0

    meta = res.dataset.meta
    assert meta.protocol["seed"] == 3 and meta.protocol["negatives"] == 4
    assert meta.protocol["exclude_user_history"] is False
    assert meta.protocol["requests_without_negatives"] == 2
    assert meta.has_conversions
    assert_valid(tmp_path / "out")


def test_purchase_window_option(tmp_path, log):
    path, _ = log
    res = prepare_taobao(path, tmp_path / "out", purchase_window_s=50)
    clicked = res.dataset.impressions.filter(pl.col("clicked") == 1)
    assert dict(clicked.select("listing_id", "purchased").iter_rows())["i1"] == 0  # bought 100 s later
    assert dict(clicked.select("listing_id", "purchased").iter_rows())["i5"] == 1


def _big_log(rng: np.random.Generator, n: int = 3000) -> list[str]:
    users = rng.integers(0, 40, n)
    cats = rng.integers(0, 5, n)
    items = cats * 100 + np.minimum(rng.zipf(1.5, n), 30)
    behaviors = rng.choice(["pv", "pv", "pv", "pv", "fav", "cart", "buy"], n)
    ts = 1_500_000_000 + np.sort(rng.integers(0, 10 * DAY, n))
    return [
        f"u{u},i{i},c{c},{b},{t}" for u, i, c, b, t in zip(users, items, cats, behaviors, ts, strict=True)
    ]


def test_seeded_determinism(tmp_path, write_text):
    path = write_text(tmp_path / "log.csv", _big_log(np.random.default_rng(0)))
    a = prepare_taobao(path, tmp_path / "a", seed=7).dataset.impressions
    b = prepare_taobao(path, tmp_path / "b", seed=7).dataset.impressions
    c = prepare_taobao(path, tmp_path / "c", seed=8).dataset.impressions
    assert_frame_equal(a, b)
    assert (tmp_path / "a" / "impressions.parquet").read_bytes() == (
        tmp_path / "b" / "impressions.parquet"
    ).read_bytes()
    assert not a.equals(c)
    same = ["request_id", "user_id", "ts", "listing_id", "purchased"]
    clicks = pl.col("clicked") == 1
    assert a.filter(clicks).select(same).equals(c.filter(clicks).select(same))  # only the draws differ


def test_user_history_option(tmp_path, write_text, assert_valid, assert_requests_well_formed):
    path = write_text(tmp_path / "log.csv", _big_log(np.random.default_rng(1)))
    for exclude in (False, True):
        out = tmp_path / f"out-{exclude}"
        res = prepare_taobao(path, out, exclude_user_history=exclude, negatives=6)
        assert_valid(out)
        imp = res.dataset.impressions
        assert_requests_well_formed(imp)
        seen = (
            res.dataset.events.filter(pl.col("action") == "view")
            .select("user_id", "listing_id")
            .unique()
            .with_columns(pl.lit(1).alias("seen"))
        )
        neg = imp.filter(pl.col("clicked") == 0).join(seen, on=["user_id", "listing_id"], how="left")
        in_history = int(neg["seen"].fill_null(0).sum())
        if exclude:
            assert in_history == 0
            assert any("issue's rule" in n for n in res.notes)
        else:
            assert in_history > 0  # SPEC: only the clicked listing is excluded
            assert any("exclude_user_history=True" in n for n in res.notes)
        assert res.dataset.meta.protocol["exclude_user_history"] is exclude


@pytest.mark.parametrize("max_rounds", [8, 0])
def test_sampler_is_popularity_weighted_without_replacement(max_rounds):
    # One category, items 0..3 with view counts 1, 2, 3, 4; every request clicked item 0.
    pool_item = np.arange(4)
    pool_w = np.array([1, 2, 3, 4])
    n_req = 20_000
    kwargs = {
        "req_item": np.zeros(n_req, dtype=np.int64),
        "req_cat": np.zeros(n_req, dtype=np.int64),
        "req_user": np.zeros(n_req, dtype=np.int64),
        "pool_item": pool_item,
        "pool_w": pool_w,
        "cat_lo": np.array([0]),
        "cat_hi": np.array([4]),
        "n_items": 4,
        "excluded_keys": None,
        "max_rounds": max_rounds,
    }
    r, item, rank = sample_negatives(k=np.ones(n_req, dtype=np.int64), rng=np.random.default_rng(0), **kwargs)
    assert r.size == n_req and (rank == 0).all() and (item != 0).all()
    freq = np.bincount(item, minlength=4)[1:] / n_req
    np.testing.assert_allclose(freq, [2 / 9, 3 / 9, 4 / 9], atol=0.015)

    r, item, rank = sample_negatives(k=np.full(n_req, 3), rng=np.random.default_rng(1), **kwargs)
    assert r.size == 3 * n_req
    assert (np.sort(item.reshape(n_req, 3), axis=1) == [1, 2, 3]).all()  # all three, no repeats
    first = item[rank == 0]
    np.testing.assert_allclose(np.bincount(first, minlength=4)[1:] / n_req, [2 / 9, 3 / 9, 4 / 9], atol=0.015)


def test_empty_and_all_bad_files_raise_and_write_nothing(tmp_path, write_text):
    empty = write_text(tmp_path / "empty.csv", [])
    with pytest.raises(AdapterError, match=r"empty\.csv: the file is empty"):
        prepare_taobao(empty, tmp_path / "out")
    assert not (tmp_path / "out").exists()

    bad = write_text(tmp_path / "bad.csv", ["a,b,c", "u1,i1,c1,look,5"])
    with pytest.raises(AdapterError, match=r"bad\.csv: none of the 2 line\(s\).*line 1: expected 5"):
        prepare_taobao(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()

    with pytest.raises(AdapterError, match="file not found"):
        prepare_taobao(tmp_path / "missing.csv", tmp_path / "out")
    with pytest.raises(AdapterError, match="no 'pv' line"):
        prepare_taobao(write_text(tmp_path / "nopv.csv", ["u1,i1,c1,buy,5"]), tmp_path / "out")
    with pytest.raises(AdapterError, match="negatives must be >= 0"):
        prepare_taobao(empty, tmp_path / "out", negatives=-1)
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv", "empty.csv", "nopv.csv"]


def test_bad_input_leaves_previous_output_untouched(tmp_path, log, write_text):
    path, _ = log
    out = tmp_path / "out"
    prepare_taobao(path, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(AdapterError):
        prepare_taobao(write_text(tmp_path / "empty.csv", []), out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_directory_input_and_read_back(tmp_path, log):
    path, _ = log
    res = prepare_taobao(path.parent, tmp_path / "out")  # a directory holding UserBehavior.csv
    back = read_dataset(tmp_path / "out")
    assert back.impressions.height == res.dataset.impressions.height
    assert back.meta.protocol["purchase_window_s"] == DAY


@pytest.mark.realdata
def test_real_taobao(shared_data, tmp_path, assert_valid, assert_requests_well_formed):
    path = shared_data / "taobao_userbehavior" / "UserBehavior.csv"
    if not path.is_file():
        pytest.skip(f"{path.name} not in shared data")
    start = time.perf_counter()
    res = prepare_taobao(path, tmp_path / "taobao")
    elapsed = time.perf_counter() - start
    assert_valid(tmp_path / "taobao")
    s = res.summary()
    assert s["users"] == 815
    assert s["events"] == 84_475
    assert len(res.skipped_lines) == 1 and res.skipped_lines[0].line == 84_476  # the truncated last line
    assert s["requests"] == s["clicks"] == s["actions"]["view"]
    assert 0.19 < s["ctr"] < 0.25
    assert 0 < s["purchases"] <= s["clicks"]
    assert_requests_well_formed(res.dataset.impressions)
    print(f"taobao: {s} in {elapsed:.1f} s")


def test_negatives_come_from_the_requests_day(tmp_path):
    """popularity='day': a listing viewed only on day 2 is never a non-clicked ad on day 1 (no look-ahead)."""
    import polars as pl

    from adsformer.data.adapters.taobao import prepare_taobao

    day = 86_400
    lines = [f"1,10,7,pv,{day + 10}", f"2,11,7,pv,{day + 20}", f"3,12,7,pv,{day + 30}"]  # day 1: items 10-12
    lines += [f"{u},99,7,pv,{2 * day + u}" for u in range(4, 40)]  # day 2: item 99, very popular
    path = tmp_path / "ub.csv"
    path.write_text("\n".join(lines) + "\n")
    imp = prepare_taobao(path, tmp_path / "out", negatives=2, seed=0).dataset.impressions
    day1 = imp.filter(pl.col("ts") < 2 * day)
    assert "99" not in day1["listing_id"].to_list()
    logged = prepare_taobao(
        path, tmp_path / "out_log", negatives=2, seed=0, popularity="log"
    ).dataset.impressions
    assert "99" in logged.filter(pl.col("ts") < 2 * day)["listing_id"].to_list()  # the look-ahead variant
