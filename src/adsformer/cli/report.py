"""``adsformer report``: a self-contained HTML report of runs, ablations and demos."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from adsformer.cli.common import friendly_errors
from adsformer.console import console, stage


def report_cmd(
    paths: Annotated[list[Path], typer.Argument(help="Run, ablation or demo directories.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML file (written atomically).")] = Path(
        "report.html"
    ),
    title: Annotated[str, typer.Option(help="Report title.")] = "adsformer report",
) -> None:
    """A self-contained HTML report: metrics, ROC / PR curves, reliability diagrams before and after
    calibration, training curves and ablation tables."""
    from adsformer.report import write_report

    with friendly_errors(), stage("render the report"):
        path = write_report(paths, out, title)
    console.print(f"wrote [bold]{path}[/]")
