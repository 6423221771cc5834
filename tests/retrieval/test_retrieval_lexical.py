"""The sharded tantivy source: BM25 with catalogue-wide IDF, static value, taxonomy boost, live budgets."""

import numpy as np
import polars as pl
import pytest

from adsformer.retrieval.budget import BudgetState
from adsformer.retrieval.config import LexicalConfig
from adsformer.retrieval.lexical import LexicalIndex, build_lexical, shard_of
from adsformer.retrieval.taxonomy import QueryTaxonomy
from adsformer.retrieval.tokens import listing_text, query_tokens

WORDS = ["ring", "mug", "kite", "rug", "lamp", "scarf", "candle", "vase", "sock", "hat", "bowl", "print"]
COLORS = ["red", "blue", "green", "gold", "white", "black"]


def _listings(n=600, seed=0):
    """Titles of exactly three tokens, two tags, a two-part taxonomy: every field has the same length in
    every listing, so every shard has the same average field length and sharding cannot change a score."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        w = WORDS[rng.integers(len(WORDS))]
        c, extra = rng.choice(COLORS, 2, replace=False)
        rows.append(
            (
                f"l{i}",
                f"{c} {extra} {w}",
                [w, str(rng.choice(WORDS))],
                f"shop.{w}s",
                float(rng.uniform(-1, 3)),
            )
        )
    return pl.DataFrame(rows, schema=["listing_id", "title", "tags", "taxonomy_id", "budget"], orient="row")


def _build(tmp_path, listings, cfg, static=None, name="lex"):
    text = listing_text(listings)
    static = np.linspace(0, 1, listings.height) if static is None else static
    build_lexical(tmp_path / name, listings["listing_id"].to_list(), text, static, cfg)
    return LexicalIndex(tmp_path / name, cfg)


QUERIES = [f"{c} {w}" for c in COLORS for w in WORDS[:6]] + WORDS + ["gold ring hat", "blue red"]


def test_shards_give_the_same_results_as_one_shard(tmp_path):
    listings = _listings()
    one = _build(tmp_path, listings, LexicalConfig(shards=1), name="one")
    four = _build(tmp_path, listings, LexicalConfig(shards=4), name="four")
    assert four.sizes == np.bincount(shard_of(listings["listing_id"].to_list(), 4)).tolist()
    assert len(set(four.sizes)) > 1 and sum(four.sizes) == listings.height
    for q in QUERIES:
        r1, s1 = one.search(query_tokens(q), 25, None)
        r4, s4 = four.search(query_tokens(q), 25, None)
        np.testing.assert_allclose(s4, s1, rtol=1e-5)
        np.testing.assert_array_equal(r4, r1)


def test_budget_filter_is_exact_and_immediate(tmp_path):
    listings = _listings()
    budget = BudgetState(listings["listing_id"].to_list(), listings["budget"].to_numpy())
    index = _build(tmp_path, listings, LexicalConfig(shards=3, per_shard_cap=1000))
    for q in QUERIES:
        tokens = query_tokens(q)
        all_rows, _ = index.search(tokens, 1000, None)
        rows, _ = index.search(tokens, 20, budget)
        assert budget.has_rows(rows).all()
        np.testing.assert_array_equal(rows, all_rows[budget.has_rows(all_rows)][:20])
    tokens = query_tokens("gold ring")
    top = index.search(tokens, 5, budget)[0]
    for r in top[:2]:
        budget.set(listings["listing_id"][int(r)], 0.0)
    after = index.search(tokens, 5, budget)[0]
    assert not set(top[:2].tolist()) & set(after.tolist())
    np.testing.assert_array_equal(after[:3], top[2:])
    budget.set(listings["listing_id"][int(top[0])], 7.5)
    assert index.search(tokens, 5, budget)[0][0] == top[0]


def test_per_shard_cap_and_exclusion(tmp_path):
    listings = _listings()
    index = _build(tmp_path, listings, LexicalConfig(shards=2, per_shard_cap=3))
    rows, _ = index.search(query_tokens("red"), 100, None)
    assert rows.size == 6  # at most 3 from each of the 2 shards
    first = index.search(query_tokens("red"), 1, None)[0][0]
    assert first not in index.search(query_tokens("red"), 10, None, exclude=int(first))[0]
    assert index.search([], 10, None)[0].size == 0
    assert index.search(["zzzz"], 10, None)[0].size == 0


def test_static_value_and_taxonomy_boost_reorder_equal_text_matches(tmp_path):
    listings = pl.DataFrame(
        {
            "listing_id": ["a", "b", "c"],
            "title": ["red lamp", "red lamp", "red lamp"],
            "taxonomy_id": ["home.lamps", "home.lamps", "kids.lamps"],
        }
    )
    static = np.array([0.0, 1.0, 0.5])
    plain = _build(tmp_path, listings, LexicalConfig(static_weight=0.0), static, name="plain")
    _, scores = plain.search(["lamp"], 3, None)
    assert np.ptp(scores) < 1e-6  # the same text: the same BM25
    weighted = _build(tmp_path, listings, LexicalConfig(static_weight=1.0), static, name="weighted")
    rows, scores = weighted.search(["lamp"], 3, None)
    assert rows.tolist() == [1, 2, 0]  # ordered by static value
    np.testing.assert_allclose(scores / scores[-1], [2.0, 1.5, 1.0], rtol=1e-5)  # x (1 + w * percentile)
    rows, _ = weighted.search(["lamp"], 3, None, [("kids.lamps", 0.9)])
    assert rows[0] == 2  # the taxonomy boost lifts the predicted taxonomy's listing to the top


def test_query_taxonomy_from_clicks(tmp_path):
    model = QueryTaxonomy.fit(
        ["red ring", "ring", "gold ring", "mug", "ring mug", None],
        ["jewelry.rings", "jewelry.rings", "jewelry.rings", "home.mugs", "home.mugs", "home.mugs"],
        smoothing=1.0,
    )
    top = model.predict(query_tokens("silver ring"), top=3, min_p=0.05)
    assert top[0][0] == "jewelry.rings" and top[0][1] > 0.5
    assert model.predict(["unknown"], 3, 0.0) == []
    model.save(tmp_path / "t.json")
    assert QueryTaxonomy.load(tmp_path / "t.json").predict(query_tokens("mug"), 3, 0.0) == model.predict(
        query_tokens("mug"), 3, 0.0
    )


@pytest.mark.parametrize("text", ["", "   ", "the of and", "!!!"])
def test_queries_without_words_have_no_tokens(text):
    assert query_tokens(text) == []
