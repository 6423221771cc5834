"""``adsformer stats ...``: descriptive statistics of a canonical dataset directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from adsformer.cli.common import friendly_errors
from adsformer.console import console, records_table

stats_app = typer.Typer(help="Descriptive statistics of a canonical dataset directory.", no_args_is_help=True)


@stats_app.command("reengagement")
def reengagement_cmd(
    directory: Annotated[Path, typer.Argument(help="Canonical dataset directory.")],
    window: Annotated[int, typer.Option("--window", help="Look-back window in seconds.")] = 3600,
    action: Annotated[
        list[str] | None,
        typer.Option("--action", help="Also report events with this action (repeatable)."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Also write the numbers to this JSON file.")
    ] = None,
) -> None:
    """Share of clicks, views and purchases whose listing the same user touched in [t - window, t).

    Clicks are impressions with clicked = 1, views and purchases are events; a touch is any event of the
    user on that listing, strictly before the row."""
    from adsformer.config import ConfigError
    from adsformer.data.reengagement import reengagement_for_dir

    with friendly_errors():
        if window < 1:
            raise ConfigError("--window must be >= 1 second")
        if not directory.is_dir():
            raise NotADirectoryError(f"{directory}: not a dataset directory")
        result = reengagement_for_dir(directory, window, tuple(action or ()))
    rows = [
        {
            "kind": r["kind"],
            "rows": r["rows"],
            "touched": r["touched"],
            "share": "n/a" if r["share"] is None else f"{100 * r['share']:.1f}%",
        }
        for r in result["shares"]
    ]
    console.print(
        f"[bold]{result['dataset']}[/]: share of rows whose listing the same user touched in [t - {window} s, t)"
    )
    console.print(records_table("re-engagement", rows))
    if out is not None:
        out.write_text(json.dumps(result, indent=2) + "\n")
        console.print(f"wrote [bold]{out}[/]")
