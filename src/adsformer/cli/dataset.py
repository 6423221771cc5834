"""``adsformer validate`` and ``adsformer sequences``: check a dataset directory, show its sequences."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from adsformer.cli.common import ConfigOpt, SetOpt, data_config, friendly_errors
from adsformer.console import console, kv_table, records_table, stage


def validate(directory: Annotated[Path, typer.Argument(help="Canonical dataset directory.")]) -> None:
    """Check a dataset directory; name every problem (file, column, rows, what was expected)."""
    from adsformer.data.validate import read_dataset, validate_dataset

    report = validate_dataset(directory)
    for problem in report.problems:
        style = "red" if problem.severity == "error" else "yellow"
        console.print(f"[{style}]{escape(str(problem))}[/]", soft_wrap=True)
    if not report.ok:
        console.print(
            f"[bold red]{len(report.errors)} error(s)[/] in {escape(str(directory))}", soft_wrap=True
        )
        raise typer.Exit(1)
    ds = read_dataset(directory, validate=False)
    console.print(kv_table(f"{directory}: valid", ds.summary()))


def sequences(
    data: Annotated[Path, typer.Option("--data", help="Canonical dataset directory.")],
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Split, fit vocabularies and build the windowed sequences; print what they hold."""
    from adsformer.data.features import build_features
    from adsformer.data.stats import sequence_stats, split_stats
    from adsformer.data.validate import read_dataset

    with friendly_errors():
        cfg = data_config(config, set_)
        ds = read_dataset(data)
        with stage("build features"):
            start = time.perf_counter()
            fs = build_features(ds, cfg)
            seconds = time.perf_counter() - start
    console.print(records_table("splits", split_stats(fs)))
    console.print(
        records_table(
            f"sequences (window {cfg.sequences.window_s} s, M = {cfg.sequences.max_len})", sequence_stats(fs)
        )
    )
    console.print(kv_table("vocabularies (rows incl. padding and OOV)", fs.vocabs.sizes()))
    console.print(f"{fs.n:,} impressions in {seconds:.2f} s ({fs.n / max(seconds, 1e-9):,.0f} impressions/s)")
