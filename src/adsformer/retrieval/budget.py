"""Live campaign budgets as one bitmap that every retrieval source filters on, with no index rebuild.

Each listing of an index has a global row ``0..N-1`` (the order of ``listings.parquet`` in the index
directory); every faiss index stores these rows as its ids and every lexical shard stores them in a fast
field. :class:`BudgetState` keeps the budgets and a packed bitmap (bit ``r % 8`` of byte ``r // 8``, as
faiss' ``IDSelectorBitmap`` reads it) with bit ``r`` set while listing ``r`` has budget left (> 0). The
faiss selector points at the bitmap's memory, so :meth:`BudgetState.set` flipping a bit takes effect in
the very next ANN search; the lexical source checks the same bits on its hits.

A missing budget (no ``budget`` column, or a null) means "not limited": the listing is in budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from adsformer.retrieval.config import RetrievalError


class BudgetState:
    """Budgets of ``ids`` (rows ``0..N-1``) and the in-budget bitmap derived from them."""

    def __init__(self, ids: Sequence[str], budgets: np.ndarray | None = None) -> None:
        self.ids = list(ids)
        self.row = {lid: i for i, lid in enumerate(self.ids)}
        if len(self.row) != len(self.ids):
            raise RetrievalError("listing ids of a budget state must be unique")
        n = len(self.ids)
        b = np.full(n, np.inf) if budgets is None else np.asarray(budgets, np.float64).copy()
        if b.shape != (n,):
            raise RetrievalError(f"budgets: expected {n} values, got shape {b.shape}")
        self.budgets = np.where(np.isnan(b), np.inf, b)  # null = not limited
        # faiss reads the bitmap in place: this array is never replaced, only written
        self.bitmap = np.packbits(self.budgets > 0, bitorder="little")
        self._in_budget = int((self.budgets > 0).sum())
        self._selector: Any = None

    @property
    def n(self) -> int:
        return len(self.ids)

    def row_of(self, listing_id: str) -> int:
        r = self.row.get(listing_id)
        if r is None:
            raise RetrievalError(
                f"unknown listing id {listing_id!r}: the index holds {self.n:,} listings "
                f"(e.g. {', '.join(map(repr, self.ids[:3]))})"
            )
        return r

    def set(self, listing_id: str, budget: float) -> None:
        """Set a listing's remaining budget; ``<= 0`` takes it out of every source's next query."""
        r = self.row_of(listing_id)
        value = float(budget)
        if np.isnan(value):
            raise RetrievalError(f"budget of {listing_id!r} is NaN; give a number (<= 0 = out of budget)")
        self.budgets[r] = value
        byte, bit = r >> 3, np.uint8(1 << (r & 7))
        was = bool(self.bitmap[byte] & bit)
        if value > 0:
            self.bitmap[byte] |= bit
        else:
            self.bitmap[byte] &= ~bit
        self._in_budget += int(value > 0) - int(was)

    def has(self, listing_id: str) -> bool:
        return bool(self.has_rows(np.array([self.row_of(listing_id)]))[0])

    def has_rows(self, rows: np.ndarray) -> np.ndarray:
        """(R,) bool: whether each global row has budget left (read from the bitmap, as faiss does)."""
        rows = np.asarray(rows, np.int64)
        return ((self.bitmap[rows >> 3] >> (rows & 7).astype(np.uint8)) & 1).astype(bool)

    @property
    def in_budget(self) -> int:
        """Listings with budget left (kept up to date by :meth:`set`)."""
        return self._in_budget

    def selector(self) -> Any:
        """A faiss ``IDSelectorBitmap`` over the live bitmap (made once; reads the array's memory)."""
        if self._selector is None:
            import faiss

            self._selector = faiss.IDSelectorBitmap(self.bitmap.size, faiss.swig_ptr(self.bitmap))
        return self._selector
