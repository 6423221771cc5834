"""The training loop: one plain function. Adam, cosine learning-rate decay, binary cross-entropy on logits.

The loss and the optimizer live here, not in the model. After every epoch the model is scored on the
validation rows (natural rate; CTR predictions corrected for the training split's negative down-sampling);
the state with the best validation metric (``monitor``: ROC-AUC or log loss) is kept and restored at the end.

Training fits the data: it runs up to ``epochs`` epochs and stops early once ``patience`` epochs in a row
have not improved the monitored metric. ``batch_size=0`` (the default) picks a batch size from the number
of training rows (:func:`auto_batch_size`), so a small dataset still gets a few hundred optimizer steps an
epoch; an epoch of fewer than :data:`FEW_STEPS` steps is warned about on stderr.

The rows come from a :class:`~adsformer.training.sources.BatchSource`: a :class:`FeatureSet` in memory
(wrapped as :class:`~adsformer.training.sources.InMemorySource`) or a feature store streamed from disk
(:class:`adsformer.data.stream.StreamSource`). Under ``torchrun`` the same function trains data-parallel:
each global batch is sharded over the ranks and the model is wrapped in DDP
(:mod:`adsformer.training.distributed`); a single process runs exactly the code it always ran.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

import numpy as np
import torch
from rich.progress import BarColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import nn

from adsformer.config import ConfigError, Task
from adsformer.console import ProgressBar, log, warn
from adsformer.data.batching import make_batch
from adsformer.data.features import FeatureSet
from adsformer.layers.user import LearnsFaster
from adsformer.models.ranker import Ranker
from adsformer.run.calibration import Calibrator
from adsformer.run.config import TrainConfig
from adsformer.run.scoring import forward, predict_logits
from adsformer.training import distributed
from adsformer.training.calibrate import choose_calibrator
from adsformer.training.distributed import DistContext
from adsformer.training.lazy_adam import LazyAdam
from adsformer.training.metrics import log_loss, roc_auc
from adsformer.training.records import EpochRecord, StepRecord
from adsformer.training.sources import BatchSource, InMemorySource

#: ``batch_size=0`` (auto): the largest power of two in [AUTO_BATCH_MIN, AUTO_BATCH_MAX] that still gives an
#: epoch at least AUTO_MIN_STEPS optimizer steps (AUTO_BATCH_MIN when even that gives fewer).
AUTO_BATCH_MIN, AUTO_BATCH_MAX, AUTO_MIN_STEPS = 256, 8192, 200
#: An epoch of fewer optimizer steps than this is warned about: the model will barely move from its start.
FEW_STEPS = 50


def auto_batch_size(n_train: int) -> int:
    """The batch size ``batch_size=0`` picks for ``n_train`` training rows: the largest power of two in
    [256, 8192] with at least 200 steps an epoch (256 for fewer than 51,200 rows, 8192 from 1,638,400)."""
    batch = AUTO_BATCH_MAX
    while batch > AUTO_BATCH_MIN and n_train < AUTO_MIN_STEPS * batch:
        batch //= 2
    return batch


def resolve_batch_size(batch_size: int, n_train: int) -> int:
    """The (global) batch size training uses: ``batch_size``, or :func:`auto_batch_size` for 0; at most
    ``n_train`` (and at least 1). The one place every source -- in memory, streamed, distributed -- resolves it."""
    if batch_size < 0:
        raise ValueError(f"batch_size must be >= 0 (0 = auto), got {batch_size}")
    chosen = batch_size or auto_batch_size(n_train)
    return max(1, min(chosen, n_train))


@dataclass
class TrainResult:
    history: list[StepRecord] = field(default_factory=list)  # per logged step
    epochs: list[EpochRecord] = field(default_factory=list)  # per epoch run, with validation metrics
    best_epoch: int = 0  # index into ``epochs`` of the restored state (best validation ``monitor``)
    stopped_early: bool = False  # ``patience`` epochs without improvement ended training before ``epochs``
    batch_size: int = 0  # the resolved (global) batch size
    steps_per_epoch: int = 0
    monitor: str = "roc_auc"
    train_examples: int = 0
    train_seconds: float = 0.0
    # down-sampling correction + Platt scaling fit on the validation split (natural rate), best epoch;
    # Platt scaling only where it lowers the validation ECE (calibrator.decision says which)
    calibrator: Calibrator = field(default_factory=Calibrator)
    n_train: int = 0  # training rows of the task
    n_val: int = 0
    world_size: int = 1  # processes that trained it (torchrun)

    @property
    def examples_per_s(self) -> float:
        return self.train_examples / self.train_seconds if self.train_seconds else 0.0

    @property
    def epochs_run(self) -> int:
        return len(self.epochs)

    @property
    def best(self) -> EpochRecord | None:
        """The best epoch's record (train loss, validation metrics, step); None before any epoch."""
        return self.epochs[self.best_epoch] if self.epochs else None


