"""The training loop: one plain function. Adam, cosine learning-rate decay, binary cross-entropy on logits.

The loss and the optimizer live here, not in the model. After every epoch the model is scored on the
validation rows (natural rate; CTR predictions corrected for the training split's negative down-sampling);
the state with the best validation ROC-AUC is kept and restored at the end.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import nn

from adsformer.console import console
from adsformer.data.batching import Batch, iterate_batches
from adsformer.data.features import FeatureSet
from adsformer.training.calibration import Calibrator, fit_platt, sigmoid
from adsformer.training.metrics import log_loss, roc_auc


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 8192
    eval_batch_size: int = 32768
    epochs: int = 1
    lr: float = 0.002
    min_lr_ratio: float = 0.0  # cosine decays from lr to lr * min_lr_ratio
    weight_decay: float = 0.0
    seed: int = 0
    threads: int = 0  # torch intra-op threads; 0 = torch's default
    log_every: int = 20  # steps between recorded training-loss points
    sparse_embeddings: bool = True  # id tables get sparse gradients and lazy Adam (SparseAdam)


@dataclass
class TrainResult:
    history: list[dict[str, Any]] = field(default_factory=list)  # per logged step
    epochs: list[dict[str, Any]] = field(default_factory=list)  # per epoch, with validation metrics
    best_epoch: int = 0
    train_examples: int = 0
    train_seconds: float = 0.0
    # down-sampling correction + Platt scaling fit on the validation split (natural rate), best epoch
    calibrator: Calibrator = field(default_factory=Calibrator)

    @property
    def examples_per_s(self) -> float:
        return self.train_examples / self.train_seconds if self.train_seconds else 0.0


def forward(model: nn.Module, batch: Batch, *, with_position: bool = False) -> torch.Tensor:
    """The model's logits (B,) for a batch; the position tower only ``with_position`` (training)."""
    position = batch.position if with_position else None
    return model(batch.target, batch.categorical, batch.dense, batch.seq_ids, batch.seq_len, position)


@torch.no_grad()
def predict_logits(
    model: nn.Module, fs: FeatureSet, rows: np.ndarray, *, task: str = "ctr", batch_size: int = 32768
) -> np.ndarray:
    """The model's logits (N,) float32 for ``rows`` (in order), without the position tower."""
    was_training = model.training
    model.eval()
    out = [forward(model, b).numpy() for b in iterate_batches(fs, rows, batch_size, task=task)]
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def predict(
    model: nn.Module, fs: FeatureSet, rows: np.ndarray, *, task: str = "ctr", batch_size: int = 32768
) -> np.ndarray:
    """The model's probabilities (N,) for ``rows`` (in order): before down-sampling correction."""
    return sigmoid(predict_logits(model, fs, rows, task=task, batch_size=batch_size)).astype(np.float32)


