"""Serving parts: the score cache, the id encoder against Vocabulary.encode, catalog bids, the candidate
protocol (the catalog fallback and the retrieval package's Retriever)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from adsformer.data.vocab import Vocabulary
from adsformer.serving.cache import ScoreCache
from adsformer.serving.candidates import CandidateLike, CandidateSource, CatalogRetriever
from adsformer.serving.catalog import Catalog, CatalogError
from adsformer.serving.encoding import IdEncoder


def test_cache_ttl_lru_and_disabled():
    now = [0.0]
    cache = ScoreCache(ttl_s=2, max_entries=2, clock=lambda: now[0])
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1
    cache.put("c", 3)  # evicts the least recently used: b
    assert cache.get("b") is None and cache.get("c") == 3
    now[0] = 2.5
    assert cache.get("a") is None and len(cache) == 1
    off = ScoreCache(ttl_s=0)
    off.put("a", 1)
    assert off.get("a") is None and not off.enabled and len(off) == 0


@pytest.mark.parametrize("num_oov", [1, 3])
def test_id_encoder_equals_vocabulary_encode(num_oov):
    vocab = Vocabulary.fit("listing", [pl.Series(["a", "b", "b", "c", "c", "c"])], top_k=2, num_oov=num_oov)
    values = ["a", "b", "c", None, "zzz", "", "c", "never"]
    assert IdEncoder(vocab).many(values).tolist() == vocab.encode(values).tolist()


def test_catalog_bids_from_column_impressions_or_default(tmp_path, sim_data):
    listings = pl.DataFrame({"listing_id": ["x", "y"], "bid": [0.5, None]})
    assert Catalog.from_frame(listings, default_bid=0.2).bids.tolist() == [0.5, 0.2]
    plain = pl.DataFrame({"listing_id": ["x", "y"]})
    assert Catalog.from_frame(plain, {"y": 0.7}, default_bid=0.2).bids.tolist() == [0.2, 0.7]
    cat = Catalog.load(sim_data)
    imps = pl.read_parquet(sim_data / "impressions.parquet").sort("ts")
    last = imps.group_by("listing_id").agg(pl.col("bid").last())
    lid, bid = last.row(0)
    assert cat.bids[cat.row[lid]] == pytest.approx(bid)
    with pytest.raises(CatalogError, match="duplicates"):
        Catalog.from_frame(pl.DataFrame({"listing_id": ["x", "x"]}))
    with pytest.raises(CatalogError, match="not found"):
        Catalog.load(tmp_path / "nothing.parquet")


def test_catalog_retriever_budgets_and_protocol(catalog):
    retriever = CatalogRetriever(catalog)
    assert isinstance(retriever, CandidateSource)
    title = catalog.listings["title"][0]
    found = retriever.candidates(query=title, k=5)
    assert 0 < len(found) <= 5 and isinstance(found[0], CandidateLike)
    assert found[0].score == max(c.score for c in found)
    top = found[0].listing_id
    retriever.set_budget(top, 0)  # live: out of the next query
    assert not retriever.has_budget(top)
    assert top not in {c.listing_id for c in retriever.candidates(query=title, k=600)}
    retriever.set_budget(top, 3.0)
    assert retriever.has_budget(top)
    with pytest.raises(ValueError, match="unknown listing_id"):
        retriever.set_budget("nope", 1.0)


def test_the_retrieval_package_implements_the_protocol():
    retrieval = pytest.importorskip("adsformer.retrieval")
    for name in ("load", "candidates", "set_budget", "has_budget", "listing_ids"):
        assert hasattr(retrieval.Retriever, name), name
    fields = set(retrieval.Candidate.__dataclass_fields__)
    assert {"listing_id", "source", "score"} <= fields
    assert issubclass(retrieval.RetrievalError, ValueError)  # the service treats it as "no candidates"
    assert np.isfinite(retrieval.Candidate("l", "lexical", 1.0).score)


def test_missing_catalog_columns_are_named(ctr_run, catalog):
    from adsformer.serving.scoring import ServingModel

    full = ServingModel.load(ctr_run, catalog)
    assert full.online.missing_columns == []
    thin = Catalog.from_frame(catalog.listings.select("listing_id", "title", "taxonomy_id"))
    assert set(ServingModel.load(ctr_run, thin).online.missing_columns) >= {"shop_id", "price"}


def test_cache_is_bounded_in_bytes_and_drops_expired_entries_on_write():
    now = [0.0]
    cache = ScoreCache(ttl_s=2, max_entries=1000, max_bytes=10_000, clock=lambda: now[0], size_of=len)
    for i in range(20):
        cache.put(f"k{i}", "x" * 996)  # 1,000 bytes with its key
    assert len(cache) == 10 and cache.bytes <= 10_000  # the oldest 10 went
    assert cache.get("k9") is None and cache.get("k19") == "x" * 996
    cache.put("huge", "y" * 20_000)  # larger than the whole cache: not stored, nothing evicted for it
    assert cache.get("huge") is None and len(cache) == 10
    now[0] = 1.0
    cache.get("k10")  # recently used, but expiry goes by age
    now[0] = 2.5
    cache.put("new", "z")  # a write drops every expired entry, looked up or not
    assert len(cache) == 1 and cache.bytes == len("new") + 1
    cache.clear()
    assert len(cache) == 0 and cache.bytes == 0


def test_cache_put_replaces_and_counts_bytes_once():
    cache = ScoreCache(ttl_s=10, max_entries=5, max_bytes=1 << 20, size_of=len)
    for _ in range(3):
        cache.put("a", "12345")
    assert len(cache) == 1 and cache.bytes == 6


@pytest.mark.parametrize(
    ("column", "values", "match"),
    [
        ("bid", [0.5, 1e308], r"1 listings have a bid .* outside \[0, 100\] \('y': 1e\+308\).*max_bid"),
        ("bid", [float("inf"), 0.2], r"bid that is not finite.*'x': inf"),
        ("bid", [float("nan"), 0.2], r"bid that is not finite.*'x': nan"),
        ("bid", [-0.1, 0.2], r"'x': -0.1"),
        ("price", [10.0, float("inf")], r"price that is not finite.*'y': inf.*max_price"),
        ("price", [-1.0, 2.0], r"price .*'x': -1"),
        ("budget", [float("nan"), 1.0], r"negative or NaN budget"),
    ],
)
def test_catalog_refuses_bad_money_by_name(column, values, match):
    frame = pl.DataFrame({"listing_id": ["x", "y"], column: values})
    with pytest.raises(CatalogError, match=match):
        Catalog.from_frame(frame)


def test_catalog_bounds_are_settings_and_missing_prices_are_fine(tmp_path):
    frame = pl.DataFrame({"listing_id": ["x", "y"], "bid": [150.0, None], "price": [None, 3.0]})
    with pytest.raises(CatalogError, match="max_bid"):
        Catalog.from_frame(frame)
    assert Catalog.from_frame(frame, max_bid=200).bids.tolist() == [150.0, 0.3]
    frame.write_parquet(tmp_path / "listings.parquet")
    with pytest.raises(CatalogError, match=r"listings.parquet: 1 listings have a bid"):
        Catalog.load(tmp_path / "listings.parquet")
    assert len(Catalog.load(tmp_path / "listings.parquet", max_bid=1000)) == 2