def make_optimizers(model: nn.Module, cfg: TrainConfig, task: str) -> list[torch.optim.Optimizer]:
    """Adam for dense parameters, with the task's weight decay (:meth:`TrainConfig.weight_decay_for`); with
    ``sparse_embeddings``, lazy Adam (SparseAdam) for the id tables.

    A module with an ``lr_scale`` (:class:`~adsformer.layers.user.LearnsFaster`: the position tower) trains
    its parameters at ``lr * lr_scale``: a handful of parameters that every row updates, which would
    otherwise need many epochs of large batches.

    An id table of V rows gets a gradient only for the rows a batch touched; dense Adam would still update
    (and decay the moments of) all V rows every step -- the dominant cost for large vocabularies. Lazy Adam
    updates only the touched rows, as large-scale recommenders do (:class:`LazyAdam`: ``SparseAdam``'s
    update with row operations). Dense Adam runs fused (one kernel for every parameter).
    """
    sparse: list[torch.Tensor] = []
    if cfg.sparse_embeddings:
        for module in model.modules():
            if (
                isinstance(module, nn.Embedding)
                and module.padding_idx is not None
                and module.weight.requires_grad
            ):
                module.sparse = True
                sparse.append(module.weight)
    sparse_ids = {id(p) for p in sparse}
    scale: dict[int, float] = {}
    for module in model.modules():
        if isinstance(module, LearnsFaster):  # modules that train faster (the position tower)
            scale.update({id(p): float(module.lr_scale) for p in module.parameters()})
    groups: dict[float, list[torch.Tensor]] = {1.0: []}
    for p in model.parameters():
        if p.requires_grad and id(p) not in sparse_ids:
            groups.setdefault(scale.get(id(p), 1.0), []).append(p)
    optimizers: list[torch.optim.Optimizer] = [
        torch.optim.Adam(
            [{"params": ps, "lr": cfg.lr * s} for s, ps in groups.items() if ps],
            lr=cfg.lr,
            weight_decay=cfg.weight_decay_for(task),
            fused=True,  # one kernel over every parameter instead of a dozen operations each
        )
    ]
    if sparse:
        optimizers.append(LazyAdam(sparse, lr=cfg.lr))
    return optimizers


