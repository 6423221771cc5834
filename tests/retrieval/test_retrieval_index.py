"""End to end on the tiny simulator: build an index (lexical, two-tower, AIR, visual), load it, query it."""

import json

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from adsformer.cli import app
from adsformer.representations.air import AIRConfig, represent_air
from adsformer.representations.visual import VisualConfig, represent_visual
from adsformer.retrieval import Candidate, IndexConfig, RetrievalError, Retriever, build_index
from adsformer.retrieval.config import LexicalConfig, TwoTowerConfig
from adsformer.retrieval.manifest import read_manifest
from adsformer.retrieval.two_tower import click_pairs
from adsformer.simulator import SimulatorConfig, simulate

QUICK = IndexConfig(two_tower=TwoTowerConfig(epochs=8), eval_max_queries=200)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("retrieval")
    data = root / "data"
    simulate(SimulatorConfig.preset("tiny"), data)
    visual = root / "visual"
    represent_visual(
        data,
        visual,
        VisualConfig(image_size=32, heads_epochs=4, threads=1, neighbour_queries=0),
        progress=False,
    )
    air = root / "air"
    represent_air(data, air, AIRConfig(tables=(str(visual),), epochs=10, dim=64, hidden=128))
    manifest = build_index(data, root / "index", QUICK, tables=[air, visual], progress=False)
    return root, data, manifest


@pytest.fixture
def retriever(built):
    return Retriever.load(built[0] / "index")


def _labels(retriever, column):
    return retriever.listings[column].to_list()


def _share(retriever, query_rows, neighbour_rows, column):
    values = _labels(retriever, column)
    return np.mean(
        [
            np.mean([values[r] == values[q] for r in nb])
            for q, nb in zip(query_rows, neighbour_rows, strict=True)
        ]
    )


def _chance(retriever, column):
    p = pl.Series(_labels(retriever, column)).value_counts()["count"].to_numpy() / len(retriever.ids)
    return float((p**2).sum())


def test_the_manifest_describes_every_source_and_the_evaluation(built):
    root, _, manifest = built
    written = json.loads((root / "index" / "manifest.json").read_text())
    assert written == json.loads(json.dumps(manifest.to_dict()))
    assert list(written) == [
        "format_version",
        "kind",
        "dataset",
        "config",
        "static",
        "budget",
        "ann",
        "sources",
        "evaluation",
        "seconds",
    ]
    assert list(written["seconds"]) == [
        "prepare_s",
        "lexical_s",
        "two_tower_s",
        "air_s",
        "visual_s",
        "evaluation_s",
        "total_s",
    ]
    assert written["kind"] == "adsformer retrieval index" and written["budget"]["listings_in_budget"] > 0
    assert set(written["dataset"]) == {"name", "listings", "cutoff_ts", "test_start_ts"}
    assert written["ann"]["air"] == {"file": "air/index.faiss", "layout": written["ann"]["air"]["layout"]}
    assert read_manifest(root / "index") == manifest  # what index info and the Retriever read
    assert set(manifest.ann) == {"two_tower", "air", "visual"}
    assert manifest.sources["visual"]["image_encoder"]
    assert manifest.static["sources"] == {"ctr": "historical", "pccvr": "historical"}
    assert manifest.evaluation is not None
    held = manifest.evaluation["heldout_clicks"]
    assert held["queries"] > 20
    for source in ("lexical", "two_tower", "hybrid"):
        r = held["recall"][source]
        assert 0 <= r["recall@10"] <= r["recall@100"] <= r["recall@600"] <= 1
    assert held["recall"]["hybrid"]["recall@600"] >= held["recall"]["lexical"]["recall@600"]
    assert manifest.evaluation["search_by_image"]["self_first"] > 0.9


def test_a_broken_manifest_is_one_clear_error(built, tmp_path):
    import shutil

    root, _, _ = built
    broken = tmp_path / "index"
    broken.mkdir()
    shutil.copy(root / "index" / "manifest.json", broken / "manifest.json")
    obj = json.loads((broken / "manifest.json").read_text())
    del obj["ann"]
    (broken / "manifest.json").write_text(json.dumps(obj))
    with pytest.raises(RetrievalError, match=r"malformed manifest.*rebuild the index"):
        read_manifest(broken)
    (broken / "manifest.json").write_text("{not json")
    with pytest.raises(RetrievalError, match="not valid JSON"):
        read_manifest(broken)


