"""``adsformer index build``: one index directory (see :mod:`adsformer.retrieval.retriever`) from a dataset,
optional representation tables and optional trained runs, written atomically.

Steps: static pCTR x pCCVR per listing (:mod:`~adsformer.retrieval.static`); the query -> taxonomy counts and
the sharded lexical index; the two-tower model (clicks before the test period) and its listing vectors in an
IVF index; one IVF index per representation table (``air``, ``visual``, ...; a visual table's
``encoder.pt`` is copied for search by image); then the held-out evaluation of the finished index
(:mod:`~adsformer.retrieval.evaluate`), written into ``manifest.json``.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

from adsformer.config import to_dict
from adsformer.console import ProgressBar, StageTimes
from adsformer.data.schema import Dataset
from adsformer.io import atomic_dir, write_json
from adsformer.representations.quality import unit_rows
from adsformer.representations.table import RepresentationTable
from adsformer.retrieval.ann import AnnIndex, faiss_threads
from adsformer.retrieval.config import IndexConfig, RetrievalError
from adsformer.retrieval.lexical import build_lexical
from adsformer.retrieval.manifest import MANIFEST, AnnFile, IndexedData, IndexManifest
from adsformer.retrieval.retriever import L2L_ORDER, LISTINGS_FILE, Retriever
from adsformer.retrieval.static import StaticScores, static_scores
from adsformer.retrieval.taxonomy import QueryTaxonomy
from adsformer.retrieval.tokens import ListingText, listing_text
from adsformer.retrieval.two_tower import click_pairs, train_two_tower
from adsformer.runtime import torch_threads

_KEEP = ("listing_id", "title", "taxonomy_id", "c_color", "budget")


def build_index(
    data_dir: str | Path,
    out: str | Path,
    cfg: IndexConfig,
    *,
    tables: Sequence[str | Path] = (),
    runs: Sequence[str | Path] = (),
    progress: bool = True,
    say: Callable[[str], None] | None = None,
) -> IndexManifest:
    """Build the index of ``data_dir`` into ``out``; returns its manifest (``manifest.json``)."""
    with torch_threads(cfg.threads), faiss_threads(cfg.threads):
        return _build(
            Path(data_dir),
            Path(out),
            cfg,
            [Path(t) for t in tables],
            [Path(r) for r in runs],
            progress,
            say or (lambda _m: None),
        )


def _periods(impressions: pl.DataFrame, cfg: IndexConfig) -> tuple[int | None, int | None]:
    """(cutoff of what the index learns from, start of the test period); None without impressions."""
    from adsformer.data.splits import time_split

    if impressions.height == 0:
        return None, None
    s = time_split(impressions["ts"].to_numpy(), cfg.two_tower.split)
    return (s.test_start if cfg.two_tower.until == "test" else s.val_start), s.test_start


def _table_source(table: RepresentationTable, row: dict[str, int]) -> tuple[np.ndarray, np.ndarray, int]:
    """Unit vectors and global rows of a table's listings that the dataset has and that are not zero."""
    pairs = [(j, row[lid]) for j, lid in enumerate(table.ids) if lid in row]
    if not pairs:
        raise RetrievalError(
            f"table {table.name!r} shares no listing id with the dataset: was it built from another?"
        )
    src, dst = (np.array(a, np.int64) for a in zip(*pairs, strict=True))
    vec = unit_rows(np.asarray(table.vectors, np.float32)[src])
    nonzero = np.any(vec != 0, axis=1)
    return vec[nonzero], dst[nonzero], len(table.ids) - int(nonzero.sum())


