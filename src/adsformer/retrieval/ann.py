"""Approximate nearest neighbours: faiss inverted-file indexes with the live budget filter inside the search.

An IVF index clusters the vectors into ``nlist`` lists (k-means centroids) and, for a query, scans only the
``nprobe`` lists whose centroids are nearest. ``ivf_flat`` keeps the full vectors in the lists (exact
scores within the scanned lists); ``ivf_sq8`` keeps one byte a dimension (a quarter of the memory, scores
within about 1e-2 of exact); ``ivf_pq`` keeps ``pq_m``-byte product-quantized codes of the residuals (the
least memory, the lowest recall). ``flat`` is one list: an exact scan. Vectors are unit length and the
metric is the inner product, so scores are cosines.

The index ids are the listings' global rows, and every search passes ``SearchParametersIVF(sel=...)`` with
the :class:`~adsformer.retrieval.budget.BudgetState`'s ``IDSelectorBitmap``: faiss skips listings without
budget while scanning the lists, so the top k are the top k *in-budget* listings among those scanned,
with no rebuild when a budget changes.

Letters: N vectors, Q queries, D dimension, K results.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from adsformer.retrieval.budget import BudgetState
from adsformer.retrieval.config import AnnConfig, RetrievalError


def _faiss() -> Any:
    """The faiss module, untyped (its stubs lack the SWIG classes' keyword constructors)."""
    import faiss

    return faiss


@contextlib.contextmanager
def faiss_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` OpenMP threads in faiss (``n <= 0``: leave the setting), then restore it."""
    faiss = _faiss()
    old = faiss.omp_get_max_threads()
    if n > 0:
        faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(old)


@dataclass(frozen=True)
class AnnLayout:
    """The resolved index settings (what ``auto`` and ``0`` became)."""

    kind: str
    nlist: int
    nprobe: int
    pq_m: int
    pq_bits: int

    @classmethod
    def resolve(cls, cfg: AnnConfig, n: int, dim: int) -> AnnLayout:
        kind = cfg.kind
        if kind == "auto":
            kind = "ivf_pq" if n > cfg.pq_above else "ivf_sq8" if n > cfg.sq8_above else "ivf_flat"
        if kind == "flat":
            nlist = 1
        else:
            nlist = cfg.nlist or round(4 * math.sqrt(n))
            nlist = max(1, min(nlist, n // 39 if cfg.nlist == 0 else n))
        nprobe = min(nlist, cfg.nprobe or max(16, nlist // 32))
        pq_m = 0
        if kind == "ivf_pq":
            pq_m = cfg.pq_m or max(1, dim // 8)
            if dim % pq_m:
                raise RetrievalError(f"ann.pq_m={pq_m} must divide the vector dimension {dim}")
        return cls(kind, nlist, nprobe, pq_m, cfg.pq_bits if kind == "ivf_pq" else 0)


class AnnIndex:
    """A faiss IVF index whose ids are global listing rows."""

    def __init__(self, index: Any, layout: AnnLayout) -> None:
        self.index = index
        self.layout = layout

    @property
    def n(self) -> int:
        return int(self.index.ntotal)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    @classmethod
    def build(cls, vectors: np.ndarray, rows: np.ndarray, cfg: AnnConfig) -> AnnIndex:
        """Train the coarse quantizer (and PQ codebooks) on a seeded sample, then add all vectors."""
        faiss = _faiss()

        x = np.ascontiguousarray(vectors, np.float32)  # (N, D)
        ids = np.ascontiguousarray(rows, np.int64)
        if x.ndim != 2 or x.shape[0] == 0:
            raise RetrievalError(f"ANN index: expected a non-empty (N, D) matrix, got shape {x.shape}")
        if ids.shape != (x.shape[0],):
            raise RetrievalError(f"ANN index: {ids.size} ids for {x.shape[0]} vectors")
        n, d = x.shape
        layout = AnnLayout.resolve(cfg, n, d)
        quantizer = faiss.IndexFlatIP(d)
        if layout.kind == "ivf_pq":
            index = faiss.IndexIVFPQ(
                quantizer, d, layout.nlist, layout.pq_m, layout.pq_bits, faiss.METRIC_INNER_PRODUCT
            )
        elif layout.kind == "ivf_sq8":
            index = faiss.IndexIVFScalarQuantizer(
                quantizer, d, layout.nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
            )
        else:
            index = faiss.IndexIVFFlat(quantizer, d, layout.nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = cfg.seed
        n_train = min(n, cfg.train_size * layout.nlist)
        if layout.kind == "ivf_pq":
            n_train = min(n, max(n_train, 64 * (1 << layout.pq_bits)))
        sample = (
            np.random.default_rng(cfg.seed).choice(n, n_train, replace=False) if n_train < n else np.arange(n)
        )
        index.train(x[np.sort(sample)])
        index.add_with_ids(x, ids)
        index.set_direct_map_type(faiss.DirectMap.Hashtable)  # vector of a listing by its row
        index.nprobe = layout.nprobe
        return cls(index, layout)

    def search(
        self, queries: np.ndarray, k: int, budget: BudgetState | None, nprobe: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rows (Q, K) int64 (-1 where fewer than K in-budget listings were scanned) and scores (Q, K)."""
        faiss = _faiss()

        q = np.ascontiguousarray(np.atleast_2d(queries), np.float32)  # (Q, D)
        if q.shape[1] != self.dim:
            raise RetrievalError(f"ANN query of dimension {q.shape[1]}; the index holds {self.dim}-d vectors")
        probe = min(self.layout.nlist, nprobe or self.layout.nprobe)
        params = (
            faiss.SearchParametersIVF(sel=budget.selector(), nprobe=probe)
            if budget is not None
            else faiss.SearchParametersIVF(nprobe=probe)
        )
        scores, rows = self.index.search(q, min(k, self.n), params=params)
        return rows.astype(np.int64), scores

    def vector(self, row: int) -> np.ndarray | None:
        """(D,) the stored vector of a global row (approximate for ``ivf_sq8`` and ``ivf_pq``), None if not
        indexed."""
        try:
            return np.asarray(self.index.reconstruct(int(row)), np.float32)
        except RuntimeError:
            return None

    def save(self, path: Path) -> None:
        _faiss().write_index(self.index, str(path))

    @classmethod
    def load(cls, path: Path, layout: AnnLayout) -> AnnIndex:
        if not path.exists():
            raise RetrievalError(f"{path}: ANN index file missing")
        index = _faiss().read_index(str(path))
        index.nprobe = layout.nprobe
        return cls(index, layout)

    def describe(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self.layout), "n": self.n, "dim": self.dim}
