"""MovieLens adapter: ml-100k (GroupLens) and RecBole layouts, click threshold, genres, skipped lines."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from adsformer.data.adapters import ADAPTERS, AdapterError
from adsformer.data.adapters.movielens import GENRES, NO_CONVERSIONS, prepare_movielens

RATINGS = [  # user, item, rating, ts
    ("1", "10", "5", "1000"),
    ("1", "20", "3", "1010"),
    ("2", "10", "4", "1020"),
    ("2", "30", "1", "1030"),
    ("3", "20", "4", "1040"),
    ("3", "99", "2", "1050"),  # movie missing from the item file
]


def flags(*genres: str) -> str:
    return "|".join("1" if g in genres else "0" for g in GENRES)


ML_ITEMS = [
    f"10|Café Society (1995)|01-Jan-1995||http://x|{flags('Comedy', 'Drama')}",
    f"20|Alien (1979)|01-Jan-1979||http://y|{flags('Horror', 'Action', 'Sci-Fi')}",
    f"30|Nothing (1990)|||http://z|{flags()}",
]


@pytest.fixture
def ml100k(tmp_path, write_text):
    d = tmp_path / "ml-100k"
    data = ["\t".join(r) for r in RATINGS]
    data.insert(2, "1\t30\tfive\t1015")  # line 3: rating not a number
    data.insert(4, "2\t30\t3")  # line 5: three fields
    data.append("4\t10\t4\t12.5")  # line 9: not a whole second
    write_text(d / "u.data", data, final_newline=False)
    items = [*ML_ITEMS, f"40|Broken|{flags()}"]  # line 4: too few fields
    write_text(d / "u.item", items, encoding="latin-1")
    return d


@pytest.fixture
def recbole(tmp_path, write_text):
    d = tmp_path / "rb"
    write_text(
        d / "ml-100k.inter",
        ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
        + ["\t".join((u, i, f"{r}.0", f"{t}.0")) for u, i, r, t in RATINGS],
    )
    write_text(
        d / "ml-100k.item",
        [
            "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq",
            "10\tCafé Society\t1995\tComedy Drama",
            "20\tAlien\t1979\tAction Horror Sci-Fi",
            "30\tNothing\t\t",
            "10\tDuplicate\t2000\tWar",  # line 5: duplicate id
        ],
    )
    return d


def test_registry():
    assert ADAPTERS["movielens"] is prepare_movielens


def test_ml100k_layout(tmp_path, ml100k, assert_valid, assert_requests_well_formed):
    res = prepare_movielens(ml100k, tmp_path / "out")
    assert_valid(tmp_path / "out")
    ds = res.dataset
    assert [(s.file, s.line) for s in res.skipped_lines] == [
        ("u.data", 3),
        ("u.data", 5),
        ("u.data", 9),
        ("u.item", 4),
    ]
    reasons = [s.reason for s in res.skipped_lines]
    assert "'five' is not a number" in reasons[0] and "found 3" in reasons[1]
    assert "whole number" in reasons[2] and "expected 24 |-separated fields" in reasons[3]

    imp = ds.impressions
    assert imp.height == len(RATINGS) and (imp["position"] == 1).all()
    assert imp["request_id"].n_unique() == imp.height
    assert imp.select("user_id", "listing_id", "clicked").rows() == [
        ("1", "10", 1),
        ("1", "20", 0),
        ("2", "10", 1),
        ("2", "30", 0),
        ("3", "20", 1),
        ("3", "99", 0),
    ]
    assert imp["request_id"].to_list()[:2] == ["ml-1", "ml-2"]
    assert "purchased" not in imp.columns

    ev = ds.events
    assert ev.height == len(RATINGS) and (ev["action"] == "view").all()
    assert ev.select("user_id", "ts", "listing_id").rows() == sorted((u, int(t), i) for u, i, _, t in RATINGS)

    lis = {
        r[0]: r[1:] for r in ds.listings.select("listing_id", "title", "taxonomy_id", "tags", "f_year").rows()
    }
    assert lis["10"] == ("Café Society (1995)", "Comedy", ["Comedy", "Drama"], 1995.0)  # latin-1 decoded
    assert lis["20"] == ("Alien (1979)", "Action", ["Action", "Horror", "Sci-Fi"], 1979.0)
    assert lis["30"] == ("Nothing (1990)", None, [], 1990.0)  # year from the title when no date
    assert lis["99"] == (None, None, None, None)
    assert set(lis) == {"10", "20", "30", "99"}

    meta = ds.meta
    assert meta.has_conversions is False and NO_CONVERSIONS in meta.notes
    assert meta.protocol["layout"] == "ml-100k" and meta.protocol["click_threshold"] == 4
    assert any("not in u.item" in n for n in res.notes)


def test_recbole_layout_matches(tmp_path, ml100k, recbole, assert_valid):
    a = prepare_movielens(ml100k, tmp_path / "a").dataset
    res = prepare_movielens(recbole / "ml-100k.inter", tmp_path / "b")  # a file inside the directory works
    assert_valid(tmp_path / "b")
    b = res.dataset
    cols = ["user_id", "ts", "listing_id", "clicked", "position"]
    assert a.impressions.select(cols).equals(b.impressions.select(cols))
    assert a.events.equals(b.events)
    assert b.impressions["request_id"].to_list()[0] == "ml-2"  # line 1 is the header
    assert [(s.file, s.line) for s in res.skipped_lines] == [("ml-100k.item", 5)]
    lis = {
        r[0]: r[1:] for r in b.listings.select("listing_id", "title", "taxonomy_id", "tags", "f_year").rows()
    }
    assert lis["10"] == ("Café Society", "Comedy", ["Comedy", "Drama"], 1995.0)
    assert lis["20"] == ("Alien", "Action", ["Action", "Horror", "Sci-Fi"], 1979.0)
    assert lis["30"] == ("Nothing", None, [], None)
    assert b.meta.protocol["layout"] == "recbole"


def test_click_threshold_option(tmp_path, ml100k):
    res = prepare_movielens(ml100k, tmp_path / "out", click_threshold=3)
    assert res.dataset.impressions["clicked"].to_list() == [1, 1, 1, 0, 1, 0]
    assert res.dataset.meta.protocol["clicked"] == "rating >= 3"


def test_missing_item_file_is_a_note(tmp_path, write_text, assert_valid):
    d = write_text(tmp_path / "d" / "u.data", ["1\t10\t5\t100"]).parent
    res = prepare_movielens(d, tmp_path / "out")
    assert_valid(tmp_path / "out")
    assert any("no item file" in n for n in res.notes)
    assert res.dataset.listings["listing_id"].to_list() == ["10"]


def test_bad_inputs_raise_and_write_nothing(tmp_path, write_text):
    out = tmp_path / "out"
    with pytest.raises(AdapterError, match="not found"):
        prepare_movielens(tmp_path / "nope", out)
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(AdapterError, match=r"expected u\.data .* or one \*\.inter"):
        prepare_movielens(tmp_path / "emptydir", out)
    empty = write_text(tmp_path / "e" / "u.data", []).parent
    with pytest.raises(AdapterError, match=r"u\.data: the file is empty"):
        prepare_movielens(empty, out)
    bad = write_text(tmp_path / "b" / "u.data", ["x y z"]).parent
    with pytest.raises(
        AdapterError, match=r"u\.data: no valid rating line.*line 1: expected 4 tab-separated"
    ):
        prepare_movielens(bad, out)
    header = write_text(tmp_path / "h" / "x.inter", ["user_id:token\titem:token", "1\t2"]).parent
    with pytest.raises(AdapterError, match=r"x\.inter, line 1 \(header\): missing column\(s\) \['item_id'"):
        prepare_movielens(header, out)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.realdata
def test_real_movielens_if_present(shared_data, tmp_path, assert_valid):
    """ml-100k: $ADSFORMER_ML100K (CI fetches it with scripts/fetch_ml100k) or shared data (either layout)."""
    candidates = [Path(os.environ["ADSFORMER_ML100K"])] if os.environ.get("ADSFORMER_ML100K") else []
    candidates += [shared_data / "ml-100k", shared_data / "movielens"]
    d = next((c for c in candidates if c.is_dir()), None)
    if d is None:
        pytest.skip("no ml-100k directory (set ADSFORMER_ML100K or run scripts/fetch_ml100k)")
    res = prepare_movielens(d, tmp_path / "ml")
    assert_valid(tmp_path / "ml")
    s = res.summary()
    assert s["users"] == 943 and s["impressions"] == 100_000
    assert 0.5 < s["ctr"] < 0.6
