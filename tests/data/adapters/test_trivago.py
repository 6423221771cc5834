"""trivago adapter: real impressions (positions, prices, clicks), queries, events, listings, skipped rows."""

from __future__ import annotations

import math
import time

import polars as pl
import pytest

from adsformer.data.adapters import ADAPTERS, AdapterError
from adsformer.data.adapters.trivago import EXTRA_ACTIONS, NO_CONVERSIONS, prepare_trivago

B, P = "Berlin, Germany", "Paris, France"
COLUMNS = [
    "user_id",
    "session_id",
    "timestamp",
    "step",
    "action_type",
    "reference",
    "platform",
    "city",
    "device",
    "current_filters",
    "impressions",
    "prices",
]
# (user, session, ts, step, action_type, reference, city, impressions, prices); one row = one line below.
ROWS = [
    ("U1", "s1", 100, 1, "search for destination", B, B, None, None),  # 1
    ("U1", "s1", 110, 2, "interaction item image", "11", B, None, None),  # 2
    ("U1", "s1", 120, 3, "filter selection", "Pool", B, None, None),  # 3
    ("U1", "s1", 130, 4, "clickout item", "12", B, "11|12|13", "50|60|70"),  # 4: request s1:4
    ("U1", "s1", 140, 5, "search for poi", "Brandenburg Gate", B, None, None),  # 5
    ("U1", "s1", 150, 6, "clickout item", "13", B, "13|14", "80|90.5"),  # 6: request s1:6
    ("U1", "s1", 160, 7, "change of sort order", "price only", B, None, None),  # 7
    ("U1", "s1", 170, 8, "interaction item info", "unknown", B, None, None),  # 8: skipped (not an item id)
    ("U1", "s1", 180, 9, "clickout item", "15", B, "11|12", "1|2"),  # 9: reference not shown -> no request
    ("U1", "s1", 190, 10, "clickout item", "11", B, "11|12", "5"),  # 10: lengths differ -> skipped
    ("U1", "s1", 200, 11, "clickout item", "11", B, "11|12", "5|abc"),  # 11: bad price -> skipped
    ("U2", "s2", 300, 1, "clickout item", "21", P, "21|22", "100|200"),  # 12: request s2:1:r12, query = city
    ("U2", "s2", 310, 2, "search for item", "22", P, None, None),  # 13
    ("U2", "s2", 320, 3, "interaction item deals", "21", P, None, None),  # 14
    ("U2", "s2", 330, 4, "interaction item rating", "22", P, None, None),  # 15
    ("U2", "s2", 340, 5, "teleport", "22", P, None, None),  # 16: unknown action -> skipped
    (
        "U2",
        "s2",
        350,
        1,
        "clickout item",
        "22",
        P,
        "22|21",
        "210|90",
    ),  # 17: repeats step 1 -> ids get :r<row>
    ("U2", "s2", 360, 5, "clickout item", "21", P, "22|21|x9", "1|2|3"),  # 18: bad item id -> skipped
    ("U2", "s2", 370, 6, "interaction item image", "", P, None, None),  # 19: empty reference -> skipped
]
SKIPPED = {
    8: "not a numeric item id",
    9: "not in the impressions list",
    10: "has 2 items but prices has 1",
    11: "prices",
    16: "unknown action 'teleport'",
    18: "column impressions",
    19: "reference is empty",
}


def frame(rows=ROWS) -> pl.DataFrame:
    data = [
        (
            u,
            s,
            ts,
            st,
            a,
            ref,
            "DE" if u == "U1" else "FR",
            city,
            "mobile" if u == "U1" else "desktop",
            None,
            imp,
            pr,
        )
        for u, s, ts, st, a, ref, city, imp, pr in rows
    ]
    return pl.DataFrame(data, schema=COLUMNS, orient="row").with_columns(
        pl.col("current_filters").cast(pl.String)
    )


@pytest.fixture
def log(tmp_path):
    path = tmp_path / "trivago.parquet"
    frame().write_parquet(path)
    return path


def test_registry():
    assert ADAPTERS["trivago"] is prepare_trivago


def test_impressions_positions_prices_clicks(tmp_path, log, assert_valid, assert_requests_well_formed):
    res = prepare_trivago(log, tmp_path / "out")
    assert_valid(tmp_path / "out")
    imp = res.dataset.impressions
    assert_requests_well_formed(imp)
    assert "purchased" not in imp.columns
    rows = (
        imp.sort("request_id", "position")
        .select(
            "request_id",
            "user_id",
            "ts",
            "listing_id",
            "position",
            "clicked",
            "f_price",
            "query",
            "c_device",
            "c_platform",
        )
        .rows()
    )
    assert rows == [
        ("s1:4", "U1", 130, "11", 1, 0, 50.0, B, "mobile", "DE"),
        ("s1:4", "U1", 130, "12", 2, 1, 60.0, B, "mobile", "DE"),
        ("s1:4", "U1", 130, "13", 3, 0, 70.0, B, "mobile", "DE"),
        ("s1:6", "U1", 150, "13", 1, 1, 80.0, "Brandenburg Gate", "mobile", "DE"),
        ("s1:6", "U1", 150, "14", 2, 0, 90.5, "Brandenburg Gate", "mobile", "DE"),
        ("s2:1:r12", "U2", 300, "21", 1, 1, 100.0, P, "desktop", "FR"),
        ("s2:1:r12", "U2", 300, "22", 2, 0, 200.0, P, "desktop", "FR"),
        ("s2:1:r17", "U2", 350, "22", 1, 1, 210.0, P, "desktop", "FR"),
        ("s2:1:r17", "U2", 350, "21", 2, 0, 90.0, P, "desktop", "FR"),
    ]
    for price, log_price in imp.select("f_price", "f_log_price").rows():
        assert log_price == pytest.approx(math.log1p(price))
    assert imp.schema["position"] == pl.Int32 and imp.schema["clicked"] == pl.Int8


