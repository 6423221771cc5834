"""The configuration of a whole run: task, data, model, training, evaluation.

Presets ship in the package (``adsformer/configs/``: ``ctr``, ``ctr_test``, ``pccvr``, ``pccvr_test``);
``--config`` takes one by name or a YAML file that ``extends:`` one (:func:`adsformer.config.resolve_config`).
``--set`` short keys (:attr:`ExperimentConfig.SHORT_KEYS`) cover the knobs people turn most; any field is
reachable by its dotted path (``model.adpm.encoder.heads=2``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

from pydantic import with_config

from adsformer.config import (
    KNOWN_KEYS_ONLY,
    MAX_SEED,
    DataConfig,
    Task,
    check_ranges,
    finite,
    in_range,
    load_config,
)
from adsformer.models.config import ModelConfig

#: The validation metric that picks the best epoch and stops training early
Monitor = Literal["roc_auc", "log_loss"]
#: Where training runs: ``auto`` = cuda when available; under torchrun, cuda is each rank's own GPU
Device = Literal["cpu", "cuda", "auto"]


#: ``train.weight_decay`` when left unset. PCCVR learns from the clicked impressions alone (a few percent of the
#: rows; about a thousand purchases on the public Taobao slice) and overfits its dense layers within an epoch
#: without it: there 0.01 took the test ROC-AUC from 0.663 to 0.719 (adSformer, 3 seeds; docs/results.md).
#: CTR has nothing to gain (trivago: the same served ROC-AUC, and a shrunken position tower).
WEIGHT_DECAY_BY_TASK: dict[str, float] = {"ctr": 0.0, "pccvr": 0.01}


@with_config(KNOWN_KEYS_ONLY)
@dataclass(frozen=True)
class TrainConfig:
    """How a model trains: batches, epochs and early stopping, the optimizer, threads and device."""

    batch_size: int = 0  # rows per (global) optimizer step; 0 = auto from the training rows (auto_batch_size)
    eval_batch_size: int = 32768
    epochs: int = 10  # the most epochs to run (short keys epochs / max_epochs); early stopping may end sooner
    patience: int = 2  # stop after this many epochs in a row without a better validation `monitor`
    monitor: Monitor = "roc_auc"  # the validation metric that picks the best epoch and stops early
    lr: float = 0.002
    min_lr_ratio: float = 0.0  # cosine decays from lr to lr * min_lr_ratio over `epochs` epochs
    # L2 on the dense parameters (the sparse id tables are not decayed); None = by task (WEIGHT_DECAY_BY_TASK)
    weight_decay: float | None = None
    seed: int = 0
    threads: int = 0  # torch intra-op threads; 0 = torch's default
    log_every: int = 20  # steps between recorded training-loss points
    sparse_embeddings: bool = True  # id tables get sparse gradients and lazy Adam (SparseAdam)
    device: Device = "cpu"
    stream_buffer_rows: int = 262_144  # training from a feature store: rows shuffled together in memory

    def __post_init__(self) -> None:
        check_ranges(
            self,
            [
                ("batch_size", self.batch_size >= 0, "must be >= 0 (0 = auto)"),
                ("eval_batch_size", self.eval_batch_size >= 1, "must be >= 1"),
                ("epochs", self.epochs >= 1, "(the most epochs to run) must be >= 1"),
                ("patience", self.patience >= 0, "must be >= 0"),
                ("lr", finite(self.lr) and self.lr > 0, "must be a finite number > 0"),
                ("min_lr_ratio", 0.0 <= self.min_lr_ratio <= 1.0, "must be in [0, 1]"),
                (
                    "weight_decay",
                    self.weight_decay is None or (finite(self.weight_decay) and self.weight_decay >= 0),
                    "must be >= 0 (or null: by task)",
                ),
                ("threads", self.threads >= 0, "must be >= 0 (0 = torch's default)"),
                ("log_every", self.log_every >= 1, "must be >= 1"),
                ("stream_buffer_rows", self.stream_buffer_rows >= 1, "must be >= 1"),
                ("seed", in_range(self.seed, 0, MAX_SEED), "must be an integer >= 0"),
                ("monitor", self.monitor in get_args(Monitor), f"must be one of {list(get_args(Monitor))}"),
                ("device", self.device in get_args(Device), f"must be one of {list(get_args(Device))}"),
            ],
        )

    def weight_decay_for(self, task: str) -> float:
        """``weight_decay``, or where it is None the task's default (:data:`WEIGHT_DECAY_BY_TASK`)."""
        return WEIGHT_DECAY_BY_TASK.get(task, 0.0) if self.weight_decay is None else self.weight_decay


@with_config(KNOWN_KEYS_ONLY)
@dataclass(frozen=True)
class EvalConfig:
    """How a run is evaluated on its test split."""

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


#: A value a categorical search dimension may take: a scalar, or a list of them (``model.ranker.deep``)
Choice = bool | int | float | str | None | tuple[bool | int | float | str | None, ...]


