"""Experiment tracking (``--log-to tensorboard|mlflow``): a run's config, its per-epoch metrics and its test
metrics sent to TensorBoard or MLflow as well as to the run directory.

Each backend is imported only when asked for, and a missing one is one line naming the ``track`` extra.

* ``tensorboard``: event files under ``$ADSFORMER_TENSORBOARD_DIR`` (default ``tensorboard/`` in the
  current directory), one folder per tracked run (``NAME-YYYYmmdd-HHMMSS``); view them with
  ``tensorboard --logdir tensorboard``.
* ``mlflow``: a run in the experiment ``$MLFLOW_EXPERIMENT_NAME`` (default ``adsformer``) of MLflow's own
  tracking store (``$MLFLOW_TRACKING_URI``, MLflow's default when unset).

Scalars are named alike in both: ``train_loss``, ``val_log_loss``, ``val_roc_auc`` per epoch (step = the
epoch, from 0), ``test_*`` for the test metrics. Where a run was tracked is kept in its directory as
``tracking.json`` (:data:`TRACKING_FILE`), so ``evaluate --log-to`` adds the test metrics to the same
tracked run.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, get_args

from adsformer.config import ConfigError, to_dict
from adsformer.console import log

if TYPE_CHECKING:
    from adsformer.experiments.train_summary import TrainSummary
    from adsformer.training.records import EpochRecord
from adsformer.extras import require_package
from adsformer.io import write_json

#: Where a run's metrics may be sent besides its directory
Backend = Literal["tensorboard", "mlflow"]
BACKENDS: tuple[Backend, ...] = get_args(Backend)
#: The file in a run directory that says where the run was tracked
TRACKING_FILE = "tracking.json"
#: The package each backend imports
PACKAGE: dict[Backend, str] = {"tensorboard": "tensorboard", "mlflow": "mlflow"}


class Tracker(Protocol):
    """Where a tracked run's values go. ``record`` says where, to find it again (:func:`resume`)."""

    record: dict[str, Any]

    def params(self, params: Mapping[str, Any]) -> None:
        """The run's settings (flat: dotted keys to scalars)."""

    def epoch(self, record: EpochRecord) -> None:
        """One epoch's record (``epochs.csv`` row): its numbers as scalars at step ``record.epoch``."""

    def metrics(self, values: Mapping[str, Any], prefix: str) -> None:
        """Final numbers (e.g. the test metrics) as ``PREFIX_NAME`` scalars; non-numbers are skipped."""

    def close(self) -> None:
        """Flush and end the tracked run."""


def check_backend(backend: str) -> Backend:
    """``backend`` as a :data:`Backend` when its package is installed; else one clear error."""
    for known in BACKENDS:
        if backend == known:
            require_package(f"'--log-to {known}'", PACKAGE[known])
            return known
    raise ConfigError(f"--log-to {backend!r}: expected one of {list(BACKENDS)}")


def flat_params(cfg: Any) -> dict[str, Any]:
    """A config dataclass as dotted keys to scalars (lists as text): what a tracker's params take."""
    out: dict[str, Any] = {}

    def walk(node: Any, at: str) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(value, f"{at}{key}.")
            return
        out[at.rstrip(".")] = (
            node if isinstance(node, bool | int | float | str) or node is None else str(node)
        )

    walk(to_dict(cfg), "")
    return out


#: Numbers of a record that are not metrics (steps, settings): never sent as scalars
NOT_METRICS = frozenset({"epoch", "step", "ece_bins"})