def _build(
    data_dir: Path,
    out: Path,
    cfg: IndexConfig,
    tables: list[Path],
    runs: list[Path],
    progress: bool,
    say: Callable[[str], None],
) -> IndexManifest:
    times = StageTimes()
    with times.stage("prepare_s"):
        prep = _prepare(data_dir, cfg, tables, runs)
    with atomic_dir(out) as tmp, _progress_bar(progress) as bar:
        _write_listings(tmp, prep)
        ann: dict[str, AnnFile] = {}
        sources: dict[str, dict[str, Any]] = {}
        with times.stage("lexical_s"):
            sources["lexical"] = _lexical_source(tmp, prep, cfg, bar)
        if cfg.two_tower_enabled and prep.train_pairs.height >= 2:
            with times.stage("two_tower_s"):
                ann["two_tower"], sources["two_tower"] = _two_tower_source(tmp, prep, cfg, bar)
        else:
            say("no two-tower source: " + _no_two_tower(cfg))
        for path, table in zip(tables, prep.tables, strict=True):
            with times.stage(f"{table.kind}_s"):
                ann[table.kind], sources[table.kind] = _table_index(tmp, path, table, prep.row, cfg, say)
        manifest = _manifest(prep, cfg, ann, sources)
        write_json(tmp / MANIFEST, manifest.to_dict())  # the evaluation loads the index it describes
        with times.stage("evaluation_s"):
            evaluation = _evaluate(tmp, prep, cfg, data_dir)
        times.total()
        manifest = dataclasses.replace(manifest, evaluation=evaluation, seconds=times.rounded(2))
        write_json(tmp / MANIFEST, manifest.to_dict())
    return manifest


# --- the stages of _build ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Prepared:
    """What every stage reads: the dataset, its listings' ids (row order = global rows) and text, the
    periods, the loaded tables, the static scores, the training clicks and the query -> taxonomy counts."""

    ds: Dataset
    ids: list[str]
    row: dict[str, int]  # listing id -> global row
    text: ListingText
    cutoff_ts: int | None
    test_start: int | None
    tables: list[RepresentationTable]
    static: StaticScores
    train_pairs: pl.DataFrame  # (query, listing_id) clicks before the cutoff
    taxonomy: QueryTaxonomy


def _prepare(data_dir: Path, cfg: IndexConfig, tables: list[Path], runs: list[Path]) -> _Prepared:
    """Read the dataset and the tables (at most one of each kind), score the listings, count the queries'
    taxonomies of the training clicks."""
    from adsformer.data.validate import read_dataset

    ds = read_dataset(data_dir)
    listings = ds.listings
    if listings.height == 0:
        raise RetrievalError(f"{data_dir}: no listings to index")
    ids: list[str] = listings["listing_id"].to_list()
    text = listing_text(listings)
    cutoff_ts, test_start = _periods(ds.impressions, cfg)
    loaded = [RepresentationTable.load(t) for t in tables]
    kinds = [t.kind for t in loaded]
    if any(k not in L2L_ORDER for k in kinds) or len(set(kinds)) != len(kinds):
        raise RetrievalError(f"tables of kinds {kinds}: expected at most one each of {', '.join(L2L_ORDER)}")
    static = static_scores(listings, ids, ds.impressions, cutoff_ts, runs, cfg.static)
    train_pairs = click_pairs(ds.impressions, None, cutoff_ts)
    tax_of = dict(zip(ids, text.taxonomy_id, strict=True))
    taxonomy = QueryTaxonomy.fit(
        train_pairs["query"].to_list(),
        [tax_of.get(lid) for lid in train_pairs["listing_id"].to_list()],
        cfg.lexical.taxonomy_smoothing,
    )
    row = {lid: i for i, lid in enumerate(ids)}
    return _Prepared(ds, ids, row, text, cutoff_ts, test_start, loaded, static, train_pairs, taxonomy)


def _progress_bar(progress: bool) -> ProgressBar:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    return ProgressBar(*columns, disable=not progress)


def _write_listings(tmp: Path, prep: _Prepared) -> None:
    """``listings.parquet``: the listings' kept columns and static scores, in global row order."""
    listings = prep.ds.listings
    keep = [c for c in _KEEP if c in listings.columns]
    listings.select(keep).with_columns(
        pl.Series("static_ctr", prep.static.ctr), pl.Series("static_pccvr", prep.static.pccvr)
    ).write_parquet(tmp / LISTINGS_FILE)


def _lexical_source(tmp: Path, prep: _Prepared, cfg: IndexConfig, bar: ProgressBar) -> dict[str, Any]:
    """The sharded lexical index and the query -> taxonomy counts; returns the source's manifest section."""
    job = bar.add_task("lexical index", total=len(prep.ids))
    source = build_lexical(
        tmp / "lexical",
        prep.ids,
        prep.text,
        prep.static.percentile(),
        cfg.lexical,
        lambda n: bar.advance(job, n),
    )
    prep.taxonomy.save(tmp / "lexical" / "taxonomy.json")
    source["taxonomy_model"] = {
        "tokens": len(prep.taxonomy.counts),
        "taxonomies": len(prep.taxonomy.taxonomies),
    }
    return source


