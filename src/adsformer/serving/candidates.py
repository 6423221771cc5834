"""Where candidate ads come from: the :class:`CandidateSource` protocol and :class:`CatalogRetriever`.

The service codes against :class:`CandidateSource`, the API of :class:`adsformer.retrieval.Retriever`
(lexical + ANN retrieval with live budgets, loaded with ``Retriever.load(index_dir)``), so tests can pass
any implementation. :class:`CatalogRetriever` is the documented fallback when no index is given
(``adsformer serve`` without ``--index``) and what the tests use: every listing with budget left, or the
listings whose title, tags or taxonomy share a token with the query, or the context listing's taxonomy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from adsformer.serving.catalog import Catalog

_TOKEN = re.compile(r"[a-z0-9]+")


@runtime_checkable
class CandidateLike(Protocol):
    """One retrieved listing (``adsformer.retrieval.Candidate`` has these fields)."""

    @property
    def listing_id(self) -> str: ...

    @property
    def source(self) -> str: ...

    @property
    def score(self) -> float: ...


@runtime_checkable
class CandidateSource(Protocol):
    """What ranking needs from retrieval (the API of ``adsformer.retrieval.Retriever``)."""

    def candidates(
        self,
        *,
        query: str | None = None,
        listing_id: str | None = None,
        image: Any = None,
        k: int = 600,
    ) -> list[Any]: ...

    def set_budget(self, listing_id: str, budget: float) -> None: ...

    def has_budget(self, listing_id: str) -> bool: ...

    @property
    def listing_ids(self) -> list[str]: ...


@dataclass(frozen=True)
class CatalogCandidate:
    listing_id: str
    source: str
    score: float


class CatalogRetriever:
    """A token-match retriever over the catalog, with live budgets (the fallback without an index)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.budgets = catalog.budgets.copy()  # (N,) dollars left; inf = unlimited
        frame = catalog.listings
        texts = [""] * len(catalog)
        for col in ("title", "taxonomy_id"):
            if col in frame.columns:
                texts = [f"{t} {v or ''}" for t, v in zip(texts, frame[col].to_list(), strict=True)]
        if "tags" in frame.columns:
            texts = [f"{t} {' '.join(v or [])}" for t, v in zip(texts, frame["tags"].to_list(), strict=True)]
        self._tokens: dict[str, list[int]] = {}
        for i, text in enumerate(texts):
            for tok in set(_TOKEN.findall(text.lower())):
                self._tokens.setdefault(tok, []).append(i)
        tax = frame["taxonomy_id"].to_list() if "taxonomy_id" in frame.columns else [None] * len(catalog)
        self._taxonomy = tax
        self._by_taxonomy: dict[str, list[int]] = {}
        for i, t in enumerate(tax):
            if t is not None:
                self._by_taxonomy.setdefault(t, []).append(i)

    @property
    def listing_ids(self) -> list[str]:
        return list(self.catalog.ids)

    def set_budget(self, listing_id: str, budget: float) -> None:
        self.budgets[self._row(listing_id)] = float(budget)

    def has_budget(self, listing_id: str) -> bool:
        row = self.catalog.row.get(listing_id)
        return row is not None and bool(self.budgets[row] > 0)

    def candidates(
        self,
        *,
        query: str | None = None,
        listing_id: str | None = None,
        image: Any = None,
        k: int = 600,
    ) -> list[CatalogCandidate]:
        """Up to ``k`` listings with budget: query-token matches (score = matched tokens), else the context
        listing's taxonomy (score 1), else every listing (score 0); ties by catalog order."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        scores = np.zeros(len(self.catalog))
        source = "catalog"
        if query:
            for tok in set(_TOKEN.findall(query.lower())):
                for i in self._tokens.get(tok, []):
                    scores[i] += 1.0
            source = "catalog-lexical"
        elif listing_id is not None:
            row = self.catalog.row.get(listing_id)
            tax = self._taxonomy[row] if row is not None else None
            for i in self._by_taxonomy.get(tax, []) if tax is not None else []:
                scores[i] = 1.0
            source = "catalog-taxonomy"
        eligible = self.budgets > 0
        if query or listing_id is not None:
            eligible &= scores > 0
        if listing_id is not None and listing_id in self.catalog.row:
            eligible[self.catalog.row[listing_id]] = False  # never the page's own listing
        rows = np.flatnonzero(eligible)
        order = rows[np.argsort(-scores[rows], kind="stable")][:k]
        return [CatalogCandidate(self.catalog.ids[i], source, float(scores[i])) for i in order]

    def _row(self, listing_id: str) -> int:
        try:
            return self.catalog.row[listing_id]
        except KeyError:
            raise ValueError(f"unknown listing_id {listing_id!r}") from None