def cosine_lr(step: int, total: int, min_ratio: float) -> float:
    """Multiplier of the base learning rate at ``step`` of ``total`` (half-cosine to ``min_ratio``)."""
    progress = min(step / max(total, 1), 1.0)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def train(
    model: nn.Module,
    data: FeatureSet | BatchSource,
    task: Task,
    cfg: TrainConfig,
    *,
    show_progress: bool = True,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    ece_bins: int = 15,
) -> TrainResult:
    """Train ``model`` on the training rows of ``data`` for ``task`` (ctr | pccvr); returns the history.

    Up to ``cfg.epochs`` epochs; after each the validation ``cfg.monitor`` is measured, and training stops
    early once ``cfg.patience`` epochs in a row have not improved on the best (never without validation
    rows). The best epoch's state is restored and its validation scores fit the calibrator: Platt scaling
    where it lowers the validation ECE (``ece_bins`` bins), else the down-sampling correction alone
    (:func:`~adsformer.training.calibrate.choose_calibrator`).

    Under torchrun each rank calls this with the same data and the same seeded model; see
    :mod:`adsformer.training.distributed` for the protocol. The model is handed back unwrapped, on its device.
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    source = InMemorySource(data, task) if isinstance(data, FeatureSet) else data
    ctx = distributed.context(cfg.device)
    _check_rows(source, task)
    if not ctx.sparse_gradients:  # nccl cannot all-reduce sparse gradients: dense Adam for the id tables
        cfg = dataclasses.replace(cfg, sparse_embeddings=False)
    run = _Run.prepare(model, source, task, cfg, ctx)
    quiet = not show_progress or not ctx.is_main
    if not quiet:
        log(run.start_line())
    with ProgressBar(*_BAR_COLUMNS, disable=quiet) as bar:
        job = bar.add_task(f"train {task}", total=run.total, loss=float("nan"))
        for epoch in range(cfg.epochs):
            start = time.perf_counter()
            train_loss = run.train_epoch(epoch, lambda loss: bar.update(job, advance=1, loss=loss))
            record, improved = run.validate(epoch, train_loss)
            if on_epoch:
                on_epoch(record)
            if not quiet:
                log(epoch_line(task, record, cfg.epochs, time.perf_counter() - start, best=improved))
            if run.should_stop(epoch, improved):
                bar.update(job, total=run.step)
                break
    run.finish(ece_bins)
    return run.result


_BAR_COLUMNS = (
    TextColumn("[bold]{task.description}"),
    BarColumn(),
    TextColumn("{task.completed}/{task.total} steps"),
    TextColumn("loss {task.fields[loss]:.4f}"),
    TimeElapsedColumn(),
    TimeRemainingColumn(),
)


def _check_rows(source: BatchSource, task: Task) -> None:
    if source.n_train == 0:
        raise ConfigError(
            f"no training rows for task {task!r} after the time split and negative down-sampling; use more "
            f"impressions, a higher data.sampling.neg_keep_rate, or larger training fractions of the split"
        )


def _warn_few_steps(steps_per_epoch: int, n_train: int, batch_size: int, cfg: TrainConfig) -> None:
    """A warning on stderr when an epoch has fewer than :data:`FEW_STEPS` optimizer steps."""
    if steps_per_epoch >= FEW_STEPS:
        return
    advice = "lower batch_size (0 = auto)" if batch_size > AUTO_BATCH_MIN else "use more training rows"
    warn(
        f"only {steps_per_epoch} optimizer step{'s' if steps_per_epoch > 1 else ''} an epoch "
        f"({n_train:,} training rows, batch "
        f"{batch_size:,}{' (auto)' if cfg.batch_size == 0 else ''}): the model may barely train; {advice}"
    )


@dataclass
class _Run:
    """One call of :func:`train`: what its epochs share (the model and ``net``, its DDP wrapper when
    distributed; the optimizers and their cosine schedules; the step count; the best epoch so far) and the
    stages of an epoch."""

    model: nn.Module
    net: nn.Module
    source: BatchSource
    task: Task
    cfg: TrainConfig
    ctx: DistContext
    optimizers: list[torch.optim.Optimizer]
    schedules: list[torch.optim.lr_scheduler.LambdaLR]
    reads: Collection[str] | None  # the sequences batches carry (those the model reads)
    result: TrainResult
    total: int  # optimizer steps of every epoch
    step: int = 0
    best_score: float = -float("inf")
    best_state: dict[str, torch.Tensor] | None = None
    best_val_logits: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    val_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))

    @classmethod
    def prepare(
        cls, model: nn.Module, source: BatchSource, task: Task, cfg: TrainConfig, ctx: DistContext
    ) -> _Run:
        """The batch size, the model on its device (global batch norm when distributed), its optimizers and
        schedules, and the DDP wrapper."""
        batch_size = resolve_batch_size(cfg.batch_size, source.n_train)
        steps_per_epoch = math.ceil(source.n_train / batch_size)
        if ctx.is_main:
            _warn_few_steps(steps_per_epoch, source.n_train, batch_size, cfg)
        total = steps_per_epoch * cfg.epochs
        reads = model.pairs if isinstance(model, Ranker) else None
        model.to(ctx.device)
        if ctx.distributed:
            distributed.sync_batchnorm(model)  # before the optimizers see the parameters
        optimizers = make_optimizers(model, cfg, task)
        net = distributed.wrap(model, ctx)  # DDP when distributed (after the id tables are marked sparse)
        schedules = [
            torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_lr(s, total, cfg.min_lr_ratio))
            for opt in optimizers
        ]
        result = TrainResult(
            n_train=source.n_train,
            world_size=ctx.world,
            batch_size=batch_size,
            steps_per_epoch=steps_per_epoch,
            monitor=cfg.monitor,
        )
        return cls(model, net, source, task, cfg, ctx, optimizers, schedules, reads, result, total)

    def start_line(self) -> str:
        cfg, r = self.cfg, self.result
        return (
            f"train {self.task}: {r.n_train:,} rows, batch {r.batch_size:,}, {r.steps_per_epoch:,} steps an "
            f"epoch, at most {cfg.epochs} epochs (stops after {cfg.patience} without a better val "
            f"{cfg.monitor})"
        )

    def train_epoch(self, epoch: int, progress: Callable[[float], None]) -> float:
        """One pass over the training rows (``progress`` gets the running mean loss after every step);
        returns the epoch's mean training loss over every rank's rows."""
        self.net.train()
        start, running, seen = time.perf_counter(), 0.0, 0
        for chunk, rows in self.source.train_batches(
            self.result.batch_size, seed=self.cfg.seed * 1000 + epoch
        ):
            loss_sum, n = self._step(chunk, rows)
            running, seen = running + loss_sum, seen + n
            if self.step % self.cfg.log_every == 0 or self.step == self.total:
                self._log_step(epoch, running, seen)
            progress(running / max(seen, 1))
        self.result.train_seconds += time.perf_counter() - start
        running, global_seen = distributed.all_sum([running, float(seen)], self.ctx)
        self.result.train_examples += int(global_seen)
        return running / max(global_seen, 1)

    def _step(self, chunk: FeatureSet, rows: np.ndarray) -> tuple[float, int]:
        """One optimizer step on this rank's share of the global batch ``rows`` (B,) of ``chunk``; returns
        its summed loss and its number of rows."""
        ctx = self.ctx
        batch = make_batch(chunk, distributed.shard(rows, ctx), self.task, pairs=self.reads)
        if ctx.device.type != "cpu":
            batch = batch.to(ctx.device)
        logits = forward(self.net, batch, with_position=True)
        if ctx.distributed:  # this rank's share of the global batch's mean loss
            loss_sum = nn.functional.binary_cross_entropy_with_logits(logits, batch.label, reduction="sum")
            loss = loss_sum * (ctx.world / rows.shape[0])
            summed = float(loss_sum.detach())
        else:
            loss = nn.functional.binary_cross_entropy_with_logits(logits, batch.label)
            summed = float(loss.detach()) * len(batch)
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt, sched in zip(self.optimizers, self.schedules, strict=True):
            opt.step()
            sched.step()
        self.step += 1
        return summed, len(batch)

    def _log_step(self, epoch: int, running: float, seen: int) -> None:
        """A ``history`` row: the epoch's running mean training loss over every rank, the learning rate."""
        total_loss, total_seen = distributed.all_sum([running, float(seen)], self.ctx)
        self.result.history.append(
            StepRecord(
                step=self.step,
                epoch=epoch,
                train_loss=total_loss / total_seen,
                lr=float(self.schedules[0].get_last_lr()[0]),
            )
        )

    def validate(self, epoch: int, train_loss: float) -> tuple[EpochRecord, bool]:
        """Score the validation rows, record the epoch; keep a snapshot when it improved on the best;
        returns the record and whether it improved."""
        labels, logits = _validation_logits(
            self.model, self.source, self.task, self.cfg.eval_batch_size, self.ctx
        )
        self.val_labels = labels
        val_pred = Calibrator(self.source.keep_rate).uncalibrated(logits)
        record = epoch_record(epoch, train_loss, labels, val_pred, self.step)
        self.result.epochs.append(record)
        score = monitored_score(record, self.cfg.monitor)
        improved = score > self.best_score
        if improved:
            self.best_score, self.result.best_epoch = score, epoch
            self.best_state = _snapshot(self.model)
            self.best_val_logits = logits
        return record, improved

    def should_stop(self, epoch: int, improved: bool) -> bool:
        """Early stopping: ``patience`` epochs without improvement (with validation rows, before the last)."""
        stop = (
            not improved
            and bool(self.val_labels.size)
            and epoch - self.result.best_epoch >= self.cfg.patience
            and epoch + 1 < self.cfg.epochs
        )
        if stop:
            self.result.stopped_early = True  # every rank sees the same gathered scores: all stop together
        return stop

    def finish(self, ece_bins: int) -> None:
        """Restore the best epoch's state and fit the calibrator on its validation scores."""
        if self.ctx.distributed:
            distributed.unsync_batchnorm(self.model)
        result, keep_rate = self.result, self.source.keep_rate
        result.n_val = int(self.val_labels.size)
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state, strict=False)  # frozen tables are not in the snapshot
            result.calibrator = choose_calibrator(
                self.best_val_logits, self.val_labels, keep_rate, bins=ece_bins
            )
        else:
            result.calibrator = Calibrator(keep_rate, decision="not_fit")


