"""``adsformer tune``: hyperparameter search over the config's search space (Optuna)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from adsformer.cli.common import (
    ConfigOpt,
    DataOpt,
    LogToOpt,
    ModelOpt,
    OutDir,
    OverwriteOpt,
    SetOpt,
    TaskOpt,
    needs,
    writing_runs,
)
from adsformer.console import console, kv_table, records_table


def tune_cmd(
    data: DataOpt,
    out: OutDir,
    task: TaskOpt = None,
    model: ModelOpt = None,
    trials: Annotated[
        int | None,
        typer.Option(help="Trials the study holds when done (tune.trials); a rerun adds the missing ones."),
    ] = None,
    final: Annotated[
        bool,
        typer.Option(
            "--final",
            help="Then evaluate on the test split the best trial's run and the first trial's (the config "
            "itself).",
        ),
    ] = False,
    log_to: LogToOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Search hyperparameters on the validation split (Optuna, median pruning); write the trials, the best
    config and a summary. The study is kept in OUT/study.db: run the same command again to continue it.

    The search space is the config's tune.space (dotted keys to {low, high, log} or {choices}), else the
    learning rate, weight decay, dropouts and cross layers."""
    needs("tune", "tune")
    from adsformer.experiments.tune import run_tune

    given = {"task": task, "model": model, "trials": trials}
    with writing_runs(out, overwrite, config, set_, log_to, **given) as (cfg, backend):
        summary = run_tune(data, cfg, out, final=final, log_to=backend)
    space = summary["space"]
    console.print(records_table("trials", [_row(r, space) for r in summary["trials"]]))
    if summary["best"] is not None:
        console.print(kv_table("best trial", _best_rows(summary)))
    for role, rec in (summary.get("final") or {}).items():
        console.print(
            kv_table(
                f"test split: {role} trial ({rec['trial']})", {k: v for k, v in rec.items() if k != "trial"}
            )
        )
    console.print(f"wrote [bold]{out}[/]: tune.md, trials.csv, tune.json, best_config.yaml, trials.png")


def _row(rec: dict[str, Any], space: dict[str, Any]) -> dict[str, Any]:
    """A trial as a table row: number, state, value, epochs, seconds and its parameters."""
    from adsformer.experiments.tune import short_name

    return {
        "trial": f"{rec['number']}{' (config)' if rec['base'] else ''}",
        "state": rec["state"],
        "value": "" if rec["value"] is None else rec["value"],
        "epochs": rec["epochs_run"] or "",
        "seconds": "" if rec["duration_s"] is None else round(rec["duration_s"]),
        **{_header(short_name(k, space)): rec["params"][k] for k in space},
    }


def _header(name: str) -> str:
    """A column header that may wrap between its words (``ranker.dropout`` -> ``ranker dropout``)."""
    return name.replace(".", " ").replace("_", " ")


def _best_rows(summary: dict[str, Any]) -> dict[str, Any]:
    best = summary["best"]
    rows: dict[str, Any] = {"trial": best["number"], summary["metric"]: best["value"]}
    if best["base_value"] is not None:
        rows[f"{summary['metric']} of the config itself (trial {best['base_number']})"] = best["base_value"]
    rows |= best["params"]
    rows["run"] = best["run"]
    return rows
