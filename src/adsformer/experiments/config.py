"""The configuration of a whole run: task, data, model, training. YAML files in ``configs/``.

``--set`` short keys at this level (:data:`RUN_SHORT_KEYS`) cover the knobs people turn most; any field is
reachable by its dotted path (``model.adpm.encoder.heads=2``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
from adsformer.training.loop import TrainConfig

TASKS = ("ctr", "pccvr")


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