def numbers(values: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers (not booleans) among ``values``, but :data:`NOT_METRICS`."""
    return {
        k: float(v)
        for k, v in values.items()
        if k not in NOT_METRICS
        and isinstance(v, int | float)
        and not isinstance(v, bool)
        and math.isfinite(float(v))
    }


class TensorBoardTracker:
    """Scalars in TensorBoard event files under ``log_dir``."""

    def __init__(self, log_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(log_dir))
        self.record: dict[str, Any] = {"backend": "tensorboard", "log_dir": str(Path(log_dir).resolve())}

    def params(self, params: Mapping[str, Any]) -> None:
        text = "\n".join(f"    {k}: {v}" for k, v in params.items())  # indented: markdown code
        self.writer.add_text("config", text, 0)

    def epoch(self, record: EpochRecord) -> None:
        for key, value in numbers(record.to_dict()).items():
            self.writer.add_scalar(key, value, record.epoch)

    def metrics(self, values: Mapping[str, Any], prefix: str) -> None:
        for key, value in numbers(values).items():
            self.writer.add_scalar(f"{prefix}_{key}", value, 0)

    def close(self) -> None:
        self.writer.close()


class MLflowTracker:
    """A run in MLflow's tracking store (the client API: no global active run)."""

    def __init__(self, name: str, run_id: str | None = None, *, tracking_uri: str | None = None) -> None:
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=tracking_uri)
        if run_id is None:
            name_of = os.environ.get("MLFLOW_EXPERIMENT_NAME") or "adsformer"
            found = self.client.get_experiment_by_name(name_of)
            exp_id = found.experiment_id if found is not None else self.client.create_experiment(name_of)
            run_id = self.client.create_run(exp_id, run_name=name).info.run_id
        else:
            self.client.update_run(run_id, status="RUNNING")
        self.run_id = run_id
        self.record: dict[str, Any] = {
            "backend": "mlflow",
            "run_id": run_id,
            "tracking_uri": str(self.client.tracking_uri),
        }

    def params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params a batch
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def epoch(self, record: EpochRecord) -> None:
        for key, value in numbers(record.to_dict()).items():
            self.client.log_metric(self.run_id, key, value, step=record.epoch)

    def metrics(self, values: Mapping[str, Any], prefix: str) -> None:
        for key, value in numbers(values).items():
            self.client.log_metric(self.run_id, f"{prefix}_{key}", value)

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


def tensorboard_root() -> Path:
    """Where TensorBoard event folders go: ``$ADSFORMER_TENSORBOARD_DIR``, else ``tensorboard/``."""
    return Path(os.environ.get("ADSFORMER_TENSORBOARD_DIR") or "tensorboard")


def start(backend: Backend, name: str) -> Tracker:
    """A new tracked run called ``name`` (a run directory's name, a trial's)."""
    if backend == "tensorboard":
        folder = tensorboard_root() / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
        tracker: Tracker = TensorBoardTracker(folder)
        log(f"tracking in TensorBoard: {folder} (tensorboard --logdir {tensorboard_root()})")
        return tracker
    mlflow = MLflowTracker(name)
    log(f"tracking in MLflow: run {mlflow.run_id} ({mlflow.record['tracking_uri']})")
    return mlflow


def resume(backend: Backend, run_dir: Path) -> Tracker:
    """The tracked run of ``run_dir`` (its :data:`TRACKING_FILE`) when it was tracked with ``backend``,
    else a new one named after the directory."""
    try:
        record = json.loads((Path(run_dir) / TRACKING_FILE).read_text())
    except (OSError, ValueError):
        record = {}
    if not isinstance(record, dict) or record.get("backend") != backend:
        return start(backend, Path(run_dir).resolve().name)
    if backend == "tensorboard":
        return TensorBoardTracker(Path(record["log_dir"]))
    return MLflowTracker(
        Path(run_dir).name, run_id=str(record["run_id"]), tracking_uri=record.get("tracking_uri")
    )


def save_record(run_dir: Path, tracker: Tracker) -> None:
    """Keep where ``run_dir`` was tracked in it (:data:`TRACKING_FILE`, written atomically)."""
    write_json(Path(run_dir) / TRACKING_FILE, tracker.record)


def train_tracked(data_dir: Path, cfg: Any, out: Path, backend: Backend) -> TrainSummary:
    """``adsformer train --log-to BACKEND``: :func:`~adsformer.experiments.runs.train_run` with its config,
    every epoch's record and the restored epoch's (``best_*``) sent to a new tracked run."""
    from adsformer.experiments.runs import train_run

    tracker = start(backend, Path(out).resolve().name)
    try:
        tracker.params(flat_params(cfg))
        summary = train_run(data_dir, cfg, out, on_epoch=tracker.epoch)
        if summary.best is not None:
            tracker.metrics(summary.best.to_dict(), "best")
        save_record(out, tracker)
    finally:
        tracker.close()
    return summary


def evaluate_tracked(run_dir: Path, data_dir: Path | None, backend: Backend) -> dict[str, Any]:
    """``adsformer evaluate --log-to BACKEND``: the test metrics (``test_*``) sent to the run's tracked run
    (:func:`resume`)."""
    from adsformer.experiments.runs import evaluate_run

    metrics = evaluate_run(run_dir, data_dir)
    tracker = resume(backend, run_dir)
    try:
        tracker.metrics(metrics, "test")
        save_record(run_dir, tracker)
    finally:
        tracker.close()
    return metrics
