"""Row subsets of a :class:`FeatureSet` as torch tensors, one fancy-index per column per batch.

No per-row Python: a batch is ``rows`` (B,) and every column is gathered with ``array[rows]``; sequences
are padded by :meth:`SequenceColumn.padded` in one gather. ``torch.from_numpy`` shares memory.

Letters: B batch size, M max sequence length, F numeric features.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from adsformer.config import Task
from adsformer.data.features import FeatureSet
from adsformer.data.inputs import ModelInputs


@dataclass(frozen=True, kw_only=True)
class Batch(ModelInputs):
    """One mini-batch: the model's inputs (:class:`~adsformer.data.inputs.ModelInputs`, per-row form, with
    ``position`` always given and ``seq_ids`` pair -> (B, M_b), M_b <= M) plus what training and evaluation
    read beside them."""

    label: torch.Tensor  # (B,) float32
    rows: np.ndarray  # (B,) row indices into the FeatureSet


def make_batch(
    fs: FeatureSet,
    rows: np.ndarray,
    task: Task = "ctr",
    *,
    trim: bool = True,
    pairs: Collection[str] | None = None,
) -> Batch:
    """Gather ``rows`` of ``fs`` into a :class:`Batch`.

    With ``trim`` (default) each sequence block is only as wide as the batch's longest sequence of that pair
    (``M_b <= M``): exact, since padding is masked everywhere, and much cheaper when windows are short.
    ``pairs``: only these sequences (those a model reads, :attr:`Ranker.pairs`); all when None. The touch
    block always holds every pair (its columns are the data's pairs, in order).
    """
    rows = np.asarray(rows, dtype=np.int64)
    seq_ids, seq_len = {}, {}
    for name, column in fs.sequences.items():
        if pairs is not None and name not in pairs:
            continue
        ids, lengths = column.padded(rows, trim=trim)  # (B, M_b), (B,)
        seq_ids[name] = torch.from_numpy(ids.astype(np.int64))
        seq_len[name] = torch.from_numpy(lengths.astype(np.int64))
    return Batch(
        target={k: torch.from_numpy(v[rows].astype(np.int64)) for k, v in fs.target.items()},
        categorical={k: torch.from_numpy(v[rows].astype(np.int64)) for k, v in fs.categorical.items()},
        dense=torch.from_numpy(np.ascontiguousarray(fs.dense[rows])),
        position=torch.from_numpy(fs.position[rows].astype(np.int64)),
        seq_ids=seq_ids,
        seq_len=seq_len,
        touch=_touch(fs, rows),
        label=torch.from_numpy(fs.labels(task)[rows].astype(np.float32)),
        rows=rows,
    )


def _touch(fs: FeatureSet, rows: np.ndarray) -> torch.Tensor | None:
    """(B, P, 2) touch signals of ``rows``; None where the set carries none (a feature store written before
    they existed): a model reading them then says so, instead of training on "never touched" everywhere."""
    if fs.touch.shape[0] == fs.n and fs.touch.shape[1] == len(fs.sequences):
        return torch.from_numpy(np.ascontiguousarray(fs.touch[rows]))
    return None


def iterate_batches(
    fs: FeatureSet,
    rows: np.ndarray,
    batch_size: int,
    *,
    task: Task = "ctr",
    shuffle: bool = False,
    trim: bool = True,
    seed: int = 0,
    drop_last: bool = False,
    pairs: Collection[str] | None = None,
) -> Iterator[Batch]:
    """Batches over ``rows`` (shuffled with ``seed`` when asked); the last short batch unless ``drop_last``;
    ``pairs``: only these sequences (see :func:`make_batch`)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    rows = np.asarray(rows, dtype=np.int64)
    if shuffle:
        rows = rows[np.random.default_rng(seed).permutation(rows.shape[0])]
    stop = rows.shape[0] - (rows.shape[0] % batch_size if drop_last else 0)
    for start in range(0, stop, batch_size):
        yield make_batch(fs, rows[start : start + batch_size], task, trim=trim, pairs=pairs)
