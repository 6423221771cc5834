"""How good a built index is, measured on the dataset it was built from (reported in the manifest).

* :func:`heldout_recall` — for clicked impressions of the test period (after everything the index learned
  from), the share whose clicked listing is among the top k of each query source and of the fused list,
  searched with every listing in budget (the clicked listing was being shown, so it had budget).
* :func:`neighbour_coherence` — for sampled listings, the share of a listing-to-listing source's top-k
  neighbours in the same taxonomy / colour, against the chance a random pair shares it.
* :func:`image_coherence` — the same for search by image with listings' own image files, and how often
  the listing itself comes back first.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from adsformer.retrieval.config import RetrievalError
from adsformer.retrieval.hybrid import fuse
from adsformer.retrieval.retriever import Retriever


def heldout_recall(
    retriever: Retriever, pairs: pl.DataFrame, ks: Sequence[int], max_queries: int, seed: int = 0
) -> dict[str, Any]:
    """recall@k of held-out (``query``, clicked ``listing_id``) pairs per source and fused."""
    if pairs.height > max_queries:
        pairs = pairs.sample(max_queries, seed=seed)
    kmax = max(ks)
    row = retriever.budget.row
    hits: dict[str, dict[int, int]] = {}
    seconds: list[float] = []
    skipped = 0
    for q, lid in pairs.iter_rows():
        try:
            start = time.perf_counter()
            ranked = retriever.ranked(query=q, k=kmax)
            fused = fuse(ranked, retriever.ids, kmax, retriever.cfg.hybrid.rrf_k)
            seconds.append(time.perf_counter() - start)
        except RetrievalError:
            skipped += 1
            continue
        lists = {
            **{s: np.asarray(r).tolist() for s, r in ranked.items()},
            "hybrid": [row[c.listing_id] for c in fused],
        }
        target = row[lid]
        for source, rows in lists.items():
            rank = rows.index(target) if target in rows else kmax
            per = hits.setdefault(source, dict.fromkeys(ks, 0))
            for k in ks:
                per[k] += int(rank < k)
    n = len(seconds)
    return {
        "queries": n,
        "skipped_no_token": skipped,
        "recall": {s: {f"recall@{k}": v / max(n, 1) for k, v in per.items()} for s, per in hits.items()},
        "median_ms_per_query": 1000 * float(np.median(seconds)) if seconds else None,
    }


def _chance(values: Sequence[Any]) -> float:
    counts = pl.Series(values).drop_nulls().value_counts()["count"].to_numpy().astype(np.float64)
    return float(((counts / counts.sum()) ** 2).sum()) if counts.size else 0.0


def _shares(
    retriever: Retriever,
    query_rows: Sequence[int],
    neighbour_rows: list[list[int]],
    columns: dict[str, list[Any]],
) -> dict[str, Any]:
    out: dict[str, Any] = {"queries": len(query_rows)}
    for name, values in columns.items():
        same = [
            np.mean([values[r] == values[q] for r in nb])
            for q, nb in zip(query_rows, neighbour_rows, strict=True)
            if nb and values[q] is not None
        ]
        out[f"same_{name}"] = float(np.mean(same)) if same else None
        out[f"chance_{name}"] = _chance(values)
    return out


def _label_columns(retriever: Retriever) -> dict[str, list[Any]]:
    cols = {"taxonomy": retriever.taxonomy_ids}
    if "c_color" in retriever.listings.columns:
        cols["color"] = retriever.listings["c_color"].to_list()
    return cols


def neighbour_coherence(
    retriever: Retriever, source: str, n: int = 200, k: int = 10, seed: int = 0
) -> dict[str, Any]:
    """Share of ``source``'s top-k neighbours of ``n`` sampled listings with the same taxonomy / colour."""
    index = retriever.ann[source]
    rng = np.random.default_rng(seed)
    candidates = rng.permutation(len(retriever.ids))
    queries: list[int] = []
    neighbours: list[list[int]] = []
    for r in candidates.tolist():
        if len(queries) >= n:
            break
        if index.vector(r) is None:
            continue
        rows = retriever.ranked(listing_id=retriever.ids[r], k=k, sources=[source])[source]
        queries.append(r)
        neighbours.append(np.asarray(rows).tolist())
    return {"k": k, **_shares(retriever, queries, neighbours, _label_columns(retriever))}


def image_coherence(
    retriever: Retriever, data_dir: Path, listings: pl.DataFrame, n: int = 30, k: int = 10, seed: int = 0
) -> dict[str, Any]:
    """Search by image with ``n`` sampled listings' own image files: same taxonomy / colour shares of the
    top k, and the share whose own listing comes back first."""
    with_image = listings.filter(pl.col("image_path").is_not_null()).select("listing_id", "image_path")
    if with_image.height > n:
        with_image = with_image.sample(n, seed=seed)
    row = retriever.budget.row
    queries, neighbours, self_first, seconds = [], [], 0, []
    for lid, path in with_image.iter_rows():
        start = time.perf_counter()
        rows = np.asarray(retriever.ranked(image=data_dir / path, k=k)["visual"]).tolist()
        seconds.append(time.perf_counter() - start)
        queries.append(row[lid])
        neighbours.append([r for r in rows if r != row[lid]])
        self_first += int(bool(rows) and rows[0] == row[lid])
    out = {"k": k, **_shares(retriever, queries, neighbours, _label_columns(retriever))}
    out["self_first"] = self_first / max(len(queries), 1)
    out["median_ms_per_image"] = 1000 * float(np.median(seconds[1:] or seconds)) if seconds else None
    return out
