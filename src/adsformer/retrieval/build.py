"""``adsformer index build``: one index directory (see :mod:`adsformer.retrieval.retriever`) from a dataset,
optional representation tables and optional trained runs, written atomically.

Steps: static pCTR x pCCVR per listing (:mod:`~adsformer.retrieval.static`); the query -> taxonomy counts and
the sharded lexical index; the two-tower model (clicks before the test period) and its listing vectors in an
IVF index; one IVF index per representation table (``air``, ``visual``, ...; a visual table's
``encoder.pt`` is copied for search by image); then the held-out evaluation of the finished index
(:mod:`~adsformer.retrieval.evaluate`), written into ``manifest.json``.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from adsformer.config import to_dict
from adsformer.io import atomic_dir, write_json
from adsformer.representations.quality import unit_rows
from adsformer.representations.table import RepresentationTable
from adsformer.retrieval.ann import AnnIndex, faiss_threads
from adsformer.retrieval.config import IndexConfig, RetrievalError
from adsformer.retrieval.lexical import build_lexical
from adsformer.retrieval.retriever import FORMAT_VERSION, L2L_ORDER, LISTINGS_FILE, MANIFEST, Retriever
from adsformer.retrieval.static import static_scores
from adsformer.retrieval.taxonomy import QueryTaxonomy
from adsformer.retrieval.tokens import listing_text
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
) -> dict[str, Any]:
    """Build the index of ``data_dir`` into ``out``; returns the manifest."""
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
) -> dict[str, Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    from adsformer.console import ProgressBar
    from adsformer.data.validate import read_dataset
    from adsformer.retrieval.evaluate import heldout_recall, image_coherence, neighbour_coherence

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    ds = read_dataset(data_dir)
    listings = ds.listings
    if listings.height == 0:
        raise RetrievalError(f"{data_dir}: no listings to index")
    ids: list[str] = listings["listing_id"].to_list()
    row = {lid: i for i, lid in enumerate(ids)}
    text = listing_text(listings)
    cutoff_ts, test_start = _periods(ds.impressions, cfg)
    loaded = [RepresentationTable.load(t) for t in tables]
    kinds = [t.kind for t in loaded]
    bad = [k for k in kinds if k not in L2L_ORDER]
    if bad or len(set(kinds)) != len(kinds):
        raise RetrievalError(f"tables of kinds {kinds}: expected at most one each of {', '.join(L2L_ORDER)}")

    static = static_scores(listings, ids, ds.impressions, cutoff_ts, runs, cfg.static)
    train_pairs = click_pairs(ds.impressions, None, cutoff_ts)
    tax_of = dict(zip(ids, text.taxonomy_id, strict=True))
    taxonomy = QueryTaxonomy.fit(
        train_pairs["query"].to_list(),
        [tax_of.get(lid) for lid in train_pairs["listing_id"].to_list()],
        cfg.lexical.taxonomy_smoothing,
    )
    timings["prepare_s"] = time.perf_counter() - t0
    sources: dict[str, Any] = {}
    ann: dict[str, Any] = {}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with atomic_dir(out) as tmp, ProgressBar(*columns, disable=not progress) as bar:
        keep = [c for c in _KEEP if c in listings.columns]
        listings.select(keep).with_columns(
            pl.Series("static_ctr", static.ctr), pl.Series("static_pccvr", static.pccvr)
        ).write_parquet(tmp / LISTINGS_FILE)

        t = time.perf_counter()
        job = bar.add_task("lexical index", total=len(ids))
        sources["lexical"] = build_lexical(
            tmp / "lexical", ids, text, static.percentile(), cfg.lexical, lambda n: bar.advance(job, n)
        )
        taxonomy.save(tmp / "lexical" / "taxonomy.json")
        sources["lexical"]["taxonomy_model"] = {
            "tokens": len(taxonomy.counts),
            "taxonomies": len(taxonomy.taxonomies),
        }
        timings["lexical_s"] = time.perf_counter() - t

        if cfg.two_tower_enabled and train_pairs.height >= 2:
            t = time.perf_counter()
            model, report = train_two_tower(ids, text, train_pairs, cfg.two_tower, bar)
            model.save(tmp / "two_tower")
            index = AnnIndex.build(model.listing_vectors(), np.arange(len(ids)), cfg.ann)
            index.save(tmp / "two_tower" / "index.faiss")
            ann["two_tower"] = {"file": "two_tower/index.faiss", "layout": _layout(index)}
            sources["two_tower"] = {**report, "index": index.describe()}
            timings["two_tower_s"] = time.perf_counter() - t
        else:
            say(
                "no two-tower source: "
                + (
                    "disabled"
                    if not cfg.two_tower_enabled
                    else "fewer than 2 clicked impressions with a query before the test period"
                )
            )

        for path, table in zip(tables, loaded, strict=True):
            t = time.perf_counter()
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
            ann[table.kind] = {"file": f"{table.kind}/index.faiss", "layout": _layout(index)}
            sources[table.kind] = {
                "table": table.name,
                "dim": table.dim,
                "listings": int(rows.size),
                "skipped_zero_or_unknown": dropped,
                "image_encoder": encoder,
                "index": index.describe(),
            }
            timings[f"{table.kind}_s"] = time.perf_counter() - t

        manifest: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "kind": "adsformer retrieval index",
            "dataset": {
                "name": ds.meta.name,
                "listings": len(ids),
                "cutoff_ts": cutoff_ts,
                "test_start_ts": test_start,
            },
            "config": to_dict(cfg),
            "static": static.info,
            "budget": {
                "listings_in_budget": int((np.nan_to_num(listings["budget"].to_numpy(), nan=1.0) > 0).sum())
                if "budget" in listings.columns
                else len(ids)
            },
            "ann": ann,
            "sources": sources,
        }
        write_json(tmp / MANIFEST, manifest)

        t = time.perf_counter()
        retriever = Retriever.load(tmp)
        retriever.budget = type(retriever.budget)(ids)  # evaluation: every listing in budget
        evaluation: dict[str, Any] = {}
        if test_start is not None:
            held = click_pairs(ds.impressions, test_start, None)
            evaluation["heldout_clicks"] = heldout_recall(retriever, held, cfg.eval_ks, cfg.eval_max_queries)
        for kind in (k for k in L2L_ORDER if k in ann):
            evaluation[f"{kind}_neighbours"] = neighbour_coherence(retriever, kind)
        if sources.get("visual", {}).get("image_encoder") and "image_path" in listings.columns:
            evaluation["search_by_image"] = image_coherence(retriever, data_dir, listings)
        del retriever
        timings["evaluation_s"] = time.perf_counter() - t
        timings["total_s"] = time.perf_counter() - t0
        manifest["evaluation"] = evaluation
        manifest["seconds"] = {k: round(v, 2) for k, v in timings.items()}
        write_json(tmp / MANIFEST, manifest)
    return manifest


def _layout(index: AnnIndex) -> dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(index.layout)
