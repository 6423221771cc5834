"""Several labelled "datasets" in one model: the balanced task sampler, the per-head masked loss, labels and
the held-out split.

Letters: B batch, T tasks, K classes of one head.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adsformer.representations.table import TableError
from adsformer.representations.visual.config import AUTO_TASKS, FALLBACK_TASKS, VisualConfig

# --- multi-dataset balanced sampler and masked loss ------------------------------------------------------


class BalancedTaskSampler:
    """Batches with an equal share of every task ("dataset"): ``batch_size // T`` examples each, the remainder
    rotating over the tasks from batch to batch; rows are drawn with replacement within a task's pool.

    ``pools[t]``: the row ids (into the caller's arrays) that carry task ``t``'s label."""

    def __init__(self, pools: Sequence[np.ndarray], batch_size: int, seed: int = 0) -> None:
        if not pools:
            raise ValueError("the sampler needs at least one task")
        empty = [t for t, p in enumerate(pools) if len(p) == 0]
        if empty:
            raise ValueError(f"task(s) {empty} have no examples to draw from")
        if batch_size < len(pools):
            raise ValueError(f"batch_size={batch_size} is smaller than the number of tasks ({len(pools)})")
        self.pools = [np.asarray(p, np.int64) for p in pools]
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)
        self.step = 0

    @property
    def steps_per_epoch(self) -> int:
        """Batches that draw as many examples as the pools hold together."""
        return max(1, math.ceil(sum(p.size for p in self.pools) / self.batch_size))

    def shares(self, step: int) -> np.ndarray:
        """``(T,)`` examples per task in batch number ``step``; over any ``T`` consecutive batches each task
        gets the same total."""
        t = len(self.pools)
        base, extra = divmod(self.batch_size, t)
        out = np.full(t, base, np.int64)
        out[(step * extra + np.arange(extra)) % t] += 1
        return out

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        """``rows`` (B,) and ``task`` (B,): the task each example was drawn for."""
        shares = self.shares(self.step)
        self.step += 1
        rows = np.concatenate(
            [p[self.rng.integers(0, p.size, n)] for p, n in zip(self.pools, shares, strict=True)]
        )
        task = np.repeat(np.arange(len(self.pools)), shares)
        return rows, task


def masked_multitask_loss(
    heads: nn.ModuleList | Sequence[nn.Module], z: Tensor, labels: Tensor, task: Tensor
) -> Tensor:
    """Mean cross-entropy where example ``i`` is scored only by head ``task[i]``.

    ``z``: ``(B, D)``; ``labels``: ``(B,)`` class index in that task's head; ``task``: ``(B,)``. A head is
    evaluated only on its own examples, so the others' labels, logits and gradients never mix in (a head with
    no example in the batch gets no gradient at all)."""
    total = z.new_zeros(())
    for t in torch.unique(task).tolist():
        sel = task == t
        total = total + F.cross_entropy(heads[t](z[sel]), labels[sel], reduction="sum")
    return total / max(task.numel(), 1)


# --- labels and the held-out split -----------------------------------------------------------------------


@dataclass
class TaskLabels:
    """One head's classes (most frequent first) and its labels: ``codes`` (N,) class index or -1 (no label,
    a class too rare to keep, or a held-out listing's class never seen in training)."""

    column: str
    classes: list[str]
    codes: np.ndarray  # (N,) int64
    dropped_classes: int
    dropped_examples: int  # training images whose class was too rare


def resolve_tasks(cfg: VisualConfig, listings: pl.DataFrame) -> tuple[list[str], bool]:
    """The label columns (and whether they were picked automatically)."""
    if cfg.tasks != ("auto",):
        missing = [c for c in cfg.tasks if c not in listings.columns]
        if missing:
            labels = [c for c in listings.columns if c.startswith("c_") or c == "taxonomy_id"]
            raise TableError(
                f"visual tasks {missing}: no such column in listings.parquet; label columns there: {labels}"
            )
        return list(cfg.tasks), False
    picked = [c for c in AUTO_TASKS if c in listings.columns]
    if not set(picked) - set(FALLBACK_TASKS):  # no product-catalog label: a marketplace's taxonomy + color
        picked = [c for c in FALLBACK_TASKS if c in listings.columns]
    if not picked:
        raise TableError(
            f"tasks=auto found none of {AUTO_TASKS + FALLBACK_TASKS} in listings.parquet; "
            f"name the label columns with --set tasks=COL1,COL2"
        )
    return picked, True


def encode_task(column: str, values: list[Any], train: np.ndarray, min_count: int) -> TaskLabels:
    """Classes = labels with >= ``min_count`` training images; ``train`` (N,) bool marks the training rows."""
    raw = np.array(["" if v is None else str(v) for v in values], dtype=object)  # (N,)
    has = raw != ""
    names, counts = np.unique(raw[has & train], return_counts=True)
    order = np.lexsort((names, -counts))  # most frequent first, ties by name
    keep = [(str(names[i]), int(counts[i])) for i in order if counts[i] >= min_count]
    classes = [n for n, _ in keep]
    index = {n: i for i, n in enumerate(classes)}
    codes = np.array([index.get(v, -1) if h else -1 for v, h in zip(raw, has, strict=True)], np.int64)
    dropped = int(((codes < 0) & has & train).sum())
    return TaskLabels(column, classes, codes, len(names) - len(classes), dropped)


def held_out(n: int, fraction: float, seed: int) -> np.ndarray:
    """``(N,)`` bool: a seeded ``fraction`` of the listings, held out from training."""
    val = np.zeros(n, bool)
    k = round(n * fraction)
    if fraction > 0 and n > 2:
        val[np.random.default_rng(seed).permutation(n)[: max(1, min(k, n - 2))]] = True
    return val
