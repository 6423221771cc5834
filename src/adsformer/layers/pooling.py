"""Masked pooling over a padded sequence axis.

Letters: B batch, L sequence positions, D features. ``mask`` is True at real (unpadded) positions.
A row with no real position pools to zeros, never to ``-inf`` or NaN: empty sequences are the common case.
"""

from __future__ import annotations

import torch


def masked_max(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max over the real positions: x (B, L, D), mask (B, L) bool -> (B, D); all-padding rows -> 0."""
    neg = torch.finfo(x.dtype).min
    filled = x.masked_fill(~mask.unsqueeze(-1), neg)  # (B, L, D)
    pooled = filled.max(dim=1).values  # (B, D)
    return pooled.masked_fill(~mask.any(dim=1, keepdim=True), 0.0)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the real positions: x (B, L, D), mask (B, L) bool -> (B, D); all-padding rows -> 0."""
    weights = mask.to(x.dtype).unsqueeze(-1)  # (B, L, 1)
    total = (x * weights).sum(dim=1)  # (B, D)
    count = weights.sum(dim=1).clamp_min(1.0)  # (B, 1)
    return total / count


def lengths_to_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """lengths (B,) -> mask (B, max_len), True at positions < length."""
    positions = torch.arange(max_len, device=lengths.device)
    return positions.unsqueeze(0) < lengths.unsqueeze(1)
