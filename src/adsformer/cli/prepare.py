"""``adsformer prepare SOURCE``: a canonical dataset directory from the simulator or a public dataset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from adsformer.cli.common import OutDir, OverwriteOpt, friendly_errors, output_dir, progress_printer
from adsformer.config import apply_overrides, parse_overrides
from adsformer.console import console, kv_table

prepare_app = typer.Typer(
    help="Build a canonical dataset directory from the simulator or a public dataset.", no_args_is_help=True
)


def _print_prepared(
    summary: dict, out: Path, skipped: list | None = None, notes: list[str] | None = None
) -> None:
    console.print(kv_table("prepared dataset", summary))
    for line in (skipped or [])[:10]:
        console.print(f"[yellow]skipped[/] {line}")
    if skipped and len(skipped) > 10:
        console.print(f"[yellow]... and {len(skipped) - 10} more skipped lines[/]")
    for note in notes or []:
        console.print(f"[cyan]note:[/] {note}")
    console.print(f"wrote [bold]{out}[/]")


@prepare_app.command("simulate")
def prepare_simulate(
    out: OutDir,
    scale: Annotated[str, typer.Option(help="tiny | demo | medium | large (>= 10M impressions).")] = "demo",
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same dataset).")] = 0,
    images: Annotated[
        bool | None, typer.Option("--images/--no-images", help="Draw listing images (default: per scale).")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a simulator knob: key=value (see SimulatorConfig)."),
    ] = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """The built-in marketplace simulator (ground truth saved beside the data)."""
    from adsformer.simulator import SimulatorConfig, simulate

    with friendly_errors(), output_dir(out, overwrite):
        cfg = SimulatorConfig.preset(scale).with_overrides(seed=seed)
        if images is not None:
            cfg = cfg.with_overrides(images=images)
        cfg = apply_overrides(cfg, parse_overrides(set_))
        ds = simulate(cfg, out, progress=progress_printer())
    _print_prepared(ds.summary(), out)
    shares = json.loads((out / "truth.json").read_text())["summary"].get("reengagement", {})
    console.print(
        "re-engagement (on a listing touched in the prior hour): "
        + ", ".join(f"{k} {'n/a' if v is None else f'{100 * v:.1f}%'}" for k, v in shares.items())
    )


@prepare_app.command("taobao-userbehavior")
def prepare_taobao(
    path: Annotated[Path, typer.Argument(help="UserBehavior.csv (user,item,category,behavior,ts).")],
    out: OutDir,
    negatives: Annotated[int, typer.Option(help="Non-clicked listings shown beside each clicked view.")] = 4,
    purchase_window_s: Annotated[
        int, typer.Option(help="A purchase within this time after the view labels it purchased.")
    ] = 86_400,
    exclude_user_history: Annotated[
        bool, typer.Option(help="Never show listings the user viewed as negatives (biased; see docs).")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of the impression protocol.")] = 0,
    popularity: Annotated[
        str, typer.Option(help="day (popularity on the request's day) | log (whole log; looks ahead)")
    ] = "day",
    overwrite: OverwriteOpt = False,
) -> None:
    """Taobao UserBehavior log; impressions built by a documented, seeded protocol."""
    from adsformer.data.adapters.taobao import prepare_taobao as run

    with friendly_errors(), output_dir(out, overwrite):
        res = run(
            path,
            out,
            negatives=negatives,
            purchase_window_s=purchase_window_s,
            exclude_user_history=exclude_user_history,
            seed=seed,
            popularity=popularity,
            progress=progress_printer(),
        )
    _print_prepared(res.summary(), res.out, res.skipped_lines, res.notes)


@prepare_app.command("trivago")
def prepare_trivago(
    path: Annotated[Path, typer.Argument(help="RecSys Challenge 2019 session log (Parquet or CSV).")],
    out: OutDir,
    overwrite: OverwriteOpt = False,
) -> None:
    """trivago session log: real impressions with positions and prices (no conversions)."""
    from adsformer.data.adapters.trivago import prepare_trivago as run

    with friendly_errors(), output_dir(out, overwrite):
        res = run(path, out, progress=progress_printer())
    _print_prepared(res.summary(), res.out, res.skipped_lines, res.notes)


@prepare_app.command("movielens")
def prepare_movielens(
    path: Annotated[
        Path, typer.Argument(help="ml-100k directory (u.data + u.item, or RecBole atomic files).")
    ],
    out: OutDir,
    click_threshold: Annotated[float, typer.Option(help="A rating >= this is a click.")] = 4.0,
    overwrite: OverwriteOpt = False,
) -> None:
    """MovieLens-100k: ratings as views, rating >= threshold as the click label, genres as taxonomy."""
    from adsformer.data.adapters.movielens import prepare_movielens as run

    with friendly_errors(), output_dir(out, overwrite):
        res = run(path, out, click_threshold=click_threshold, progress=progress_printer())
    _print_prepared(res.summary(), res.out, res.skipped_lines, res.notes)


@prepare_app.command("fashion")
def prepare_fashion(
    path: Annotated[Path, typer.Argument(help="Fashion folder (styles.csv, styles_text.csv, images/).")],
    out: OutDir,
    images: Annotated[bool, typer.Option(help="Copy the product images into the dataset.")] = True,
    overwrite: OverwriteOpt = False,
) -> None:
    """Fashion Product Images: a catalog-only dataset (listings, titles, labels, images) for the text,
    visual and AIR representations."""
    from adsformer.data.adapters.fashion import prepare_fashion as run

    with friendly_errors(), output_dir(out, overwrite):
        res = run(path, out, images=images, progress=progress_printer())
    _print_prepared(res.summary(), res.out, res.skipped_lines, res.notes)
