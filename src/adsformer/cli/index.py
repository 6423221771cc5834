"""``adsformer index build`` and ``adsformer retrieve``: build a candidate-retrieval index, query it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from adsformer.cli.common import SettingsFileOpt, friendly_errors, needs, output_dir
from adsformer.console import console, kv_table, records_table

if TYPE_CHECKING:
    from adsformer.retrieval.manifest import IndexManifest

index_app = typer.Typer(
    help="Candidate-retrieval indexes (lexical + ANN, live budget filtering).", no_args_is_help=True
)


def _split(values: list[str] | None) -> list[str]:
    """Repeatable options that also accept comma-separated lists."""
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


@index_app.command("build")
def build_cmd(
    data: Annotated[
        Path,
        typer.Option(
            "--data",
            help="Canonical dataset directory (listings; impressions for static scores and the two-tower model).",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Index directory (written atomically).")],
    tables: Annotated[
        list[str] | None,
        typer.Option(
            "--tables",
            help="Representation table directories (air, visual, text, skipgram), comma-separated or repeated.",
        ),
    ] = None,
    run: Annotated[
        list[Path] | None,
        typer.Option(
            "--run",
            help="Trained run(s) giving static pCTR (ctr run) / pCCVR (pccvr run); else smoothed history.",
        ),
    ] = None,
    config: SettingsFileOpt = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Override a setting: key=value (lexical.shards=4, ann.nprobe=32, two_tower.epochs=10, ...).",
        ),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite", help="Write into --out even when it holds files adsformer did not write."
        ),
    ] = False,
) -> None:
    """Build the lexical index (tantivy, sharded), the two-tower model and its IVF index, and one IVF index
    per table; evaluate on held-out clicks; write INDEX_DIR with manifest.json."""
    needs("index build", "retrieval")
    from adsformer.config import load_config
    from adsformer.retrieval import IndexConfig, build_index

    with friendly_errors(), output_dir(out, overwrite):
        cfg = load_config(IndexConfig, config, set_)
        manifest = build_index(
            data,
            out,
            cfg,
            tables=_split(tables),
            runs=run or [],
            say=lambda m: console.print(f"[yellow]note:[/] {m}"),
        )
    _print_manifest(manifest)
    console.print(f"wrote [bold]{out}[/] ({out / 'manifest.json'})")


def _print_manifest(m: IndexManifest) -> None:
    rows = [
        {
            "source": "lexical",
            "listings": m.dataset.listings,
            "index": f"{m.sources['lexical']['shards']} shard(s)",
        }
    ]
    for name, ann in m.ann.items():
        lay = ann.layout
        desc = f"{lay.kind} nlist={lay.nlist} nprobe={lay.nprobe}" + (f" pq_m={lay.pq_m}" if lay.pq_m else "")
        rows.append({"source": name, "listings": m.sources[name]["index"]["n"], "index": desc})
    console.print(records_table("sources", rows))
    console.print(f"static scores: {m.static['sources']}")
    ev = m.evaluation or {}
    held = ev.get("heldout_clicks")
    if held:
        console.print(
            records_table(
                f"held-out clicks: recall of the clicked listing ({held['queries']:,} test-period queries, "
                f"{held['median_ms_per_query']:.1f} ms median per query, all sources)",
                [{"source": s, **r} for s, r in held["recall"].items()],
            )
        )
    coherent = [
        {"source": k.removesuffix("_neighbours"), **{x: v for x, v in r.items() if x != "k"}}
        for k, r in ev.items()
        if k.endswith("_neighbours")
    ]
    if coherent:
        console.print(
            records_table("listing-to-listing: top-10 neighbours sharing the listing's label", coherent)
        )
    if "search_by_image" in ev:
        console.print(kv_table("search by image (listings' own images)", ev["search_by_image"]))


@index_app.command("info")
def info_cmd(index: Annotated[Path, typer.Argument(help="Index directory.")]) -> None:
    """Print an index's sources, settings and evaluation."""
    from adsformer.retrieval.manifest import read_manifest

    with friendly_errors():
        manifest = read_manifest(index)
    _print_manifest(manifest)


def retrieve_cmd(
    index: Annotated[Path, typer.Argument(help="Index directory written by `adsformer index build`.")],
    query: Annotated[
        str | None, typer.Option("--query", "-q", help="Query text (lexical + two-tower).")
    ] = None,
    listing: Annotated[
        str | None,
        typer.Option("--listing", "-l", help="Listing id (listing-to-listing + lexical on its title)."),
    ] = None,
    image: Annotated[Path | None, typer.Option("--image", "-i", help="Image file (search by image).")] = None,
    k: Annotated[int, typer.Option("--k", "-k", help="Candidates to return (hybrid cap).")] = 20,
    sources: Annotated[
        list[str] | None, typer.Option("--source", help="Only these sources (comma-separated or repeated).")
    ] = None,
    exhausted: Annotated[
        list[str] | None,
        typer.Option(
            "--exhausted", help="Listing ids whose budget is set to 0 before the query (live filter)."
        ),
    ] = None,
) -> None:
    """Candidates for a query text, a listing id or an image: merged, de-duplicated, capped, in budget."""
    needs("retrieve", "retrieval")
    from adsformer.retrieval import Retriever

    with friendly_errors():
        start = time.perf_counter()
        retriever = Retriever.load(index)
        loaded = time.perf_counter() - start
        for lid in _split(exhausted):
            retriever.set_budget(lid, 0.0)
        start = time.perf_counter()
        found = retriever.candidates(
            query=query, listing_id=listing, image=image, k=k, sources=_split(sources) or None
        )
        seconds = time.perf_counter() - start
    frame = retriever.listings
    row = retriever.budget.row
    records = []
    for rank, c in enumerate(found, start=1):
        r = row[c.listing_id]
        rec = {"rank": rank, "listing_id": c.listing_id, "source": c.source, "score": round(c.score, 5)}
        for col in ("title", "taxonomy_id", "c_color"):
            if col in frame.columns:
                rec[col] = frame[col][r]
        records.append(rec)
    if listing is not None and listing in row:
        r = row[listing]
        console.print(
            "source listing: "
            + ", ".join(
                f"{c}={frame[c][r]}"
                for c in frame.columns
                if c in ("listing_id", "title", "taxonomy_id", "c_color")
            )
        )
    console.print(records_table(f"{len(found)} candidates", records))
    console.print(f"index loaded in {loaded:.2f} s; query answered in {1000 * seconds:.1f} ms")
