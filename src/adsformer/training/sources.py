"""Where the training loop gets its rows: a whole :class:`FeatureSet` in memory, or chunks streamed from disk.

A source yields ``(chunk, rows)`` pairs: ``chunk`` is a :class:`FeatureSet` (all impressions in memory, or
one buffered piece of a feature store) and ``rows`` (B,) are row indices into it. For training each pair is
one *global* batch, which the loop shards over ranks and gathers with
:func:`adsformer.data.batching.make_batch`; for validation the pairs cover the validation rows in order.

:class:`InMemorySource` reproduces :func:`adsformer.data.batching.iterate_batches` exactly (same shuffle,
same slices), so a single process trains on the very batches it always did. The streamed source lives in
:mod:`adsformer.data.stream`.

Letters: B batch rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import numpy as np

from adsformer.config import Task
from adsformer.data.features import FeatureSet


class BatchSource(Protocol):
    """What :func:`adsformer.training.loop.train` needs from its data."""

    task: Task
    n_train: int  # training rows of the task (after down-sampling for CTR)
    keep_rate: float  # the training split's negative keep rate (1 for PCCVR)

    def train_batches(self, batch_size: int, seed: int) -> Iterator[tuple[FeatureSet, np.ndarray]]:
        """Global training batches of ``batch_size`` rows (the last may be shorter), shuffled by ``seed``."""
        ...

    def val_chunks(self) -> Iterator[tuple[FeatureSet, np.ndarray]]:
        """The validation rows, in a fixed order."""
        ...


class InMemorySource:
    """A :class:`FeatureSet` held in memory: one permutation of the training rows per epoch."""

    def __init__(self, fs: FeatureSet, task: Task) -> None:
        self.fs, self.task = fs, task
        self.train_rows = fs.rows("train", task)
        self.n_train = int(self.train_rows.size)
        self.keep_rate = fs.info.neg_keep_rate if task == "ctr" else 1.0

    def train_batches(self, batch_size: int, seed: int) -> Iterator[tuple[FeatureSet, np.ndarray]]:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        rows = self.train_rows[np.random.default_rng(seed).permutation(self.n_train)]
        for start in range(0, rows.shape[0], batch_size):
            yield self.fs, rows[start : start + batch_size]

    def val_chunks(self) -> Iterator[tuple[FeatureSet, np.ndarray]]:
        yield self.fs, self.fs.rows("val", self.task)
