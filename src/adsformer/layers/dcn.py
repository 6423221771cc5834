"""Deep & cross network pieces (DCN-v2, Wang et al. 2021): explicit feature crosses plus a deep tower.

Letters: B batch, F input width.
"""

from __future__ import annotations

import torch
from torch import nn


class CrossNetwork(nn.Module):
    """``x_{l+1} = x_0 * (W_l x_l + b_l) + x_l`` for ``layers`` layers (full-rank DCN-v2 cross)."""

    def __init__(self, dim: int, layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(dim, dim) for _ in range(layers))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        """x0 (B, F) -> (B, F)."""
        x = x0
        for layer in self.layers:
            x = x0 * layer(x) + x
        return x


class DeepTower(nn.Module):
    """Linear -> batch norm -> ReLU -> dropout, for each hidden width."""

    def __init__(self, dim: int, hidden: tuple[int, ...], dropout: float = 0.0) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        for width in hidden:
            blocks += [nn.Linear(dim, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Dropout(dropout)]
            dim = width
        self.net = nn.Sequential(*blocks)
        self.out_dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, F) -> (B, hidden[-1])."""
        return self.net(x)