def test_query_candidates_are_merged_deduplicated_capped_and_in_budget(retriever):
    found = retriever.candidates(query="red kite", k=50)
    assert 0 < len(found) <= 50 and all(isinstance(c, Candidate) for c in found)
    assert len({c.listing_id for c in found}) == len(found)
    assert {c.source for c in found} == {"lexical", "two_tower"}
    assert [c.score for c in found] == sorted((c.score for c in found), reverse=True)
    assert all(retriever.has_budget(c.listing_id) for c in found)
    assert len(retriever.candidates(query="kite", k=3)) == 3
    assert len(retriever.candidates(query="kite")) <= 600


def test_each_query_source_finds_the_clicked_taxonomy_far_above_chance(built, retriever):
    _, data, manifest = built
    imps = pl.read_parquet(data / "impressions.parquet")
    held = click_pairs(imps, manifest.dataset.test_start_ts, None).unique().head(60)
    tax = dict(zip(retriever.ids, retriever.taxonomy_ids, strict=True))
    chance = _chance(retriever, "taxonomy_id")
    for source in ("lexical", "two_tower"):
        shares = []
        for q, lid in held.iter_rows():
            rows = retriever.ranked(query=q, k=10, sources=[source])[source]
            shares.append(np.mean([tax[retriever.ids[r]] == tax[lid] for r in rows]) if len(rows) else 0.0)
        assert np.mean(shares) > 8 * chance, source


def test_listing_to_listing_uses_air_plus_lexical_and_never_returns_the_listing(retriever):
    rng = np.random.default_rng(0)
    queries, air_rows = [], []
    for r in rng.choice(len(retriever.ids), 40, replace=False).tolist():
        lid = retriever.ids[r]
        ranked = retriever.ranked(listing_id=lid, k=10)
        assert set(ranked) == {"air", "lexical"}
        assert r not in ranked["air"] and r not in ranked["lexical"]
        assert lid not in {c.listing_id for c in retriever.candidates(listing_id=lid, k=30)}
        queries.append(r)
        air_rows.append(ranked["air"])
    # tiny data: AIR learns from few pairs (0.22 here against a chance of 0.026)
    assert _share(retriever, queries, air_rows, "taxonomy_id") > 5 * _chance(retriever, "taxonomy_id")
    vis = [retriever.ranked(listing_id=retriever.ids[r], k=10, sources=["visual"])["visual"] for r in queries]
    assert _share(retriever, queries, vis, "c_color") > 3 * _chance(retriever, "c_color")


def test_search_by_image_finds_the_listing_itself_and_its_colour(built, retriever):
    _, data, _ = built
    listings = pl.read_parquet(data / "listings.parquet").head(15)
    queries, rows = [], []
    for lid, path in listings.select("listing_id", "image_path").iter_rows():
        found = retriever.candidates(image=data / path, k=10)
        assert {c.source for c in found} == {"visual"}
        assert found[0].listing_id == lid
        queries.append(retriever.budget.row[lid])
        rows.append([retriever.budget.row[c.listing_id] for c in found[1:]])
    assert _share(retriever, queries, rows, "c_color") > 3 * _chance(retriever, "c_color")
    as_bytes = (data / listings["image_path"][0]).read_bytes()
    assert retriever.candidates(image=as_bytes, k=1)[0].listing_id == listings["listing_id"][0]


def test_a_budget_at_zero_is_gone_from_every_source_at_the_next_query(built, retriever):
    _, data, _ = built
    image = data / pl.read_parquet(data / "listings.parquet")["image_path"][0]
    source_listing = retriever.ids[1]
    for kwargs in ({"query": "red kite"}, {"listing_id": source_listing}, {"image": image}):
        ranked = retriever.ranked(k=20, **kwargs)
        for source, rows in ranked.items():
            gone = [retriever.ids[r] for r in rows[:3]]
            for lid in gone:
                retriever.set_budget(lid, 0.0)
                assert not retriever.has_budget(lid)
            after = retriever.ranked(k=20, **kwargs)[source]
            assert not {retriever.ids[r] for r in after} & set(gone), source
            assert [retriever.ids[r] for r in after[:5]] == [retriever.ids[r] for r in rows[3:8]], source
            for lid in gone:
                retriever.set_budget(lid, 1.0)
            np.testing.assert_array_equal(retriever.ranked(k=20, **kwargs)[source], rows)
    out = [lid for lid in retriever.ids if not retriever.has_budget(lid)]  # tiny budgets from the data
    assert out == [] or not {c.listing_id for c in retriever.candidates(query="kite", k=600)} & set(out)


