"""ADPM component 4 (beyond the paper): target-aware touch signals.

For each configured (entity, action) sequence, how often and how recently the user touched the target's
listing / shop / taxonomy / ``c_*`` attribute (or, for query sequences, searched the request's query). The
raw signals ``[count, age_s]`` are computed from raw ids by :func:`adsformer.data.touch.touch_signals`,
once, for training and serving alike; this module turns them into the user vector's columns:

* ``log1p(count)``;
* ``never``: 1 when the target was not touched in the window;
* recency ``log1p(age_s) / log1p(window_s)`` in [0, 1], 1 when untouched (as far as possible).

No parameters: the ranker's cross and deep layers learn what to make of them. An ablation switches the
component off (``model.adpm.touch.enabled=false``) and the paper's three components mean what they meant.

Letters: B batch, P_all pairs of the batch's touch block (the data's pairs, in order), P pairs used.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class TouchComponent(nn.Module):
    """Raw touch signals (B, P_all, 2) -> features (B, 3 P) of the configured pairs."""

    def __init__(self, pairs: list[str], all_pairs: list[str], window_s: int) -> None:
        super().__init__()
        if not pairs:
            raise ValueError("the touch component is enabled but no (entity, action) pair is configured")
        self.pairs = list(pairs)
        self.columns: torch.Tensor
        self.register_buffer("columns", torch.tensor([all_pairs.index(p) for p in pairs], dtype=torch.long))
        self.log_window = math.log1p(max(int(window_s), 1))
        self.out_dim = 3 * len(pairs)

    def forward(self, touch: torch.Tensor) -> torch.Tensor:
        """touch (B, P_all, 2) raw ``[count, age_s]`` -> (B, 3 P)."""
        raw = touch.index_select(1, self.columns)  # (B, P, 2)
        count, age = raw[..., 0], raw[..., 1]  # (B, P)
        never = (count <= 0).to(raw.dtype)  # (B, P)
        recency = torch.where(never > 0, 1.0, torch.log1p(age.clamp_min(0)) / self.log_window).clamp(0, 1)
        return torch.stack([torch.log1p(count), never, recency], dim=2).flatten(1)  # (B, 3 P)