def _two_tower_source(
    tmp: Path, prep: _Prepared, cfg: IndexConfig, bar: ProgressBar
) -> tuple[AnnFile, dict[str, Any]]:
    """Train the two-tower model on the training clicks, index its listing vectors."""
    model, report = train_two_tower(prep.ids, prep.text, prep.train_pairs, cfg.two_tower, bar)
    model.save(tmp / "two_tower")
    index = AnnIndex.build(model.listing_vectors(), np.arange(len(prep.ids)), cfg.ann)
    index.save(tmp / "two_tower" / "index.faiss")
    return AnnFile("two_tower/index.faiss", index.layout), {**report, "index": index.describe()}


def _no_two_tower(cfg: IndexConfig) -> str:
    if not cfg.two_tower_enabled:
        return "disabled"
    return "fewer than 2 clicked impressions with a query before the test period"


def _table_index(
    tmp: Path,
    path: Path,
    table: RepresentationTable,
    row: dict[str, int],
    cfg: IndexConfig,
    say: Callable[[str], None],
) -> tuple[AnnFile, dict[str, Any]]:
    """One representation table's IVF index under its kind (a visual table's ``encoder.pt`` copied for
    search by image)."""
    vec, rows, dropped = _table_source(table, row)
    index = AnnIndex.build(vec, rows, cfg.ann)
    (tmp / table.kind).mkdir()
    index.save(tmp / table.kind / "index.faiss")
    encoder = table.kind == "visual" and (path / "encoder.pt").exists()
    if encoder:
        shutil.copy2(path / "encoder.pt", tmp / "visual" / "encoder.pt")
    elif table.kind == "visual":
        say(
            f"visual table {path} has no encoder.pt: visually similar listings work, search by image does not (re-run `adsformer represent visual`)"
        )
    source = {
        "table": table.name,
        "dim": table.dim,
        "listings": int(rows.size),
        "skipped_zero_or_unknown": dropped,
        "image_encoder": encoder,
        "index": index.describe(),
    }
    return AnnFile(f"{table.kind}/index.faiss", index.layout), source


def _manifest(
    prep: _Prepared, cfg: IndexConfig, ann: dict[str, AnnFile], sources: dict[str, dict[str, Any]]
) -> IndexManifest:
    """The manifest of the built index, before its evaluation."""
    listings = prep.ds.listings
    in_budget = (
        int((np.nan_to_num(listings["budget"].to_numpy(), nan=1.0) > 0).sum())
        if "budget" in listings.columns
        else len(prep.ids)
    )
    return IndexManifest(
        dataset=IndexedData(prep.ds.meta.name, len(prep.ids), prep.cutoff_ts, prep.test_start),
        config=to_dict(cfg),
        static=prep.static.info,
        listings_in_budget=in_budget,
        ann=ann,
        sources=sources,
    )


def _evaluate(tmp: Path, prep: _Prepared, cfg: IndexConfig, data_dir: Path) -> dict[str, Any]:
    """The finished index, loaded as a query would, every listing in budget: recall of the test period's
    clicks, listing-to-listing neighbour coherence per table, search by image."""
    from adsformer.retrieval.evaluate import heldout_recall, image_coherence, neighbour_coherence

    retriever = Retriever.load(tmp)
    retriever.budget = type(retriever.budget)(prep.ids)
    evaluation: dict[str, Any] = {}
    if prep.test_start is not None:
        held = click_pairs(prep.ds.impressions, prep.test_start, None)
        evaluation["heldout_clicks"] = heldout_recall(retriever, held, cfg.eval_ks, cfg.eval_max_queries)
    for kind in (k for k in L2L_ORDER if k in retriever.ann):
        evaluation[f"{kind}_neighbours"] = neighbour_coherence(retriever, kind)
    visual = retriever.manifest.sources.get("visual", {})
    if visual.get("image_encoder") and "image_path" in prep.ds.listings.columns:
        evaluation["search_by_image"] = image_coherence(retriever, data_dir, prep.ds.listings)
    return evaluation
