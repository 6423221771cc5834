"""Shallow position-bias tower (paper section 5.3; the "shallow tower" of Zhao et al. 2019, the paper's [61]).

Clicks depend on where an ad was shown as well as on what it is. The tower sees only the display position
and, where the data has them, context fields that change how position matters (the device: a phone shows
fewer ads above the fold). Its logit is added to the main model's logit in training, so the main model is
not asked to explain position effects with listing features; at serving the tower is dropped and the score
estimates relevance as if every ad were shown in the same place.

Letters: B batch, E tower embedding width, C context fields.
"""

from __future__ import annotations

import torch
from torch import nn


class PositionTower(nn.Module):
    """logit (B,) = mlp(concat(emb(position), emb(context_1), ..., emb(context_C))).

    ``hidden = 0`` makes the tower linear: one additive bias per position and per context value. ``hidden > 0``
    adds one ReLU layer, so the position curve may differ by context. The output layer starts at zero: the
    tower contributes nothing until the data asks for it. ``dropout`` hides the position of that share of
    training rows (they use the "unknown" slot 0), as the shallow tower of Zhao et al. does. ``lr_scale``
    asks the optimizer for a larger learning rate: a few parameters, updated by every row.
    """

    def __init__(
        self,
        max_position: int,
        context_vocab: dict[str, int],
        *,
        dim: int = 8,
        hidden: int = 16,
        dropout: float = 0.0,
        lr_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if max_position < 1:
            raise ValueError(f"max_position must be >= 1, got {max_position}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"position dropout must be in [0, 1), got {dropout}")
        self.max_position = max_position
        self.dropout = dropout
        self.lr_scale = lr_scale  # read by the optimizer: the tower may learn faster than the main model
        self.position_emb = nn.Embedding(max_position + 1, dim)  # row 0: unknown position
        self.context_emb = nn.ModuleDict({name: nn.Embedding(n, dim) for name, n in context_vocab.items()})
        width = dim * (1 + len(context_vocab))
        layers: list[nn.Module] = [nn.Linear(width, hidden), nn.ReLU()] if hidden > 0 else []
        self.out = nn.Linear(hidden if hidden > 0 else width, 1)
        self.mlp = nn.Sequential(*layers, self.out)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    @property
    def context(self) -> list[str]:
        return list(self.context_emb)

    def forward(self, position: torch.Tensor, categorical: dict[str, torch.Tensor]) -> torch.Tensor:
        """position (B,) int64 (1 = top, 0 = unknown; beyond ``max_position`` shares the last slot),
        categorical: field -> (B,) indices (the tower reads its context fields) -> logit (B,)."""
        p = position.clamp(0, self.max_position)
        if self.training and self.dropout > 0:
            hide = torch.rand(p.shape, device=p.device) < self.dropout
            p = torch.where(hide, torch.zeros_like(p), p)
        parts = [self.position_emb(p)] + [emb(categorical[name]) for name, emb in self.context_emb.items()]
        return self.mlp(torch.cat(parts, dim=1)).squeeze(1)  # (B, E * (1 + C)) -> (B,)
