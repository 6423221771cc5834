"""``manifest.json`` of an index directory as a typed object: what ``index build`` returns and writes, what
:class:`~adsformer.retrieval.retriever.Retriever` and ``index info`` read.

The JSON is a public contract: :meth:`IndexManifest.to_dict` writes the keys ``format_version``, ``kind``,
``dataset``, ``config``, ``static``, ``budget``, ``ann``, ``sources`` and, once the finished index is
evaluated, ``evaluation`` and ``seconds``, in that order. The per-source sections (``sources``) and the
evaluation stay plain JSON objects: each source reports its own facts.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adsformer.retrieval.ann import AnnLayout
from adsformer.retrieval.config import RetrievalError

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
KIND = "adsformer retrieval index"


@dataclass(frozen=True)
class IndexedData:
    """The dataset an index was built from: its name, listings, and the periods its learning stopped at
    (``cutoff_ts``) and its held-out evaluation starts at (``test_start_ts``); None without impressions."""

    name: str
    listings: int
    cutoff_ts: int | None
    test_start_ts: int | None


@dataclass(frozen=True)
class AnnFile:
    """One faiss index of the directory: its ``file`` (relative to the directory) and resolved layout."""

    file: str
    layout: AnnLayout

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "layout": dataclasses.asdict(self.layout)}


@dataclass(frozen=True)
class IndexManifest:
    """What an index directory holds and how well it retrieves (see the module docstring)."""

    dataset: IndexedData
    config: Mapping[str, Any]  # the IndexConfig as built
    static: Mapping[str, Any]  # provenance of the static pCTR x pCCVR scores
    listings_in_budget: int
    ann: Mapping[str, AnnFile]  # source -> its faiss index (two_tower, air, visual, ...)
    sources: Mapping[str, Mapping[str, Any]]  # source -> what it indexed
    evaluation: Mapping[str, Any] | None = None  # held-out recall and neighbour coherence, once evaluated
    seconds: Mapping[str, float] | None = None  # wall time of each build stage
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``manifest.json``."""
        out: dict[str, Any] = {
            "format_version": self.format_version,
            "kind": KIND,
            "dataset": dataclasses.asdict(self.dataset),
            "config": dict(self.config),
            "static": dict(self.static),
            "budget": {"listings_in_budget": self.listings_in_budget},
            "ann": {name: a.to_dict() for name, a in self.ann.items()},
            "sources": {name: dict(s) for name, s in self.sources.items()},
        }
        if self.evaluation is not None:
            out["evaluation"] = dict(self.evaluation)
        if self.seconds is not None:
            out["seconds"] = dict(self.seconds)
        return out

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> IndexManifest:
        """The inverse of :meth:`to_dict` (KeyError / TypeError on a malformed object)."""
        return cls(
            dataset=IndexedData(**obj["dataset"]),
            config=obj["config"],
            static=obj["static"],
            listings_in_budget=int(obj["budget"]["listings_in_budget"]),
            ann={name: AnnFile(a["file"], AnnLayout(**a["layout"])) for name, a in obj["ann"].items()},
            sources=obj["sources"],
            evaluation=obj.get("evaluation"),
            seconds=obj.get("seconds"),
            format_version=int(obj["format_version"]),
        )


def read_manifest(directory: Path) -> IndexManifest:
    """The manifest of an index directory; :class:`RetrievalError` (one line) when there is none, it is of
    another format version, or it is not a manifest."""
    path = directory / MANIFEST
    if not directory.is_dir():
        raise RetrievalError(f"{directory}: no such index directory")
    if not path.exists():
        raise RetrievalError(
            f"{directory}: not a retrieval index (no {MANIFEST}); build one with `adsformer index build`"
        )
    try:
        obj = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RetrievalError(f"{path}: not valid JSON ({exc}); rebuild the index") from exc
    version = obj.get("format_version") if isinstance(obj, dict) else None
    if version != FORMAT_VERSION:
        raise RetrievalError(f"{path}: index format {version!r}, this version reads {FORMAT_VERSION}")
    try:
        return IndexManifest.from_dict(obj)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise RetrievalError(
            f"{path}: a malformed manifest ({type(exc).__name__}: {exc}); rebuild the index"
        ) from exc