def test_meta_events_and_listings(tmp_path, log):
    res = prepare_trivago(log, tmp_path / "out")
    meta = res.dataset.meta
    assert meta.has_conversions is False
    assert NO_CONVERSIONS in meta.notes and NO_CONVERSIONS in res.notes
    assert (
        set(meta.actions)
        == set(EXTRA_ACTIONS)
        == {
            "interaction_image",
            "interaction_info",
            "interaction_deals",
            "interaction_rating",
            "search_item",
            "clickout",
            "filter",
            "sort",
        }
    )

    ev = res.dataset.events
    got = ev.select("ts", "action", "listing_id", "query").sort("ts").rows()
    assert got == [
        (100, "search", None, B),
        (110, "interaction_image", "11", None),
        (120, "filter", None, "Pool"),
        (130, "clickout", "12", None),
        (140, "search", None, "Brandenburg Gate"),
        (150, "clickout", "13", None),
        (160, "sort", None, "price only"),
        (180, "clickout", "15", None),  # its request was not built, the action is kept
        (300, "clickout", "21", None),
        (310, "search_item", "22", None),
        (320, "interaction_deals", "21", None),
        (330, "interaction_rating", "22", None),
        (350, "clickout", "22", None),
    ]
    assert dict(ev.select("listing_id", "taxonomy_id").drop_nulls().unique().iter_rows())["21"] == P

    lis = res.dataset.listings
    assert lis["listing_id"].to_list() == sorted(["11", "12", "13", "14", "15", "21", "22"])
    by_id = {r[0]: r[1:] for r in lis.select("listing_id", "taxonomy_id", "price").rows()}
    assert by_id["11"] == (B, (50.0 + 1.0) / 2)  # median over every display (also the request not built)
    assert by_id["14"] == (B, 90.5)
    assert by_id["15"] == (B, None)  # only referenced: city of its row, never displayed
    assert by_id["22"] == (P, (200.0 + 210.0) / 2)


def test_skipped_rows_reported(tmp_path, log):
    res = prepare_trivago(log, tmp_path / "out")
    assert [s.line for s in res.skipped_lines] == sorted(SKIPPED)
    for s in res.skipped_lines:
        assert SKIPPED[s.line] in s.reason, s
        assert s.file == "trivago.parquet"
        assert f"step={ROWS[s.line - 1][3]}" in s.text
    assert res.dataset.meta.protocol["skipped_rows"] == len(SKIPPED)


def test_csv_input_gives_the_same_dataset(tmp_path, log):
    csv = tmp_path / "train.csv"
    frame().write_csv(csv)
    a = prepare_trivago(log, tmp_path / "a")
    b = prepare_trivago(csv, tmp_path / "b")
    assert a.dataset.impressions.equals(b.dataset.impressions)
    assert a.dataset.events.equals(b.dataset.events)
    assert [s.line + 1 for s in a.skipped_lines] == [s.line for s in b.skipped_lines]  # header is line 1


def test_bad_inputs_raise_and_write_nothing(tmp_path):
    missing = tmp_path / "missing.parquet"
    frame().drop("prices").write_parquet(missing)
    with pytest.raises(AdapterError, match=r"missing\.parquet: missing column\(s\) \['prices'\]"):
        prepare_trivago(missing, tmp_path / "out")

    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"not parquet at all")
    with pytest.raises(AdapterError, match="not a readable Parquet file"):
        prepare_trivago(garbage, tmp_path / "out")

    no_clicks = tmp_path / "noclick.parquet"
    frame([r for r in ROWS if r[4] != "clickout item"]).write_parquet(no_clicks)
    with pytest.raises(AdapterError, match="no usable 'clickout item' row"):
        prepare_trivago(no_clicks, tmp_path / "out")

    all_bad = tmp_path / "allbad.parquet"
    frame([ROWS[15], ROWS[18]]).write_parquet(all_bad)
    with pytest.raises(AdapterError, match=r"none of the 2 rows is usable; first problem: .*line 1"):
        prepare_trivago(all_bad, tmp_path / "out")

    with pytest.raises(AdapterError, match="file not found"):
        prepare_trivago(tmp_path / "nope.parquet", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.realdata
def test_real_trivago(shared_data, tmp_path, assert_valid, assert_requests_well_formed):
    path = shared_data / "trivago" / "trivago_val_100k.parquet"
    if not path.is_file():
        pytest.skip(f"{path.name} not in shared data")
    start = time.perf_counter()
    res = prepare_trivago(path, tmp_path / "trivago")
    elapsed = time.perf_counter() - start
    assert_valid(tmp_path / "trivago")
    s = res.summary()
    assert s["users"] == 6593
    assert s["requests"] == s["clicks"] == 13_596  # 13,597 clickouts, one reference not in its list
    assert s["events"] == 100_003 - 4  # four 'interaction item info' rows reference 'unknown'
    assert len(res.skipped_lines) == 5
    assert 0.03 < s["ctr"] < 0.06
    assert "purchases" not in s
    assert_requests_well_formed(res.dataset.impressions)
    print(f"trivago: {s} in {elapsed:.1f} s")