def test_load_round_trip_gives_the_same_candidates(built, retriever):
    again = Retriever.load(built[0] / "index")
    assert again.listing_ids == retriever.listing_ids
    for kwargs in ({"query": "blue scarf"}, {"listing_id": retriever.ids[7]}):
        assert again.candidates(k=40, **kwargs) == retriever.candidates(k=40, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"query": ""}, "empty query"),
        ({"query": "   "}, "empty query"),
        ({"query": "the of"}, "no searchable word"),
        ({"listing_id": "no-such-listing"}, "unknown listing id 'no-such-listing'"),
        ({"image": "missing.png"}, "no such file"),
        ({}, "exactly one of"),
        ({"query": "kite", "listing_id": "l_1"}, "exactly one of"),
        ({"query": "kite", "k": 0}, "k=0"),
        ({"query": "kite", "sources": ["air"]}, "not available for a query"),
    ],
)
def test_bad_queries_are_clear_errors(retriever, kwargs, message):
    with pytest.raises(RetrievalError, match=message):
        retriever.candidates(**kwargs)


def test_unreadable_image_and_missing_index(tmp_path, retriever):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 this is not a jpeg")
    with pytest.raises(RetrievalError, match="cannot be read as an image"):
        retriever.candidates(image=bad)
    with pytest.raises(RetrievalError, match="cannot be read as an image"):
        retriever.candidates(image=b"garbage")
    with pytest.raises(RetrievalError, match="not a retrieval index"):
        Retriever.load(tmp_path)
    with pytest.raises(RetrievalError, match="no such index directory"):
        Retriever.load(tmp_path / "nope")


def test_shards_agree_with_one_shard_on_the_simulator(built, tmp_path):
    _, data, _ = built
    indexes = {}
    for shards in (1, 4):
        cfg = IndexConfig(lexical=LexicalConfig(shards=shards), two_tower_enabled=False, eval_max_queries=10)
        build_index(data, tmp_path / str(shards), cfg, progress=False)
        indexes[shards] = Retriever.load(tmp_path / str(shards))
    queries = pl.read_parquet(data / "impressions.parquet")["query"].drop_nulls().unique().sort().head(80)
    overlap = []
    for q in queries:
        try:
            a, b = (indexes[s].ranked(query=q, k=10)["lexical"] for s in (1, 4))
        except RetrievalError:
            continue
        overlap.append(len(set(a) & set(b)) / max(len(a), 1))
    # catalogue-wide IDF on every shard: only each shard's own average field length differs
    assert np.mean(overlap) > 0.95


def test_cli_builds_and_retrieves(built, tmp_path):
    _, data, _ = built
    runner = CliRunner()
    out = tmp_path / "cli_index"
    res = runner.invoke(app, ["index", "build", "--data", str(data), "--out", str(out), "--set", "epochs=2"])
    assert res.exit_code == 0, res.output
    assert "recall@100" in res.output and (out / "manifest.json").exists()
    res = runner.invoke(app, ["retrieve", str(out), "--query", "red kite", "--k", "5"])
    assert res.exit_code == 0, res.output
    assert "5 candidates" in res.output
    top = Retriever.load(out).candidates(query="red kite", k=1)[0].listing_id
    res = runner.invoke(app, ["retrieve", str(out), "--query", "red kite", "--k", "5", "--exhausted", top])
    assert res.exit_code == 0 and f" {top} " not in res.output
    res = runner.invoke(app, ["retrieve", str(out), "--listing", "nope"])
    assert res.exit_code == 1 and "unknown listing id" in res.output
    res = runner.invoke(
        app, ["index", "build", "--data", str(data), "--out", str(out), "--set", "ann.kind=hnsw"]
    )
    assert res.exit_code == 1 and "ann.kind" in res.output
    assert Retriever.load(out).candidates(query="kite", k=1)  # the failed build left the index as it was
