"""``train_summary.json`` as a typed object: what ``adsformer train`` returns, prints and writes beside a run.

The JSON is a public contract: :meth:`TrainSummary.to_dict` writes the fields ``task``, ``model``,
``dataset``, ``data_dir``, ``split``, ``n_train``, ``n_val``, ``parameters``, ``train_examples_per_s``,
``train_seconds``, ``features_seconds``, ``batch_size``, ``steps_per_epoch``, ``max_epochs``, ``epochs_run``,
``stopped_early``, ``monitor``, ``best_epoch``, ``epochs``, ``calibration`` (and ``world_size`` when more
than one process trained), in that order. ``epochs`` are the per-epoch records of ``epochs.csv``
(:class:`adsformer.training.records.EpochRecord`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from adsformer.data.features import FeatureSet
from adsformer.run.config import ExperimentConfig
from adsformer.training.loop import TrainResult
from adsformer.training.records import EpochRecord


@dataclass(frozen=True)
class SplitRecord:
    """The cut instants of a run's split (unix seconds): training before ``val_start``, validation before
    ``test_start``, test before ``end``; rows before ``train_start`` (when set) or from ``end`` on are
    unused."""

    mode: str
    train_start: int | None
    val_start: int
    test_start: int
    end: int | None

    @classmethod
    def of(cls, fs: FeatureSet) -> SplitRecord:
        s = fs.split
        return cls(
            mode=s.mode,
            train_start=s.train_start,
            val_start=int(s.val_start),
            test_start=int(s.test_start),
            end=None if s.end is None else int(s.end),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "train_start": self.train_start,
            "val_start": self.val_start,
            "test_start": self.test_start,
            "end": self.end,
        }


@dataclass(frozen=True)
class TrainSummary:
    """The training summary of a trained model (see the module docstring)."""

    task: str
    model: str  # the user module
    dataset: str
    data_dir: str | None  # where the data was (``evaluate`` defaults to it)
    split: SplitRecord  # the instants that cut the data (``predict`` labels rows with them)
    n_train: int
    n_val: int
    parameters: int
    train_examples_per_s: float
    train_seconds: float
    features_seconds: float
    batch_size: int  # resolved (batch_size=0 picks it from the training rows)
    steps_per_epoch: int
    max_epochs: int
    epochs_run: int
    stopped_early: bool
    monitor: str
    best_epoch: int  # index into epochs: the restored state
    epochs: tuple[EpochRecord, ...]
    calibration: Mapping[str, Any]
    world_size: int = 1

    @classmethod
    def of(
        cls,
        cfg: ExperimentConfig,
        fs: FeatureSet,
        model: nn.Module,
        result: TrainResult,
        *,
        dataset: str,
        features_s: float = 0.0,
        data_dir: str | None = None,
    ) -> TrainSummary:
        """The summary of ``model`` trained on ``fs`` as ``cfg`` says, with the loop's ``result``."""
        return cls(
            task=cfg.task,
            model=cfg.model.user,
            dataset=dataset,
            data_dir=data_dir,
            split=SplitRecord.of(fs),
            n_train=result.n_train or int(fs.rows("train", cfg.task).size),
            n_val=result.n_val or int(fs.rows("val", cfg.task).size),
            parameters=int(sum(p.numel() for p in model.parameters())),
            train_examples_per_s=result.examples_per_s,
            train_seconds=result.train_seconds,
            features_seconds=features_s,
            batch_size=result.batch_size,
            steps_per_epoch=result.steps_per_epoch,
            max_epochs=cfg.train.epochs,
            epochs_run=result.epochs_run,
            stopped_early=result.stopped_early,
            monitor=result.monitor,
            best_epoch=result.best_epoch,
            epochs=tuple(result.epochs),
            calibration=result.calibrator.to_dict(),
            world_size=result.world_size,
        )

    @property
    def best(self) -> EpochRecord | None:
        """The restored (best) epoch's record; None before any epoch."""
        return self.epochs[self.best_epoch] if self.epochs else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``train_summary.json``."""
        out: dict[str, Any] = {
            "task": self.task,
            "model": self.model,
            "dataset": self.dataset,
            "data_dir": self.data_dir,
            "split": self.split.to_dict(),
            "n_train": self.n_train,
            "n_val": self.n_val,
            "parameters": self.parameters,
            "train_examples_per_s": self.train_examples_per_s,
            "train_seconds": self.train_seconds,
            "features_seconds": self.features_seconds,
            "batch_size": self.batch_size,
            "steps_per_epoch": self.steps_per_epoch,
            "max_epochs": self.max_epochs,
            "epochs_run": self.epochs_run,
            "stopped_early": self.stopped_early,
            "monitor": self.monitor,
            "best_epoch": self.best_epoch,
            "epochs": [e.to_dict() for e in self.epochs],
            "calibration": dict(self.calibration),
        }
        if self.world_size > 1:
            out["world_size"] = self.world_size
        return out
