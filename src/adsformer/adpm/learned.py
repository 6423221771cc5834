"""ADPM component 3: representations learned on the fly, one embedding table per (entity, action) pair,
average pooled over the sequence and concatenated.

Letters: B batch, M sequence length, P pairs, d_e the width of entity e.
"""

from __future__ import annotations

import torch
from torch import nn

from adsformer.layers.pooling import lengths_to_mask, masked_mean


class LearnedComponent(nn.Module):
    """``tables[pair]`` is an ``nn.Embedding(vocab_size(entity), d_entity)``; output (B, sum of d)."""

    def __init__(self, pairs: list[str], vocab_sizes: dict[str, int], dims: dict[str, int]) -> None:
        super().__init__()
        if not pairs:
            raise ValueError("component 3 is enabled but no (entity, action) pair is configured")
        self.pairs = list(pairs)
        self.tables = nn.ModuleDict()
        for pair in self.pairs:
            entity = pair.split(":", 1)[0]
            self.tables[_key(pair)] = nn.Embedding(vocab_sizes[entity], dims[entity], padding_idx=0)
        self.out_dim = sum(dims[p.split(":", 1)[0]] for p in self.pairs)

    def forward(self, seq_ids: dict[str, torch.Tensor], seq_len: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = []
        for pair in self.pairs:
            ids, lengths = seq_ids[pair], seq_len[pair]  # (B, M), (B,)
            mask = lengths_to_mask(lengths, ids.shape[1])  # (B, M)
            parts.append(masked_mean(self.tables[_key(pair)](ids), mask))  # (B, d_e)
        return torch.cat(parts, dim=1)  # (B, sum d_e)


def _key(pair: str) -> str:
    """ModuleDict keys may not contain '.'; pair names are 'entity:action'."""
    return pair.replace(".", "_")
