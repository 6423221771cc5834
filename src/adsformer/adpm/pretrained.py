"""ADPM component 2: frozen pretrained listing representations, average pooled over each listing sequence.

A :class:`FrozenTable` holds one representation (AIR, visual, skip-gram, ...) for the run's listing
vocabulary. Its vectors are a *buffer*, not a parameter: no optimizer can touch them, they get no
gradient, and they are saved inside the model's ``state_dict`` so training and serving read the same
vectors. Listings without a vector (OOV, padding, or absent from the table) are left out of the average.

Two layouts: vectors re-indexed to the vocabulary (V, d2) float32 (the default), or -- for big tables -- the
table's own rows (n, d2), float32 or float16 and typically memory-mapped from a ``vectors.npy``, read
through ``index`` (V,) (vocabulary row -> table row); looked-up rows are cast to float32.

Letters: B batch, M sequence length, V listing vocabulary size, n table rows, P pooled pairs, T tables,
d2 table width.
"""

from __future__ import annotations

import warnings
from typing import cast

import numpy as np
import torch
from torch import nn

from adsformer.layers.pooling import lengths_to_mask


class FrozenTable(nn.Module):
    """vectors (V, d2) float32 aligned to the listing vocabulary and ``present`` (V,) marking real rows; or,
    with ``index`` (V,) (table row per vocabulary row, -1 = none), the table's rows (n, d2) as they are
    (float32 / float16, shared with a memory-mapped array: not copied)."""

    frozen = True  # its buffers never change in training: snapshots and DDP leave them out
    vectors: torch.Tensor
    present: torch.Tensor
    index: torch.Tensor | None

    def __init__(
        self,
        name: str,
        vectors: np.ndarray | torch.Tensor,
        present: np.ndarray | torch.Tensor,
        index: np.ndarray | torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        if index is None:
            self.register_buffer("vectors", torch.as_tensor(vectors, dtype=torch.float32))
            self.register_buffer("index", None)
        else:
            self.register_buffer("vectors", _shared_tensor(vectors))  # (n, d2), its own dtype
            self.register_buffer("index", torch.as_tensor(index, dtype=torch.int64).clamp_min(0))  # (V,)
        self.register_buffer("present", torch.as_tensor(present, dtype=torch.bool))
        self.dim = int(self.vectors.shape[1])

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """ids (B, M), lengths (B,) -> mean of the present vectors (B, d2); zeros where none.

        Only the T real, present ids are looked up (packed), never the padded (B, M, d2) block."""
        keep = lengths_to_mask(lengths, ids.shape[1]) & self.present[ids]  # (B, M)
        counts = keep.sum(dim=1)  # (B,)
        vec = self.lookup(ids[keep])  # (T, d2) row by row
        owner = torch.repeat_interleave(torch.arange(ids.shape[0], device=ids.device), counts)  # (T,)
        total = vec.new_zeros((ids.shape[0], self.dim)).index_add_(0, owner, vec)  # (B, d2)
        return total / counts.clamp_min(1).unsqueeze(1).to(vec.dtype)  # (B, d2)

    def one_user(self, ids: torch.Tensor, length: int) -> torch.Tensor:
        """Mean of the present vectors of one sequence ``ids`` (M,) of ``length`` events -> (d2,)."""
        real = ids[: max(0, min(int(length), ids.shape[0]))]  # (n,)
        real = real[self.present[real]]  # listings without a vector are left out
        if real.numel() == 0:
            return self.vectors.new_zeros(self.dim, dtype=torch.float32)
        return self.lookup(real).sum(0) / real.numel()  # (d2,)

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """Vectors (n, d2) float32 of vocabulary ids (n,), whichever the layout (aligned or indexed)."""
        rows = ids if self.index is None else self.index[ids]
        return self.vectors[rows].float()


def _shared_tensor(array: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A tensor over the same memory (a read-only memory map stays one: nothing is copied or written)."""
    if isinstance(array, torch.Tensor):
        return array
    with warnings.catch_warnings():  # torch warns that the array is read-only; the table is never written
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(array)


class PretrainedComponent(nn.Module):
    """Average-pools every table over every configured listing sequence; output (B, T * P * d2)."""

    def __init__(self, tables: list[FrozenTable], pairs: list[str]) -> None:
        super().__init__()
        if not tables:
            raise ValueError("component 2 is enabled but has no pretrained tables (pretrained.tables)")
        self.tables = nn.ModuleList(tables)
        self.pairs = list(pairs)
        self.out_dim = sum(t.dim for t in tables) * len(self.pairs)

    def forward(self, seq_ids: dict[str, torch.Tensor], seq_len: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = [table(seq_ids[p], seq_len[p]) for table in self.tables for p in self.pairs]
        return torch.cat(parts, dim=1)  # (B, T * P * d2)

    def one_user(self, seq_ids: dict[str, torch.Tensor], seq_len: dict[str, torch.Tensor]) -> torch.Tensor:
        """``forward`` for one user (seq_ids pair -> (1, M), seq_len pair -> (1,)) -> (T * P * d2,)."""
        parts = [
            cast(FrozenTable, table).one_user(seq_ids[p][0], int(seq_len[p][0]))
            for table in self.tables
            for p in self.pairs
        ]
        return torch.cat(parts)
