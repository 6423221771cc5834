"""Lexical retrieval: a sharded tantivy inverted index over listing titles, tags and taxonomy paths.

Each shard is its own tantivy index (listings assigned by ``crc32(listing_id) % shards``) with the fields

* ``title``, ``tags``, ``taxonomy`` — normalized tokens (:mod:`adsformer.retrieval.tokens`), BM25-scored;
* ``taxonomy_key`` — the raw taxonomy id, for the taxonomy-match boost (a constant score per predicted
  taxonomy, ``taxonomy_boost * P(taxonomy | query)``, added when the listing matches some token);
* ``row`` — the listing's global row (fast field), the id the budget bitmap is indexed by;
* ``static`` — ``w = 2 ** (1 + static_weight * percentile) - 2`` (fast field): tantivy multiplies a hit's
  score by ``log2(2 + w) = 1 + static_weight * percentile`` (``weight_by_field``).

A query is a disjunction of its tokens over the three text fields; each term query is boosted by
``field_boost * idf_all / idf_shard`` (document frequencies summed over all shards), so every shard ranks by
the catalogue-wide IDF. Each shard returns its top ``min(k, per_shard_cap)`` listings *with budget left*:
hits are fetched in score order and checked against the live budget bitmap, fetching more (doubling)
until enough in-budget hits are found or the shard is exhausted, so the result is exactly the top in-budget
listings. Shards are merged by score (ties by row).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from adsformer.retrieval.budget import BudgetState
from adsformer.retrieval.config import LexicalConfig, RetrievalError
from adsformer.retrieval.tokens import ListingText

TEXT_FIELDS = ("title", "tags", "taxonomy")
_HEAP = 64_000_000  # tantivy writer memory per shard


def _schema() -> Any:
    import tantivy

    sb = tantivy.SchemaBuilder()
    for name in TEXT_FIELDS:
        sb.add_text_field(name, tokenizer_name="whitespace", index_option="freq")
    sb.add_text_field("taxonomy_key", tokenizer_name="raw", index_option="basic")
    sb.add_unsigned_field("row", fast=True)
    sb.add_float_field("static", fast=True)
    return sb.build()


def shard_of(listing_ids: Sequence[str], shards: int) -> np.ndarray:
    """(N,) shard number of each listing: a stable hash of its id."""
    return np.array([zlib.crc32(lid.encode()) % shards for lid in listing_ids], np.int64)


def _idf(n: int, df: int) -> float:
    """tantivy's BM25 IDF."""
    return math.log(1.0 + (n - df + 0.5) / (df + 0.5))


