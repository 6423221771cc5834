"""``adsformer ablate``, ``ablate-merge``, ``daily``, ``position`` and ``demo``: studies of many runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from adsformer.cli.common import (
    ConfigOpt,
    DataOpt,
    OutDir,
    OverwriteOpt,
    SetOpt,
    TaskOpt,
    data_config,
    friendly_errors,
    given,
    needs,
    output_dir,
)
from adsformer.config import ConfigError
from adsformer.console import console


def ablate_cmd(
    data: DataOpt,
    out: OutDir,
    task: TaskOpt = None,
    suite: Annotated[
        str,
        typer.Option(
            help="Ablation suite: paper (tables 2 and 3) | pretrained (table 4: each subset of --set tables)."
        ),
    ] = "paper",
    seeds: Annotated[
        int, typer.Option(help="Seeds per row (mean and std): train.seed .. train.seed + seeds - 1.")
    ] = 3,
    only: Annotated[
        list[str] | None,
        typer.Option(help="Run only this row (repeatable); the baseline always runs, for the lifts."),
    ] = None,
    tables: Annotated[
        str | None,
        typer.Option(
            help="Pretrained tables for ADPM component 2: auto (learn a skip-gram table from the sessions "
            "before the test period into OUT/tables/skipgram) or DIR,DIR,... (same as --set tables=DIR,DIR)."
        ),
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Train and test every row of the suite over seeds; write ablation.json and ablation.md.

    Every suite also trains the peers DIN and TransAct (FuxiCTR) when the optional package fuxictr is
    installed. Spread seeds over processes: run each with --seeds 1 --set seed=N, then adsformer
    ablate-merge."""
    from adsformer.experiments.ablation import SUITES, ablation_markdown, run_ablation
    from adsformer.run.config import load_experiment

    with friendly_errors(), output_dir(out, overwrite):
        if suite not in SUITES:
            raise ConfigError(f"unknown suite {suite!r}; expected one of {sorted(SUITES)}")
        if seeds < 1:
            raise ConfigError("--seeds must be >= 1")
        if tables is not None:
            dirs = [t.strip() for t in tables.split(",") if t.strip()]
            if not dirs:
                raise ConfigError("--tables: expected auto or DIR,DIR,...")
            set_ = [*(set_ or []), f"tables={','.join(dirs)}"]
        cfg = load_experiment(config, set_, extra=given(task=task))
        result = run_ablation(data, cfg, suite, seeds, out, only=tuple(only or ()))
    console.print(ablation_markdown(result))
    console.print(f"wrote [bold]{out / 'ablation.json'}[/] and [bold]{out / 'ablation.md'}[/]")


def ablate_merge_cmd(
    out: OutDir,
    runs: Annotated[list[Path], typer.Argument(help="Output folders of ablate runs over disjoint seeds.")],
    overwrite: OverwriteOpt = False,
) -> None:
    """Combine ablate runs made over disjoint seeds into one ablation.json and ablation.md."""
    from adsformer.experiments.ablation import ablation_markdown, merge_ablations, write_ablation

    with friendly_errors(), output_dir(out, overwrite):
        parts = []
        for run in runs:
            path = run / "ablation.json"
            if not path.exists():
                raise ConfigError(f"{path}: not found (expected the output folder of adsformer ablate)")
            try:
                parts.append(json.loads(path.read_text()))
            except json.JSONDecodeError as e:
                raise ConfigError(f"{path}: not valid JSON ({e})") from e
        result = merge_ablations(parts)
        write_ablation(result, out)
    console.print(ablation_markdown(result))
    console.print(f"wrote [bold]{out / 'ablation.json'}[/] and [bold]{out / 'ablation.md'}[/]")


def daily_cmd(
    data: DataOpt,
    out: OutDir,
    task: TaskOpt = None,
    days: Annotated[int, typer.Option(help="Test on each of the last N days.")] = 3,
    train_days: Annotated[
        float, typer.Option(help="Days of training before each validation day (0 = all).")
    ] = 0.0,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """The daily protocol: for each of the last N days, train on the days before, test on that day;
    baseline vs adSformer lifts per day (daily.json, daily.md, daily_lift.png)."""
    from adsformer.experiments.daily import daily_markdown, run_daily
    from adsformer.run.config import load_experiment

    with friendly_errors(), output_dir(out, overwrite):
        cfg = load_experiment(config, set_, extra=given(task=task))
        summary = run_daily(data, cfg, days, out, train_days=train_days)
    console.print(daily_markdown(summary))
    console.print(f"wrote [bold]{out / 'daily.json'}[/], daily.md and daily_lift.png")


def position_cmd(
    data: DataOpt,
    out: OutDir,
    seeds: Annotated[int, typer.Option(help="Seeds per arm (mean and std).")] = 1,
    min_shown: Annotated[
        int, typer.Option(help="Leave out positions shown fewer times in the test split.")
    ] = 200,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """The position study: train with and without the position tower on the same split; learned vs naive
    (and, on the simulator, true) position curves and ranking of true relevance (position.json, .md, .png)."""
    from adsformer.experiments.position import position_markdown, run_position_study
    from adsformer.run.config import load_experiment

    with friendly_errors(), output_dir(out, overwrite):
        cfg = load_experiment(config, set_, extra=given(task="ctr"))
        summary = run_position_study(data, cfg, out, seeds=seeds, min_shown=min_shown)
    console.print(position_markdown(summary))
    console.print(f"wrote [bold]{out / 'position.json'}[/], position.md and position_curve.png")


def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Where the demo writes data and report.")] = Path(
        "demo_out"
    ),
    scale: Annotated[str, typer.Option(help="Simulator scale.")] = "demo",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """The embedded default: the whole pipeline on the simulator, ending with a report and its path."""
    needs("demo", "serve", "represent")
    from adsformer.experiments.demo import run_demo

    with friendly_errors(), output_dir(out, overwrite):
        run_demo(out, scale=scale, seed=seed, data_cfg=data_config(config, set_))
