"""``adsformer train``, ``evaluate``, ``predict`` and ``export``: a run from data, and what it scores."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

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
    friendly_errors,
    writing_runs,
)
from adsformer.console import console, kv_table, stage

if TYPE_CHECKING:
    from adsformer.experiments.train_summary import TrainSummary


def train_cmd(
    data: DataOpt,
    out: OutDir,
    task: TaskOpt = None,
    model: ModelOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    overwrite: OverwriteOpt = False,
    log_to: LogToOpt = None,
) -> None:
    """Train a CTR or PCCVR model; write a self-contained run directory."""
    from adsformer.experiments.runs import train_run
    from adsformer.experiments.tracking import train_tracked

    with writing_runs(out, overwrite, config, set_, log_to, task=task, model=model) as (cfg, backend):
        summary = train_run(data, cfg, out) if backend is None else train_tracked(data, cfg, out, backend)
    console.print(kv_table("trained", _trained_rows(summary, auto_batch=cfg.train.batch_size == 0)))
    console.print(f"wrote [bold]{out}[/]")


def _trained_rows(summary: TrainSummary, *, auto_batch: bool = False) -> dict[str, Any]:
    """What `adsformer train` prints: the restored (best) epoch and its validation scores."""
    steps, best = summary.steps_per_epoch, summary.best
    run = f"{summary.epochs_run} of at most {summary.max_epochs}"
    return {
        "task": summary.task,
        "model": summary.model,
        "train rows": summary.n_train,
        "parameters": summary.parameters,
        "batch size": f"{summary.batch_size:,}{' (auto)' if auto_batch else ''}, {steps:,} step"
        f"{'s' if steps != 1 else ''} an epoch",
        "examples/s": summary.train_examples_per_s,
        "epochs run": f"{run}, stopped early" if summary.stopped_early else run,
        "best epoch (from 0, restored)": summary.best_epoch,
        f"best epoch's val roc_auc{' (monitored)' if summary.monitor == 'roc_auc' else ''}": (
            best.val_roc_auc if best is not None else float("nan")
        ),
        f"best epoch's val log_loss{' (monitored)' if summary.monitor == 'log_loss' else ''}": (
            best.val_log_loss if best is not None else float("nan")
        ),
    }


def evaluate_cmd(
    run_dir: Annotated[Path, typer.Argument(help="Run directory written by `adsformer train`.")],
    data: Annotated[
        Path | None,
        typer.Option("--data", help="Canonical dataset directory (or feature store) to score."),
    ] = None,
    log_to: LogToOpt = None,
) -> None:
    """Score the test split (natural rate); write RUN_DIR/metrics.json."""
    from adsformer.experiments.runs import evaluate_run
    from adsformer.experiments.tracking import check_backend, evaluate_tracked

    with friendly_errors():
        backend = check_backend(log_to) if log_to else None
        metrics = evaluate_run(run_dir, data) if backend is None else evaluate_tracked(run_dir, data, backend)
    console.print(kv_table("test metrics", {k: v for k, v in metrics.items() if k != "config"}))
    console.print(f"wrote [bold]{run_dir / 'metrics.json'}[/]")


def predict_cmd(
    run_dir: Annotated[Path, typer.Argument(help="Run directory written by `adsformer train`.")],
    data: DataOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output Parquet file (written atomically).")],
    batch_size: Annotated[int | None, typer.Option(help="Scoring batch size.")] = None,
) -> None:
    """Score every impression of a dataset (unseen ids -> OOV); write ids + p_ctr / p_pccvr to Parquet."""
    from adsformer.run.predictor import predict_run

    with friendly_errors(), stage(f"score every impression of {data}"):
        summary = predict_run(run_dir, data, out, batch_size=batch_size)
    console.print(kv_table("predictions", summary))


def export_cmd(
    run_dir: Annotated[Path, typer.Argument(help="Run directory written by `adsformer train`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="TorchScript file, e.g. model.pt.")],
) -> None:
    """Export the run's model as TorchScript (plus FILE.pt.json describing the inputs); parity-checked."""
    from adsformer.run.export import export_torchscript, sidecar_path

    with friendly_errors(), stage("export TorchScript and check parity"):
        path = export_torchscript(run_dir, out)
    console.print(f"wrote [bold]{path}[/] and [bold]{sidecar_path(path)}[/]")