def build_lexical(
    directory: Path,
    listing_ids: Sequence[str],
    text: ListingText,
    static_percentile: np.ndarray,
    cfg: LexicalConfig,
    advance: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Write ``cfg.shards`` tantivy indexes under ``directory/shard_NNN``; returns their sizes."""
    import tantivy

    if not listing_ids:
        raise RetrievalError("no listings to index")
    schema = _schema()
    shard = shard_of(listing_ids, cfg.shards)
    weight = np.exp2(1.0 + cfg.static_weight * np.clip(static_percentile, 0.0, 1.0)) - 2.0
    sizes = []
    for s in range(cfg.shards):
        path = directory / f"shard_{s:03d}"
        path.mkdir(parents=True)
        index = tantivy.Index(schema, path=str(path))
        writer = index.writer(heap_size=_HEAP, num_threads=1)
        rows = np.flatnonzero(shard == s)
        for r in rows:
            doc = tantivy.Document()
            doc.add_unsigned("row", int(r))
            doc.add_float("static", float(weight[r]))
            doc.add_text("title", " ".join(text.title[r]))
            doc.add_text("tags", " ".join(text.tags[r]))
            doc.add_text("taxonomy", " ".join(text.taxonomy[r]))
            if text.taxonomy_id[r] is not None:
                doc.add_text("taxonomy_key", str(text.taxonomy_id[r]))
            writer.add_document(doc)
        writer.commit()
        writer.wait_merging_threads()
        sizes.append(int(rows.size))
        if advance is not None:
            advance(int(rows.size))
    return {"shards": cfg.shards, "listings_per_shard": sizes}


class LexicalIndex:
    """The shards of a built index, opened for search."""

    def __init__(self, directory: Path, cfg: LexicalConfig) -> None:
        import tantivy

        self.cfg = cfg
        paths = [directory / f"shard_{s:03d}" for s in range(cfg.shards)]
        missing = [p.name for p in paths if not p.is_dir()]
        if missing:
            raise RetrievalError(f"{directory}: lexical shard(s) missing: {', '.join(missing)}")
        self.indexes = [tantivy.Index.open(str(p)) for p in paths]
        self.schema = self.indexes[0].schema
        self.searchers = [ix.searcher() for ix in self.indexes]
        self.sizes = [int(s.num_docs) for s in self.searchers]
        self.n = sum(self.sizes)
        self.boosts = {"title": cfg.title_boost, "tags": cfg.tags_boost, "taxonomy": cfg.taxonomy_text_boost}

    def _queries(self, tokens: Sequence[str], taxonomies: Sequence[tuple[str, float]]) -> list[Any | None]:
        """One tantivy query per shard (None where no token occurs in the shard)."""
        from tantivy import Occur, Query

        terms = [(f, t) for f in TEXT_FIELDS if self.boosts[f] > 0 for t in tokens]
        df = np.array([[s.doc_freq(f, t) for f, t in terms] for s in self.searchers])  # (shards, terms)
        total = df.sum(axis=0)
        boost_clauses = [
            (Occur.Should, Query.const_score_query(Query.term_query(self.schema, "taxonomy_key", tax), score))
            for tax, p in taxonomies
            if (score := self.cfg.taxonomy_boost * p) > 0
        ]
        out: list[Any | None] = []
        for s, size in enumerate(self.sizes):
            clauses = []
            for j, (f, t) in enumerate(terms):
                if df[s, j] == 0:
                    continue
                boost = self.boosts[f] * _idf(self.n, int(total[j])) / _idf(size, int(df[s, j]))
                clauses.append((Occur.Should, Query.boost_query(Query.term_query(self.schema, f, t), boost)))
            if not clauses:
                out.append(None)
                continue
            text_query = Query.boolean_query(clauses)
            out.append(
                Query.boolean_query([(Occur.Must, text_query), *boost_clauses])
                if boost_clauses
                else text_query
            )
        return out

    def search(
        self,
        tokens: Sequence[str],
        k: int,
        budget: BudgetState | None,
        taxonomies: Sequence[tuple[str, float]] = (),
        exclude: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Global rows (R,) int64 and scores (R,) float32 of the top ``k`` in-budget listings matching any
        of ``tokens`` (``exclude``: a row never returned), best first."""
        if not tokens or k < 1:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        cap = min(k, self.cfg.per_shard_cap)
        share = max(budget.in_budget / max(budget.n, 1), 0.01) if budget is not None else 1.0
        rows, scores = [], []
        for searcher, size, query in zip(
            self.searchers, self.sizes, self._queries(tokens, taxonomies), strict=True
        ):
            if query is None:
                continue
            r, sc = self._shard_top(searcher, size, query, cap, share, budget, exclude)
            rows.append(r)
            scores.append(sc)
        if not rows:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        all_rows, all_scores = np.concatenate(rows), np.concatenate(scores)
        order = np.lexsort((all_rows, -all_scores))[:k]
        return all_rows[order], all_scores[order]

    def _shard_top(
        self,
        searcher: Any,
        size: int,
        query: Any,
        cap: int,
        share: float,
        budget: BudgetState | None,
        exclude: int | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        limit = min(size, math.ceil((cap + 1) / share * self.cfg.overfetch))
        while True:
            hits = searcher.search(query, limit, count=False, weight_by_field="static").hits
            rows = np.asarray(searcher.fast_field_values("row", [a for _, a in hits]), np.int64)
            scores = np.asarray([s for s, _ in hits], np.float32)
            keep = budget.has_rows(rows) if budget is not None else np.ones(rows.size, bool)
            if exclude is not None:
                keep &= rows != exclude
            if keep.sum() >= cap or len(hits) < limit or limit >= size:
                return rows[keep][:cap], scores[keep][:cap]
            limit = min(size, limit * 2)
