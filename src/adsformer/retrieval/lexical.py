"""Lexical retrieval: a sharded tantivy inverted index over listing titles, tags and taxonomy paths.

As in the paper (appendix A.1), each shard first *fetches* by text match, then the fetched listings are
*ranked* by a value-like score:

1. **Fetch.** Each shard is its own tantivy index (listings assigned by ``crc32(listing_id) % shards``;
   fields ``title``, ``tags``, ``taxonomy`` holding normalized tokens, and ``row``, the listing's global
   row, as a fast field). A query is a disjunction of its tokens over the three fields, each term query
   boosted by ``field_boost * idf_all / idf_shard`` (document frequencies summed over all shards), so every
   shard scores BM25 with the catalogue-wide IDF. A shard returns its top ``per_shard_cap`` (<= 1000)
   listings by BM25 *with budget left*: hits come in score order (block-max WAND) and are checked against
   the live budget bitmap; more are fetched (doubling) until ``per_shard_cap`` in-budget hits are found or
   the shard has no more.
2. **Rank.** ``score = (BM25 + taxonomy_boost * P(listing's taxonomy | query)) * (1 + static_weight *
   percentile)``, with ``percentile`` the listing's rank by offline static pCTR x pCCVR
   (``rows.npz``: the multiplier and a taxonomy code per global row). Shards are merged by score (ties by
   row) and the top ``k`` returned.

Ranking after the fetch keeps tantivy's top-k pruning: scoring every matching listing with a per-listing
weight inside tantivy (``weight_by_field``) was ~5x slower on a million listings (benchmarks/ann.py).
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
ROWS_FILE = "rows.npz"
_HEAP = 64_000_000  # tantivy writer memory per shard


def _schema() -> Any:
    import tantivy

    sb = tantivy.SchemaBuilder()
    for name in TEXT_FIELDS:
        sb.add_text_field(name, tokenizer_name="whitespace", index_option="freq")
    sb.add_unsigned_field("row", fast=True)
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
    """Write ``cfg.shards`` tantivy indexes under ``directory/shard_NNN`` and ``rows.npz``; returns sizes."""
    import tantivy

    if not listing_ids:
        raise RetrievalError("no listings to index")
    directory.mkdir(parents=True, exist_ok=True)
    schema = _schema()
    shard = shard_of(listing_ids, cfg.shards)
    sizes = []
    for s in range(cfg.shards):
        path = directory / f"shard_{s:03d}"
        path.mkdir()
        index = tantivy.Index(schema, path=str(path))
        writer = index.writer(heap_size=_HEAP, num_threads=1)
        rows = np.flatnonzero(shard == s)
        for r in rows:
            doc = tantivy.Document()
            doc.add_unsigned("row", int(r))
            doc.add_text("title", " ".join(text.title[r]))
            doc.add_text("tags", " ".join(text.tags[r]))
            doc.add_text("taxonomy", " ".join(text.taxonomy[r]))
            writer.add_document(doc)
        writer.commit()
        writer.wait_merging_threads()
        sizes.append(int(rows.size))
        if advance is not None:
            advance(int(rows.size))
    taxa = sorted({t for t in text.taxonomy_id if t is not None})
    code = {t: i for i, t in enumerate(taxa)}
    np.savez(
        directory / ROWS_FILE,
        multiplier=(1.0 + cfg.static_weight * np.clip(static_percentile, 0.0, 1.0)).astype(np.float32),
        taxonomy_code=np.array(
            [code.get(t, -1) if t is not None else -1 for t in text.taxonomy_id], np.int32
        ),
        taxonomies=np.array(taxa, dtype=np.str_),
    )
    return {"shards": cfg.shards, "listings_per_shard": sizes}


class LexicalIndex:
    """The shards of a built index, opened for search."""

    def __init__(self, directory: Path, cfg: LexicalConfig) -> None:
        import tantivy

        self.cfg = cfg
        paths = [directory / f"shard_{s:03d}" for s in range(cfg.shards)]
        missing = [p.name for p in paths if not p.is_dir()] + (
            [] if (directory / ROWS_FILE).exists() else [ROWS_FILE]
        )
        if missing:
            raise RetrievalError(f"{directory}: lexical index incomplete, missing {', '.join(missing)}")
        self.indexes = [tantivy.Index.open(str(p)) for p in paths]
        self.schema = self.indexes[0].schema
        self.searchers = [ix.searcher() for ix in self.indexes]
        self.sizes = [int(s.num_docs) for s in self.searchers]
        self.n = sum(self.sizes)
        self.boosts = {"title": cfg.title_boost, "tags": cfg.tags_boost, "taxonomy": cfg.taxonomy_text_boost}
        with np.load(directory / ROWS_FILE) as rows:
            self.multiplier = rows["multiplier"]  # (N,) 1 + static_weight * percentile
            self.taxonomy_code = rows["taxonomy_code"]  # (N,) -1 = none
            self.taxonomy_index = {str(t): i for i, t in enumerate(rows["taxonomies"].tolist())}

    def _queries(self, tokens: Sequence[str]) -> list[Any | None]:
        """One tantivy query per shard (None where no token occurs in the shard)."""
        from tantivy import Occur, Query

        terms = [(f, t) for f in TEXT_FIELDS if self.boosts[f] > 0 for t in tokens]
        df = np.array([[s.doc_freq(f, t) for f, t in terms] for s in self.searchers])  # (shards, terms)
        total = df.sum(axis=0)
        out: list[Any | None] = []
        for s, size in enumerate(self.sizes):
            clauses = []
            for j, (f, t) in enumerate(terms):
                if df[s, j] == 0:
                    continue
                boost = self.boosts[f] * _idf(self.n, int(total[j])) / _idf(size, int(df[s, j]))
                clauses.append((Occur.Should, Query.boost_query(Query.term_query(self.schema, f, t), boost)))
            out.append(Query.boolean_query(clauses) if clauses else None)
        return out

    def search(
        self,
        tokens: Sequence[str],
        k: int,
        budget: BudgetState | None,
        taxonomies: Sequence[tuple[str, float]] = (),
        exclude: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Global rows (R,) int64 and scores (R,) float32 of the top ``k`` in-budget listings among each
        shard's ``per_shard_cap`` best text matches of ``tokens`` (``exclude``: a row never returned)."""
        if not tokens or k < 1:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        share = max(budget.in_budget / max(budget.n, 1), 0.01) if budget is not None else 1.0
        rows, scores = [], []
        for searcher, size, query in zip(self.searchers, self.sizes, self._queries(tokens), strict=True):
            if query is not None:
                r, sc = self._fetch(searcher, size, query, share, budget, exclude)
                rows.append(r)
                scores.append(sc)
        if not rows:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        all_rows = np.concatenate(rows)
        bm25 = np.concatenate(scores)
        boost = np.zeros(len(self.taxonomy_index) + 1, np.float32)  # last entry: code -1 (no taxonomy)
        for tax, p in taxonomies:
            if tax in self.taxonomy_index:
                boost[self.taxonomy_index[tax]] += self.cfg.taxonomy_boost * p
        final = (bm25 + boost[self.taxonomy_code[all_rows]]) * self.multiplier[all_rows]
        order = np.lexsort((all_rows, -final))[:k]
        return all_rows[order], final[order].astype(np.float32)

    def _fetch(
        self,
        searcher: Any,
        size: int,
        query: Any,
        share: float,
        budget: BudgetState | None,
        exclude: int | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The shard's top ``per_shard_cap`` in-budget text matches: rows and BM25 scores."""
        cap = self.cfg.per_shard_cap
        limit = min(size, math.ceil((cap + 1) / share * self.cfg.overfetch))
        while True:
            hits = searcher.search(query, limit, count=False).hits
            rows = np.asarray(searcher.fast_field_values("row", [a for _, a in hits]), np.int64)
            scores = np.asarray([s for s, _ in hits], np.float32)
            keep = budget.has_rows(rows) if budget is not None else np.ones(rows.size, bool)
            if exclude is not None:
                keep &= rows != exclude
            if keep.sum() >= cap or len(hits) < limit or limit >= size:
                return rows[keep][:cap], scores[keep][:cap]
            limit = min(size, limit * 2)