def epoch_record(
    epoch: int, train_loss: float, val_labels: np.ndarray, val_pred: np.ndarray, step: int
) -> EpochRecord:
    """The record of a finished epoch: its mean training loss and its validation log loss and ROC-AUC of
    ``val_pred`` (N,) against ``val_labels`` (N,) (NaN without validation rows); the peers' training loop
    records the same."""
    has_val = bool(val_labels.size)
    return EpochRecord(
        epoch=epoch,
        train_loss=train_loss,
        val_log_loss=log_loss(val_labels, val_pred) if has_val else float("nan"),
        val_roc_auc=roc_auc(val_labels, val_pred) if has_val else float("nan"),
        step=step,
    )


def epoch_line(task: Task, record: EpochRecord, epochs: int, seconds: float, *, best: bool) -> str:
    """The progress line of a finished epoch: its training loss and validation scores."""
    return (
        f"train {task}: epoch {record.epoch + 1}/{epochs} done in {seconds:.1f} s: train loss "
        f"{record.train_loss:.4f}, val log_loss {record.val_log_loss:.4f}, val roc_auc "
        f"{record.val_roc_auc:.4f}{' (best so far)' if best else ''}"
    )


def monitored_score(record: EpochRecord, monitor: str) -> float:
    """The higher-is-better score of an epoch record for ``monitor``: validation ROC-AUC (its negated log
    loss when AUC is undefined: one class only) or the negated validation log loss; NaN never improves."""
    if monitor == "roc_auc" and np.isfinite(record.val_roc_auc):
        return float(record.val_roc_auc)
    loss = float(record.val_log_loss)
    return -loss if np.isfinite(loss) else -float("inf")


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the trainable state (frozen tables -- possibly gigabytes, memory-mapped -- left out)."""
    frozen = distributed.frozen_state_keys(model)
    return {k: copy.deepcopy(v) for k, v in model.state_dict().items() if k not in frozen}


def _validation_logits(
    model: nn.Module, source: BatchSource, task: Task, batch_size: int, ctx: DistContext
) -> tuple[np.ndarray, np.ndarray]:
    """Labels and logits of every validation row (in the source's order); each rank scores its shard."""
    labels, logits = [], []
    for chunk, rows in source.val_chunks():
        mine = predict_logits(model, chunk, distributed.shard(rows, ctx), task=task, batch_size=batch_size)
        labels.append(chunk.labels(task)[rows])
        logits.append(distributed.gather_rows(mine, ctx))
    if not labels:
        return np.zeros(0, np.int8), np.zeros(0, np.float32)
    return np.concatenate(labels), np.concatenate(logits)
