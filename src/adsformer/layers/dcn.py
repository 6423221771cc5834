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

    def read_out(self, x0: torch.Tensor, h: torch.Tensor, shared: int = 0) -> torch.Tensor:
        """``forward(x0) @ h`` (B,) for a read-out vector h (F,) (a linear head), where the last ``shared``
        columns of x0 (B, F) are the same in every row (one user's shared user columns):

        * the first layer's product with the shared columns is computed once (``W x0 = W_c x_c + W_s s``);
        * the last layer is only read through ``h``, so it folds into it:
          ``h . (x0 * (W x + b) + x) = ((h * x0) W + h) . x + (h * x0) . b``, where ``(h * x0) W`` splits
          into the per-row columns' product ``(h_c * x_c) W_c`` ((B, F_c) x (F_c, F)) and the shared
          columns' ``(h_s * s) W_s``, once: the (F x F) product per row becomes (F_c x F).

        Middle layers run as in ``forward``. Equal to ``forward(x0) @ h`` up to float rounding."""
        layers = [layer for layer in self.layers if isinstance(layer, nn.Linear)]  # all of them
        if not layers or x0.shape[0] == 0:
            return x0 @ h  # (B,)
        n_c = x0.shape[1] - shared
        x_c, s = x0[:, :n_c], x0[0, n_c:]  # (B, F_c), (S,)
        x = x0
        if len(layers) > 1:
            x = x0 * _split_linear(layers[0], x_c, s) + x0  # (B, F)
        for layer in layers[1:-1]:
            x = x0 * layer(x) + x
        w, b = layers[-1].weight, layers[-1].bias  # (F, F): rows pair with x0's columns
        hx_c, hs = h[:n_c] * x_c, h[n_c:] * s  # (B, F_c), (S,)
        g = torch.addmm(hs @ w[n_c:] + h, hx_c, w[:n_c])  # (B, F)
        return (g * x).sum(1) + hx_c @ b[:n_c] + hs @ b[n_c:]  # (B,)


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

    def forward(self, x: torch.Tensor, shared: int = 0) -> torch.Tensor:
        """x (B, F) -> (B, hidden[-1]). ``shared``: the last columns of x that are the same in every row (one
        user's shared user columns): the first layer multiplies them once (``W x = W_c x_c + W_s s``)."""
        first = self.net[0] if len(self.net) else None
        if not shared or not isinstance(first, nn.Linear) or x.shape[0] == 0:
            return self.net(x)
        n_c = x.shape[1] - shared
        h = _split_linear(first, x[:, :n_c], x[0, n_c:])  # (B, hidden[0])
        for module in list(self.net)[1:]:
            h = module(h)
        return h


def _split_linear(linear: nn.Linear, x_c: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """``linear([x_c, broadcast(s)])`` as ``x_c W_c^T + (W_s s + b)``: x_c (B, F_c), s (S,) -> (B, out)."""
    w = linear.weight  # (out, F_c + S)
    n_c = x_c.shape[1]
    bias = w[:, n_c:] @ s  # (out,)
    if linear.bias is not None:
        bias = bias + linear.bias
    return torch.addmm(bias, x_c, w[:, :n_c].t())