def make_optimizers(model: nn.Module, cfg: TrainConfig) -> list[torch.optim.Optimizer]:
    """Adam for dense parameters; with ``sparse_embeddings``, lazy Adam (SparseAdam) for the id tables.

    A module with an ``lr_scale`` attribute (the position tower) trains its parameters at ``lr * lr_scale``:
    a handful of parameters that every row updates, which would otherwise need many epochs of large batches.

    An id table of V rows gets a gradient only for the rows a batch touched; dense Adam would still update
    (and decay the moments of) all V rows every step -- the dominant cost for large vocabularies. Lazy Adam
    updates only the touched rows, as large-scale recommenders do.
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
        lr_scale = getattr(module, "lr_scale", None)  # declared by modules that train faster (position tower)
        if lr_scale is not None:
            scale.update({id(p): float(lr_scale) for p in module.parameters()})
    groups: dict[float, list[torch.Tensor]] = {1.0: []}
    for p in model.parameters():
        if p.requires_grad and id(p) not in sparse_ids:
            groups.setdefault(scale.get(id(p), 1.0), []).append(p)
    optimizers: list[torch.optim.Optimizer] = [
        torch.optim.Adam(
            [{"params": ps, "lr": cfg.lr * s} for s, ps in groups.items() if ps],
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
        )
    ]
    if sparse:
        optimizers.append(torch.optim.SparseAdam(sparse, lr=cfg.lr))
    return optimizers


def cosine_lr(step: int, total: int, min_ratio: float) -> float:
    """Multiplier of the base learning rate at ``step`` of ``total`` (half-cosine to ``min_ratio``)."""
    progress = min(step / max(total, 1), 1.0)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def train(
    model: nn.Module,
    fs: FeatureSet,
    task: str,
    cfg: TrainConfig,
    *,
    show_progress: bool = True,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train ``model`` on the training rows of ``fs`` for ``task`` (ctr | pccvr); returns the history."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    train_rows, val_rows = fs.rows("train", task), fs.rows("val", task)
    if train_rows.size == 0:
        raise ValueError(f"no training rows for task {task!r}")
    batch_size = min(cfg.batch_size, train_rows.size)
    steps_per_epoch = math.ceil(train_rows.size / batch_size)
    total = steps_per_epoch * cfg.epochs
    optimizers = make_optimizers(model, cfg)
    schedules = [
        torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_lr(s, total, cfg.min_lr_ratio))
        for opt in optimizers
    ]
    loss_fn = nn.BCEWithLogitsLoss()
    val_labels = fs.labels(task)[val_rows]
    keep_rate = float(fs.info["neg_keep_rate"]) if task == "ctr" else 1.0

    result = TrainResult()
    best_auc, best_state = -float("inf"), None
    best_val_logits = np.zeros(0, np.float32)
    step = 0
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=console, disable=not show_progress, transient=False) as bar:
        job = bar.add_task(f"train {task}", total=total, loss=float("nan"))
        for epoch in range(cfg.epochs):
            model.train()
            start, running, seen = time.perf_counter(), 0.0, 0
            for batch in iterate_batches(
                fs, train_rows, batch_size, task=task, shuffle=True, seed=cfg.seed * 1000 + epoch
            ):
                loss = loss_fn(forward(model, batch, with_position=True), batch.label)
                for opt in optimizers:
                    opt.zero_grad(set_to_none=True)
                loss.backward()
                for opt, sched in zip(optimizers, schedules, strict=True):
                    opt.step()
                    sched.step()
                step += 1
                running += float(loss.detach()) * len(batch)
                seen += len(batch)
                if step % cfg.log_every == 0 or step == total:
                    result.history.append(
                        {
                            "step": step,
                            "epoch": epoch,
                            "train_loss": running / seen,
                            "lr": schedules[0].get_last_lr()[0],
                        }
                    )
                bar.update(job, advance=1, loss=running / seen)
            result.train_seconds += time.perf_counter() - start
            result.train_examples += seen
            val_logits = predict_logits(model, fs, val_rows, task=task, batch_size=cfg.eval_batch_size)
            val_pred = Calibrator(keep_rate).uncalibrated(val_logits)
            record = {
                "epoch": epoch,
                "train_loss": running / max(seen, 1),
                "val_log_loss": log_loss(val_labels, val_pred),
                "val_roc_auc": roc_auc(val_labels, val_pred),
                "step": step,
            }
            result.epochs.append(record)
            if on_epoch:
                on_epoch(record)
            score = record["val_roc_auc"] if np.isfinite(record["val_roc_auc"]) else -record["val_log_loss"]
            if score > best_auc:
                best_auc, result.best_epoch = score, epoch
                best_state = copy.deepcopy(model.state_dict())
                best_val_logits = val_logits
    if best_state is not None:
        model.load_state_dict(best_state)
        result.calibrator = fit_platt(best_val_logits, val_labels, keep_rate)
    else:
        result.calibrator = Calibrator(keep_rate)
    return result