@with_config(KNOWN_KEYS_ONLY)
@dataclass(frozen=True)
class ParamSpec:
    """One dimension of a search space: a range ``[low, high]`` (``log``: sampled on a log scale; ``step``:
    a grid) or a list of ``choices`` (scalars or lists: ``[[256, 128], [64]]``). A range over an integer
    config key draws integers."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Choice, ...] | None = None

    def __post_init__(self) -> None:
        low, high = self.low, self.high
        is_range = low is not None and high is not None
        check_ranges(
            self,
            [
                (
                    "choices",
                    (self.choices is None) == is_range and (self.choices is None or len(self.choices) > 0),
                    "must be a non-empty list given alone (or give low and high instead)",
                ),
                (
                    "high",
                    low is None or high is None or (finite(low) and finite(high) and low <= high),
                    "must be a finite number >= low",
                ),
                ("low", not (self.log and low is not None) or low > 0, "must be > 0 on a log scale"),
                (
                    "step",
                    self.step is None or (finite(self.step) and self.step > 0 and not self.log),
                    "must be > 0 (and not combined with log)",
                ),
            ],
        )

    @property
    def is_range(self) -> bool:
        return self.choices is None


#: The search space when the config declares none (:func:`default_space`): the optimizer and the regularizers
DEFAULT_SPACE: Mapping[str, ParamSpec] = {
    "train.lr": ParamSpec(low=3e-4, high=1e-2, log=True),
    "train.weight_decay": ParamSpec(choices=(0.0, 1e-4, 1e-3, 1e-2)),
    "model.ranker.dropout": ParamSpec(low=0.0, high=0.3),
    "model.ranker.cross_layers": ParamSpec(low=0, high=3),
}
#: What the default space adds for the user module that has a dropout of its own
DEFAULT_SPACE_BY_MODEL: Mapping[str, Mapping[str, ParamSpec]] = {
    "adsformer": {"model.adpm.encoder.dropout": ParamSpec(low=0.0, high=0.3)},
    "bst": {"model.bst.dropout": ParamSpec(low=0.0, high=0.3)},
}


@with_config(KNOWN_KEYS_ONLY)
@dataclass(frozen=True)
class TuneConfig:
    """A hyperparameter search (``adsformer tune``): how many trials, the validation metric it optimizes
    (``roc_auc`` is maximized, ``log_loss`` minimized) and the search space, dotted config keys to
    :class:`ParamSpec` (None: :data:`DEFAULT_SPACE` and the model's entry of
    :data:`DEFAULT_SPACE_BY_MODEL`). A file's ``space`` replaces the space of the file it extends."""

    trials: int = 20  # trials the study holds when the command ends (a rerun adds the missing ones)
    metric: Monitor = "roc_auc"
    space: dict[str, ParamSpec] | None = None
    seed: int = 0  # the sampler's seed
    base_trial: bool = True  # the first trial is the config itself (its values of the space's keys)
    prune: bool = True  # stop trials whose validation metric trails the median of earlier trials' (per epoch)
    startup_trials: int = 5  # trials before the sampler and the pruner act on what earlier ones found
    warmup_epochs: int = 1  # epochs a trial runs before it may be pruned

    def __post_init__(self) -> None:
        check_ranges(
            self,
            [
                ("trials", in_range(self.trials, 1, 100_000), "must be in [1, 100000]"),
                ("metric", self.metric in get_args(Monitor), f"must be one of {list(get_args(Monitor))}"),
                (
                    "space",
                    self.space is None or len(self.space) > 0,
                    "must list at least one key (or be null)",
                ),
                ("seed", in_range(self.seed, 0, MAX_SEED), "must be an integer >= 0"),
                ("startup_trials", in_range(self.startup_trials, 0, 100_000), "must be in [0, 100000]"),
                ("warmup_epochs", in_range(self.warmup_epochs, 0, 100_000), "must be in [0, 100000]"),
            ],
        )

    @property
    def direction(self) -> Literal["maximize", "minimize"]:
        """``maximize`` for ROC-AUC, ``minimize`` for log loss."""
        return "maximize" if self.metric == "roc_auc" else "minimize"

    def space_for(self, model: str) -> dict[str, ParamSpec]:
        """The declared space, or the default one for ``model`` (``model.user``)."""
        if self.space is not None:
            return dict(self.space)
        return {**DEFAULT_SPACE, **DEFAULT_SPACE_BY_MODEL.get(model, {})}


@with_config(KNOWN_KEYS_ONLY)
@dataclass(frozen=True)
class ExperimentConfig:
    """A whole run: what it predicts, its data, its model, how it trains and how it is evaluated."""

    KIND: ClassVar[str] = "run"
    #: ``--set`` short keys: the data config's (under ``data.``) and the run knobs people turn most
    SHORT_KEYS: ClassVar[Mapping[str, str]] = {
        **{k: f"data.{v}" for k, v in DataConfig.SHORT_KEYS.items()},
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
        "trials": "tune.trials",
    }
    #: Mappings a config file replaces whole rather than merges into (their keys are not config fields)
    REPLACED: ClassVar[frozenset[str]] = frozenset({"tune.space"})

    task: Task = "ctr"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)  # read by adsformer tune only


def load_experiment(
    config: str | Path | None, overrides: list[str] | None = None, extra: dict[str, Any] | None = None
) -> ExperimentConfig:
    """Defaults, then ``config`` (a preset name or a YAML file), then ``extra`` (the command's options,
    e.g. ``--task`` / ``--model``), then ``--set`` overrides (:func:`adsformer.config.resolve_config`).

    Any bad key or value raises :class:`ConfigError` naming it."""
    return load_config(ExperimentConfig, config, overrides, extra)
