"""The configuration of a whole run: task, data, model, training, evaluation. YAML files in ``configs/``.

``--set`` short keys at this level (:data:`RUN_SHORT_KEYS`) cover the knobs people turn most; any field is
reachable by its dotted path (``model.adpm.encoder.heads=2``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from adsformer.config import (
    SHORT_KEYS,
    ConfigError,
    DataConfig,
    apply_overrides,
    check_ranges,
    in_range,
    load_yaml,
    parse_overrides,
)
from adsformer.models.config import ModelConfig
from adsformer.models.registry import USER_MODULES

TASKS = ("ctr", "pccvr")

Monitor = Literal["roc_auc", "log_loss"]


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 0  # rows per (global) optimizer step; 0 = auto from the training rows (auto_batch_size)
    eval_batch_size: int = 32768
    epochs: int = 10  # the most epochs to run (short keys epochs / max_epochs); early stopping may end sooner
    patience: int = 2  # stop after this many epochs in a row without a better validation `monitor`
    monitor: Monitor = "roc_auc"  # the validation metric that picks the best epoch and stops early
    lr: float = 0.002
    min_lr_ratio: float = 0.0  # cosine decays from lr to lr * min_lr_ratio over `epochs` epochs
    weight_decay: float = 0.0
    seed: int = 0
    threads: int = 0  # torch intra-op threads; 0 = torch's default
    log_every: int = 20  # steps between recorded training-loss points
    sparse_embeddings: bool = True  # id tables get sparse gradients and lazy Adam (SparseAdam)
    device: str = "cpu"  # cpu | cuda | auto; under torchrun, cuda is each rank's own GPU
    stream_buffer_rows: int = 262_144  # training from a feature store: rows shuffled together in memory

    def __post_init__(self) -> None:
        checks = [
            ("batch_size", self.batch_size >= 0, "must be >= 0 (0 = auto)"),
            ("eval_batch_size", self.eval_batch_size >= 1, "must be >= 1"),
            ("epochs", self.epochs >= 1, "(the most epochs to run) must be >= 1"),
            ("patience", self.patience >= 0, "must be >= 0"),
            ("monitor", self.monitor in ("roc_auc", "log_loss"), "must be roc_auc or log_loss"),
            ("lr", math.isfinite(self.lr) and self.lr > 0, "must be a finite number > 0"),
            ("min_lr_ratio", 0.0 <= self.min_lr_ratio <= 1.0, "must be in [0, 1]"),
            ("weight_decay", math.isfinite(self.weight_decay) and self.weight_decay >= 0, "must be >= 0"),
            ("threads", self.threads >= 0, "must be >= 0 (0 = torch's default)"),
            ("log_every", self.log_every >= 1, "must be >= 1"),
            ("stream_buffer_rows", self.stream_buffer_rows >= 1, "must be >= 1"),
            ("seed", 0 <= self.seed < 2**63, "must be an integer >= 0"),
            ("device", self.device in ("cpu", "cuda", "auto"), "must be cpu, cuda or auto"),
        ]
        for key, ok, rule in checks:
            if not ok:
                raise ConfigError(f"train.{key} {rule}, got {getattr(self, key)!r}")


@dataclass(frozen=True)
class EvalConfig:
    ece_bins: int = 15
    # resamples of the 95% bootstrap intervals (``*_ci`` in metrics.json; whole requests); 0 = off
    bootstrap: int = 200

    def __post_init__(self) -> None:
        check_ranges(
            self,
            [
                ("ece_bins", in_range(self.ece_bins, 1, 10_000), "must be in [1, 10000]"),
                ("bootstrap", in_range(self.bootstrap, 0, 100_000), "must be in [0, 100000] (0 = off)"),
            ],
        )


@dataclass(frozen=True)
class ExperimentConfig:
    task: str = "ctr"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        check_ranges(self, [("task", self.task in TASKS, f"must be one of {list(TASKS)}")])


RUN_SHORT_KEYS: dict[str, str] = {
    **{k: f"data.{v}" for k, v in SHORT_KEYS.items()},
    "model": "model.user",
    "epochs": "train.epochs",  # the most epochs; early stopping (patience, monitor) may end sooner
    "max_epochs": "train.epochs",
    "patience": "train.patience",
    "monitor": "train.monitor",
    "lr": "train.lr",
    "batch_size": "train.batch_size",
    "seed": "train.seed",
    "threads": "train.threads",
    "heads": "model.adpm.encoder.heads",
    "blocks": "model.adpm.encoder.blocks",
    "pooling": "model.adpm.encoder.pooling",
    "encoder_pair": "model.adpm.encoder.pair",
    "tables": "model.adpm.pretrained.tables",
    "cross_layers": "model.ranker.cross_layers",
    "deep": "model.ranker.deep",
    "ece_bins": "eval.ece_bins",
    "bootstrap": "eval.bootstrap",
}


def load_experiment(
    config: Path | None, overrides: list[str] | None = None, extra: dict[str, Any] | None = None
) -> ExperimentConfig:
    """Defaults, then the YAML file, then ``extra`` (e.g. --task/--model), then ``--set`` overrides.

    Out-of-range values raise :class:`ConfigError` naming the key (training values: ``TrainConfig``)."""
    cfg = load_yaml(ExperimentConfig, config) if config else ExperimentConfig()
    if extra:
        cfg = apply_overrides(cfg, extra, RUN_SHORT_KEYS)
    cfg = apply_overrides(cfg, parse_overrides(overrides), RUN_SHORT_KEYS)
    if cfg.task not in TASKS:
        raise ConfigError(f"task must be one of {TASKS}, got {cfg.task!r}")
    if cfg.model.user not in USER_MODULES:
        raise ConfigError(f"unknown model {cfg.model.user!r}; expected one of {sorted(USER_MODULES)}")
    if cfg.model.adpm.encoder.pooling not in ("max", "mean"):
        raise ConfigError(
            f"model.adpm.encoder.pooling must be max or mean, got {cfg.model.adpm.encoder.pooling!r}"
        )
    return cfg
