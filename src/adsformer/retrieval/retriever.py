"""The :class:`Retriever`: a built index directory loaded for queries, with live budgets.

Index directory (written atomically by ``adsformer index build``)::

    INDEX_DIR/
      manifest.json        format, settings, sources, static-score provenance, held-out evaluation
      listings.parquet     row order = global rows: listing_id, title, taxonomy_id, c_color?, budget,
                           static_ctr, static_pccvr
      lexical/shard_NNN/   tantivy indexes;  lexical/taxonomy.json  query -> taxonomy counts
      two_tower/           model.pt, model.json (query tower + vocabulary), index.faiss
      air/ visual/ ...     index.faiss per representation table (named by the table's kind);
                           visual/encoder.pt embeds new images (search by image)

A query uses: text -> ``lexical`` + ``two_tower``; a listing id -> the first listing-to-listing table
that holds the listing (``air``, then ``visual``, ``text``, ``skipgram``) + ``lexical`` on the listing's
title (its own taxonomy boosted); an image -> ``visual``. The listing itself is never its own candidate.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from adsformer.config import ConfigError, from_dict
from adsformer.retrieval.ann import AnnIndex
from adsformer.retrieval.budget import BudgetState
from adsformer.retrieval.config import IndexConfig, RetrievalError
from adsformer.retrieval.hybrid import Candidate, fuse
from adsformer.retrieval.lexical import LexicalIndex
from adsformer.retrieval.manifest import MANIFEST, IndexManifest, read_manifest
from adsformer.retrieval.taxonomy import QueryTaxonomy
from adsformer.retrieval.tokens import query_tokens
from adsformer.retrieval.two_tower import TwoTowerModel

LISTINGS_FILE = "listings.parquet"
#: listing-to-listing sources, in order of preference
L2L_ORDER = ("air", "visual", "text", "skipgram")
MODES = {"query": ("lexical", "two_tower"), "listing": (*L2L_ORDER, "lexical"), "image": ("visual",)}


class Retriever:
    """Hybrid candidate retrieval over one index directory. Build with :meth:`load`."""

    def __init__(self, directory: Path, manifest: IndexManifest, listings: pl.DataFrame) -> None:
        self.directory = directory
        self.manifest = manifest
        try:
            self.cfg = from_dict(IndexConfig, dict(manifest.config))
        except ConfigError as exc:
            raise RetrievalError(f"{directory}/{MANIFEST}: {exc}") from exc
        self.listings = listings
        self.ids: list[str] = listings["listing_id"].to_list()
        budgets = listings["budget"].to_numpy() if "budget" in listings.columns else None
        self.budget = BudgetState(self.ids, budgets)
        self.titles: list[str | None] = (
            listings["title"].to_list() if "title" in listings.columns else [None] * len(self.ids)
        )
        self.taxonomy_ids: list[str | None] = (
            listings["taxonomy_id"].to_list() if "taxonomy_id" in listings.columns else [None] * len(self.ids)
        )
        self.lexical = LexicalIndex(directory / "lexical", self.cfg.lexical)
        self.taxonomy = QueryTaxonomy.load(directory / "lexical" / "taxonomy.json")
        self.ann: dict[str, AnnIndex] = {
            name: AnnIndex.load(directory / a.file, a.layout) for name, a in manifest.ann.items()
        }
        self.two_tower = TwoTowerModel.load(directory / "two_tower") if "two_tower" in self.ann else None
        self._encoder: Any = None
        self._encoder_lock = threading.Lock()

    @classmethod
    def load(cls, index_dir: str | Path) -> Retriever:
        """Open what ``adsformer index build`` wrote (budgets start from its ``listings.parquet``)."""
        directory = Path(index_dir)
        manifest = read_manifest(directory)
        return cls(directory, manifest, pl.read_parquet(directory / LISTINGS_FILE))

    # -- budgets ------------------------------------------------------------------------------------------
    @property
    def listing_ids(self) -> list[str]:
        return list(self.ids)

    def set_budget(self, listing_id: str, budget: float) -> None:
        """Live: a budget <= 0 removes the listing from every source's next query; > 0 brings it back."""
        self.budget.set(listing_id, budget)

    def has_budget(self, listing_id: str) -> bool:
        return self.budget.has(listing_id)

    # -- queries ------------------------------------------------------------------------------------------
    def candidates(
        self,
        *,
        query: str | None = None,
        listing_id: str | None = None,
        image: str | Path | bytes | None = None,
        k: int = 600,
        sources: Sequence[str] | None = None,
    ) -> list[Candidate]:
        """At most ``k`` in-budget candidates for exactly one of a query text, a listing id or an image
        (file path or encoded bytes), merged over the mode's sources (``sources`` narrows them)."""
        ranked = self.ranked(query=query, listing_id=listing_id, image=image, k=k, sources=sources)
        return fuse(ranked, self.ids, k, self.cfg.hybrid.rrf_k)

    def ranked(
        self,
        *,
        query: str | None = None,
        listing_id: str | None = None,
        image: str | Path | bytes | None = None,
        k: int = 600,
        sources: Sequence[str] | None = None,
    ) -> dict[str, np.ndarray]:
        """Each source's global rows, best first (at most ``k`` each), before fusion."""
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise RetrievalError(f"k={k!r}: the number of candidates must be an integer >= 1")
        given = {
            m: v for m, v in (("query", query), ("listing", listing_id), ("image", image)) if v is not None
        }
        if len(given) != 1:
            raise RetrievalError(
                "give exactly one of query, listing_id or image"
                + (f" (got {', '.join(given)})" if given else "")
            )
        mode = next(iter(given))
        wanted = self._sources(mode, sources)
        if mode == "query":
            return self._by_query(str(query), int(k), wanted)
        if mode == "listing":
            return self._by_listing(str(listing_id), int(k), wanted)
        assert image is not None
        return self._by_image(image, int(k))

    def _sources(self, mode: str, sources: Sequence[str] | None) -> list[str]:
        present = [s for s in MODES[mode] if s == "lexical" or s in self.ann]
        if sources is None:
            return present
        unknown = [s for s in sources if s not in present]
        if unknown:
            raise RetrievalError(
                f"source(s) {unknown} not available for a {mode} query; this index has {present}"
            )
        return list(sources)

    def _ann(self, name: str, vector: np.ndarray, k: int, exclude: int | None = None) -> np.ndarray:
        rows, _ = self.ann[name].search(vector[None, :], k + (exclude is not None), self.budget)
        r = rows[0]
        return r[(r >= 0) & (r != (-1 if exclude is None else exclude))][:k]

    def _by_query(self, query: str, k: int, wanted: list[str]) -> dict[str, np.ndarray]:
        if not query.strip():
            raise RetrievalError("empty query text")
        tokens = query_tokens(query)
        if not tokens:
            raise RetrievalError(f"query {query!r} has no searchable word (only stop-words or punctuation)")
        out: dict[str, np.ndarray] = {}
        if "lexical" in wanted:
            taxa = self.taxonomy.predict(
                tokens, self.cfg.lexical.taxonomy_top, self.cfg.lexical.taxonomy_min_p
            )
            out["lexical"] = self.lexical.search(tokens, k, self.budget, taxa)[0]
        if "two_tower" in wanted and self.two_tower is not None:
            vec, _ok = self.two_tower.query_vectors([query])
            out["two_tower"] = self._ann("two_tower", vec[0], k)
        return out

    def _by_listing(self, listing_id: str, k: int, wanted: list[str]) -> dict[str, np.ndarray]:
        row = self.budget.row_of(listing_id)
        out: dict[str, np.ndarray] = {}
        for name in (s for s in wanted if s != "lexical"):
            vec = self.ann[name].vector(row)
            if vec is not None:
                out[name] = self._ann(name, vec, k, exclude=row)
                break  # the first listing-to-listing table that holds the listing
        if "lexical" in wanted:
            tax = self.taxonomy_ids[row]
            taxa = [(tax, 1.0)] if tax is not None else []
            out["lexical"] = self.lexical.search(
                query_tokens(self.titles[row]), k, self.budget, taxa, exclude=row
            )[0]
        return out

    def _by_image(self, image: str | Path | bytes, k: int) -> dict[str, np.ndarray]:
        if "visual" not in self.ann:
            raise RetrievalError(
                "search by image needs a visual source: build the index with --tables VISUAL_TABLE"
            )
        if not isinstance(image, bytes):
            path = Path(image)
            if not path.is_file():
                raise RetrievalError(f"image {path}: no such file")
        vectors, ok = self.image_encoder().encode([image])
        if not ok[0]:
            what = "the image bytes" if isinstance(image, bytes) else f"image {image}"
            raise RetrievalError(f"{what}: cannot be read as an image")
        return {"visual": self._ann("visual", vectors[0], k)}

    def image_encoder(self) -> Any:
        """The visual table's :class:`~adsformer.representations.visual.encoder.ImageEncoder` (loaded once)."""
        from adsformer.representations.table import TableError
        from adsformer.representations.visual.encoder import ImageEncoder

        with self._encoder_lock:
            if self._encoder is None:
                try:
                    self._encoder = ImageEncoder.load(self.directory / "visual")
                except TableError as exc:
                    raise RetrievalError(str(exc)) from exc
            return self._encoder
