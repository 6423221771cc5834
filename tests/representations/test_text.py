import json

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from adsformer.cli import app
from adsformer.config import ConfigError, apply_overrides
from adsformer.representations.table import RepresentationTable, TableError
from adsformer.representations.text import (
    NUM,
    TextConfig,
    build_corpus,
    normalize,
    represent_text,
    taxonomy_tokens,
    train_text,
)

SMALL = {"dim": 16, "bucket": 5_000, "sample": 0.0, "workers": 1}  # fast; no down-sampling of a tiny corpus

WORDS = {
    "kitchen/mugs": ["mug", "ceramic", "coffee", "teacup", "stoneware", "espresso"],
    "jewelry/rings": ["ring", "silver", "gemstone", "engagement", "band", "sapphire"],
    "garden/seeds": ["seeds", "tomato", "heirloom", "organic", "sunflower", "basil"],
}
GENERIC = ["handmade", "gift", "vintage", "unique"]


def _listings(n_per_taxonomy: int = 20, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for tax, words in WORDS.items():
        for _ in range(n_per_taxonomy):
            title = [*rng.choice(words, 3, replace=False), rng.choice(GENERIC)]
            rows.append(
                {
                    "listing_id": f"l{len(rows)}",
                    "taxonomy_id": tax,
                    "title": " ".join(str(w).title() for w in title) + f", {rng.integers(1, 99)} pcs!",
                    "tags": [str(w) for w in rng.choice(words, 2, replace=False)]
                    + [str(rng.choice(GENERIC))],
                }
            )
    return pl.DataFrame(rows, schema_overrides={"tags": pl.List(pl.String)})


def _catalog(tmp_path, listings: pl.DataFrame):
    d = tmp_path / "catalog"
    d.mkdir()
    listings.write_parquet(d / "listings.parquet")
    return d


def test_normalize_lowercases_strips_punctuation_masks_numbers_and_drops_stopwords():
    assert normalize("The Women's T-Shirt, 2-pack: 1.5 kg & 10ml of FUN!!!") == [
        "womens",
        "tshirt",
        NUM,
        "pack",
        NUM,
        "kg",
        NUM,
        "ml",
        "fun",
    ]
    assert normalize("The 10 cats", mask_numbers=False, stopwords=False) == ["the", "10", "cats"]
    assert normalize("Café  au lait") == ["café", "au", "lait"]
    assert normalize("") == [] and normalize(None) == [] and normalize("of the, and!") == []
    assert taxonomy_tokens("Apparel/Topwear > Bags & Accessories.4756105") == [
        "apparel",
        "topwear",
        "bags",
        "accessories",
        "4756105",  # taxonomy numbers are ids: kept
    ]


def test_rare_tokens_are_dropped_unless_in_the_keep_list():
    listings = pl.DataFrame(
        {
            "listing_id": ["a", "b", "c"],
            "taxonomy_id": ["x/y", "x/y", "x/z"],
            "title": ["blue mug", "blue mug zebra", "blue cup Okapi"],
            "tags": [["mug"], None, []],
        }
    )
    c = build_corpus(listings, TextConfig(min_count=2))
    assert c.documents == [
        ["blue", "mug", "mug", "x", "y"],
        ["blue", "mug", "x", "y"],
        ["blue", "x"],  # cup, okapi, z: seen once
    ]
    assert c.raw[2] == ["blue", "cup", "okapi", "x", "z"]
    assert (c.n_tokens, c.n_dropped, c.distinct_dropped, c.kept_by_list) == (15, 4, 4, 0)
    kept = build_corpus(listings, TextConfig(min_count=2, keep=("Okapi", "zebra")))
    assert kept.documents[1] == ["blue", "mug", "zebra", "x", "y"]
    assert kept.documents[2] == ["blue", "okapi", "x"]
    assert (kept.n_dropped, kept.kept_by_list, kept.vocabulary) == (2, 2, 6)
    bare = build_corpus(listings, TextConfig(min_count=1, tags=False, taxonomy=False))
    assert bare.documents[0] == ["blue", "mug"]
    with pytest.raises(TableError, match="no 'title' column"):
        build_corpus(listings.drop("title"), TextConfig())


def test_seeded_training_is_reproducible_and_groups_listings_of_one_taxonomy():
    listings = _listings()
    cfg = TextConfig(**SMALL, epochs=10, taxonomy=False, seed=4)  # titles and tags only
    t1, t2 = train_text(listings, cfg), train_text(listings, cfg)
    assert t1.ids == t2.ids == listings["listing_id"].to_list()
    assert np.array_equal(t1.vectors, t2.vectors)
    assert t1.vectors.shape == (60, 16) and t1.vectors.dtype == np.float32 and t1.kind == "text"
    v = t1.vectors / np.linalg.norm(t1.vectors, axis=1, keepdims=True)
    tax = np.array(listings["taxonomy_id"].to_list())
    sims = v @ v.T
    off_diag = ~np.eye(len(tax), dtype=bool)
    same = sims[(tax[:, None] == tax[None, :]) & off_diag].mean()
    diff = sims[tax[:, None] != tax[None, :]].mean()
    assert same > diff + 0.1, (same, diff)
    s = t1.settings
    assert s["documents"] == 60 and s["dim"] == 16 and s["listings_zero"] == 0
    assert s["tokens_dropped"] == 0 and s["vocabulary"] == 18 + len(GENERIC) + 2  # + <num>, pcs
    other = train_text(listings, TextConfig(**SMALL, epochs=10, taxonomy=False, seed=5))
    assert not np.array_equal(other.vectors, t1.vectors)


def test_listings_with_no_token_left_fall_back_to_subwords_then_zeros():
    listings = _listings(n_per_taxonomy=5).vstack(
        pl.DataFrame(
            {
                "listing_id": ["rare", "stop", "empty"],
                "taxonomy_id": [None, None, None],
                "title": ["Xylophonique", "The and of", None],
                "tags": [[], [], []],
            },
            schema_overrides={"tags": pl.List(pl.String)},
        )
    )
    t = train_text(listings, TextConfig(**SMALL, epochs=2, stopwords=True))
    s = t.settings
    assert (s["listings_from_rare_subwords"], s["listings_from_raw_title"], s["listings_zero"]) == (1, 1, 1)
    norms = np.linalg.norm(t.vectors[-3:], axis=1)
    assert norms[0] > 0 and norms[1] > 0 and norms[2] == 0


def test_represent_command_writes_table_and_quality_report(tmp_path):
    data = _catalog(tmp_path, _listings())
    out = tmp_path / "text"
    args = ["represent", "text", "--data", str(data), "--out", str(out), "--set", "dim=8"]
    r = CliRunner().invoke(app, [*args, "--set", "bucket=5000", "--set", "keep=[pcs, zebra]"])
    assert r.exit_code == 0, r.output
    assert "60 listings" in r.output and "separation AUC" in r.output
    table = RepresentationTable.load(out)
    assert table.dim == 8 and table.kind == "text" and len(table.ids) == 60
    assert table.settings["keep"] == ["pcs", "zebra"] and table.settings["lr"] == 0.05
    q = json.loads((out / "quality.json").read_text())
    assert q["kind"] == "text" and q["n"] == 60 and q["separation_auc"] > 0.9
    assert (out / "similarity.png").stat().st_size > 0
    for setting, message in (
        ("dim=0", "dim=0: must be >= 1"),
        ("max_n=2", "max_n=2: must be >= min_n=3"),
        ("lr=0", "lr=0.0: must be in (0, 1]"),
        ("colour=red", "unknown config key 'colour'"),
    ):
        bad = CliRunner().invoke(
            app, ["represent", "text", "--data", str(data), "--out", str(tmp_path / "x"), "--set", setting]
        )
        assert bad.exit_code == 1 and message in bad.output, bad.output
        assert not (tmp_path / "x").exists()
    (tmp_path / "nt").mkdir()
    no_title = _catalog(tmp_path / "nt", _listings().drop("title"))
    r = CliRunner().invoke(app, ["represent", "text", "--data", str(no_title), "--out", str(tmp_path / "y")])
    assert r.exit_code == 1 and "no 'title' column" in r.output and not (tmp_path / "y").exists()


def test_bad_settings_are_rejected_and_overrides_are_typed():
    with pytest.raises(ConfigError, match="negative=0: must be >= 1"):
        TextConfig(negative=0)
    with pytest.raises(ConfigError, match="name=' ': give the table a non-empty name"):
        TextConfig(name=" ")
    with pytest.raises(ConfigError, match="expected an integer"):
        apply_overrides(TextConfig(), {"window": "wide"}, short_keys={})
    cfg = apply_overrides(TextConfig(), {"keep": "ring, Mug", "stopwords": False}, short_keys={})
    assert cfg.keep == ("ring", "Mug") and cfg.stopwords is False


def test_represent_text_on_a_full_simulated_dataset(tmp_path):
    from adsformer.simulator import SimulatorConfig, simulate

    simulate(SimulatorConfig.preset("tiny").with_overrides(images=False), tmp_path / "data")
    report = represent_text(tmp_path / "data", tmp_path / "t", TextConfig(**SMALL, epochs=2))
    assert report["kind"] == "text" and report["n"] == report["settings"]["documents"] > 0
    assert report["separation_auc"] > 0.5
