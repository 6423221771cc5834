"""ADPM component 2: frozen pretrained listing representations, average pooled over each listing sequence.

A :class:`FrozenTable` holds one representation (AIR, visual, skip-gram, ...) re-indexed to the run's
listing vocabulary. Its vectors are a *buffer*, not a parameter: no optimizer can touch them, they get no
gradient, and they are saved inside the model's ``state_dict`` so training and serving read the same
vectors. Listings without a vector (OOV, padding, or absent from the table) are left out of the average.

Letters: B batch, M sequence length, V listing vocabulary size, P pooled pairs, T tables, d2 table width.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from adsformer.layers.pooling import lengths_to_mask, masked_mean


class FrozenTable(nn.Module):
    """vectors (V, d2) float32 aligned to the listing vocabulary; ``present`` (V,) marks real rows."""

    vectors: torch.Tensor
    present: torch.Tensor

    def __init__(
        self, name: str, vectors: np.ndarray | torch.Tensor, present: np.ndarray | torch.Tensor
    ) -> None:
        super().__init__()
        self.name = name
        self.register_buffer("vectors", torch.as_tensor(vectors, dtype=torch.float32))
        self.register_buffer("present", torch.as_tensor(present, dtype=torch.bool))
        self.dim = int(self.vectors.shape[1])

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """ids (B, M), lengths (B,) -> mean of the present vectors (B, d2); zeros where none."""
        mask = lengths_to_mask(lengths, ids.shape[1]) & self.present[ids]  # (B, M)
        return masked_mean(self.vectors[ids], mask)  # (B, d2)


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
