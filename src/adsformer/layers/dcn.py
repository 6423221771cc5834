"""Deep & cross network pieces (DCN-v2, Wang et al. 2021): explicit feature crosses plus a deep tower.

Letters: B batch, F input width, r rank of a low-rank cross layer.
"""

from __future__ import annotations

import torch
from torch import nn


class LowRankLinear(nn.Module):
    """``U (V x) + b``: a (F x F) map of rank r as V (F -> r, no bias) then U (r -> F, with bias), DCN-v2's
    low-rank cross layer weight ``W = U V`` (U: F x r, V: r x F)."""

    def __init__(self, dim: int, rank: int) -> None:
        super().__init__()
        self.v = nn.Linear(dim, rank, bias=False)  # weight (r, F)
        self.u = nn.Linear(rank, dim)  # weight (F, r), bias (F,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, F) -> (B, F)."""
        return self.u(self.v(x))


class CrossNetwork(nn.Module):
    """``x_{l+1} = x_0 * (W_l x_l + b_l) + x_l`` for ``layers`` layers (DCN-v2 cross): W_l full rank
    (``nn.Linear``, F x F) when ``rank`` is None or at least F (a product of rank F is any F x F matrix),
    else ``U_l V_l`` of rank ``rank`` (:class:`LowRankLinear`: 2 F r weights instead of F^2, and as many
    multiply-adds per row)."""

    def __init__(self, dim: int, layers: int, rank: int | None = None) -> None:
        super().__init__()
        low = rank if rank is not None and rank < dim else None  # a rank of at least F is no constraint
        self.dim, self.rank = dim, low
        self.layers = nn.ModuleList(
            nn.Linear(dim, dim) if low is None else LowRankLinear(dim, low) for _ in range(layers)
        )

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        """x0 (B, F) -> (B, F)."""
        x = x0
        for layer in self.layers:
            x = x0 * layer(x) + x
        return x

    def read_out(self, x_c: torch.Tensor, s: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """``forward(x0) @ h`` (B,) for a read-out vector h (F,) (a linear head) and rows
        ``x0 = [x_c, broadcast(s)]`` whose last columns s (S,) are the same in every row (one user's
        shared user columns); x_c (B, F_c). Equal to ``forward(x0) @ h`` up to float rounding:

        * the first layer's product with the shared columns is computed once (``W x0 = W_c x_c + W_s s``);
        * the last layer is only read through ``h``, so it folds into it:
          ``h . (x0 * (W x + b) + x) = ((h * x0) W + h) . x + (h * x0) . b``, where ``(h * x0) W`` splits
          into the per-row columns' product ``(h_c * x_c) W_c`` ((B, F_c) x (F_c, F)) and the shared
          columns' ``(h_s * s) W_s``, once: the (F x F) product per row becomes (F_c x F);
        * with exactly two layers (the default), the shared output columns j of both products enter the
          read-out only as ``sum_j s_j (g_j)(a_j + 1)``, a quadratic form in x_c: its (F_c x F_c) matrix is
          built once per call, and no row ever touches the shared columns (see :func:`_two_layer_read_out`).

        Middle layers run as in ``forward``. Low-rank layers (``rank`` set) take
        :meth:`_low_rank_read_out` instead."""
        B, S = x_c.shape[0], s.shape[0]
        if not len(self.layers) or B == 0:
            return torch.cat([x_c, s.expand(B, -1)], dim=1) @ h  # (B,)
        if self.rank is not None:
            return self._low_rank_read_out(x_c, s, h)
        layers = [layer for layer in self.layers if isinstance(layer, nn.Linear)]  # all of them
        if len(layers) == 2 and S and B >= _QUADRATIC_MIN_ROWS:
            return _two_layer_read_out(layers[0], layers[1], x_c, s, h)
        n_c = x_c.shape[1]
        x0 = torch.cat([x_c, s.expand(B, -1)], dim=1)  # (B, F)
        x = x0
        if len(layers) > 1:
            x = x0 * _split_linear(layers[0], x_c, s) + x0  # (B, F)
        for layer in layers[1:-1]:
            x = x0 * layer(x) + x
        w, b = layers[-1].weight, layers[-1].bias  # (F, F): rows pair with x0's columns
        hx_c, hs = h[:n_c] * x_c, h[n_c:] * s  # (B, F_c), (S,)
        g = torch.addmm(hs @ w[n_c:] + h, hx_c, w[:n_c])  # (B, F)
        return (g * x).sum(1) + hx_c @ b[:n_c] + hs @ b[n_c:]  # (B,)

    def _low_rank_read_out(self, x_c: torch.Tensor, s: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """:meth:`read_out` (B,) for low-rank layers: x_c (B, F_c), s (S,), h (F,). With exactly two layers
        (the default) and shared columns, :func:`_two_low_rank_read_out`: no row touches the shared columns.
        Otherwise the first layer's ``V x0 = V_c x_c + V_s s`` multiplies the shared columns once and the
        remaining layers run as in ``forward``."""
        layers = [layer for layer in self.layers if isinstance(layer, LowRankLinear)]  # all of them
        B = x_c.shape[0]
        if len(layers) == 2 and s.shape[0] and B >= _LOW_RANK_FOLD_MIN_ROWS:
            return _two_low_rank_read_out(layers[0], layers[1], x_c, s, h)
        x0 = torch.cat([x_c, s.expand(B, -1)], dim=1)  # (B, F)
        first = layers[0]
        x = x0 * first.u(_split_linear(first.v, x_c, s)) + x0  # (B, F)
        for layer in layers[1:]:
            x = x0 * layer(x) + x
        return x @ h  # (B,)


#: Below this many rows the two low-rank layers' per-request terms (an (r x S) x (S x r) product above all)
#: cost more than reading the shared columns per row.
_LOW_RANK_FOLD_MIN_ROWS = 32


def _two_low_rank_read_out(
    first: LowRankLinear, last: LowRankLinear, x_c: torch.Tensor, s: torch.Tensor, h: torch.Tensor
) -> torch.Tensor:
    """``h . cross(x0)`` (B,) for two low-rank cross layers, x0 = [x_c (B, F_c), broadcast(s (S,))].

    With ``z1 = V1 x0``, ``x1 = x0 * (U1 z1 + b1 + 1)``, ``z2 = V2 x1`` and the last layer read through h,
    ``h . x2 = z2 . ((h * x0) U2) + (h * x0) . b2 + h . x1``. Split the columns into per-row (C) and shared
    (S): ``x1_S = s * (U1_S z1 + b1_S + 1)`` is affine in z1, so ``V2_S x1_S = M z1 + c2`` with the (r x r)
    ``M = V2_S diag(s) U1_S``; ``(h * x0) U2`` = ``(h_C * x_c) U2_C`` + a constant; ``h_S . x1_S`` = ``w . z1``
    + a constant. Per row: four (F_c x r) products and one (r x r), nothing S wide (S is most of F: the
    user's shared columns)."""
    n_c = x_c.shape[1]
    v1, u1, b1 = first.v.weight, first.u.weight, first.u.bias  # (r, F), (F, r), (F,)
    v2, u2, b2 = last.v.weight, last.u.weight, last.u.bias
    h_c, hs = h[:n_c], h[n_c:] * s  # (F_c,), (S,)
    u1_s = u1[n_c:]  # (S, r)
    # per request: the shared columns' terms
    c1 = v1[:, n_c:] @ s  # (r,)
    m = (u1_s * s[:, None]).t() @ v2[:, n_c:].t()  # (r, r): z1 -> V2_S x1_S
    c2 = v2[:, n_c:] @ (s * (b1[n_c:] + 1))  # (r,)
    c3 = hs @ u2[n_c:]  # (r,)
    w = hs @ u1_s  # (r,)
    const = hs @ b2[n_c:] + hs @ (b1[n_c:] + 1)
    # per row
    z1 = torch.addmm(c1, x_c, v1[:, :n_c].t())  # (B, r)
    x1_c = x_c * torch.addmm(b1[:n_c] + 1, z1, u1[:n_c].t())  # (B, F_c)
    z2 = torch.addmm(c2, x1_c, v2[:, :n_c].t()).addmm_(z1, m)  # (B, r)
    hx_c = h_c * x_c  # (B, F_c)
    g = torch.addmm(c3, hx_c, u2[:n_c])  # (B, r)
    return (z2 * g).sum(1) + hx_c @ b2[:n_c] + x1_c @ h_c + z1 @ w + const  # (B,)


#: Below this many rows the quadratic form's (F_c x S) x (S x F_c) matrix costs more than it saves.
_QUADRATIC_MIN_ROWS = 128


def _two_layer_read_out(
    first: nn.Linear, last: nn.Linear, x_c: torch.Tensor, s: torch.Tensor, h: torch.Tensor
) -> torch.Tensor:
    """``h . cross(x0)`` (B,) for two cross layers, x0 = [x_c (B, F_c), broadcast(s (S,))].

    With ``a = W1 x0 + b1`` and ``x1 = x0 * (a + 1)``, the folded last layer reads
    ``sum_j g_j x1_j + (h * x0) . b2`` where ``g = (h * x0) W2 + h``. Split the columns j into per-row (C)
    and shared (S): for j in C everything is per row, (B, F_c) wide; for j in S, ``x0_j = s_j`` and
    ``g_j``, ``a_j`` are affine in x_c: ``g_j = (h_c * x_c) W2[C, j] + gamma_j``, ``a_j + 1 = W1[j, C] x_c +
    alpha_j``, so ``sum_{j in S} s_j g_j (a_j + 1)`` = ``x_c' Q x_c`` + linear + constant with
    ``Q = diag(h_c) W2[C, S] diag(s) W1[S, C]`` (F_c x F_c), built once."""
    n_c = x_c.shape[1]
    w1, b1, w2, b2 = first.weight, first.bias, last.weight, last.bias  # (F, F) each, rows = outputs / inputs
    h_c, h_s = h[:n_c], h[n_c:]
    hs = h_s * s  # (S,)
    alpha = w1[:, n_c:] @ s + b1 + 1  # (F,) a + 1 without the x_c part
    gamma = hs @ w2[n_c:] + h  # (F,) g without the x_c part
    hx_c = h_c * x_c  # (B, F_c)
    # per-row output columns C
    a_c = torch.addmm(alpha[:n_c], x_c, w1[:n_c, :n_c].t())  # (B, F_c) = a_C + 1
    g_c = torch.addmm(gamma[:n_c], hx_c, w2[:n_c, :n_c])  # (B, F_c)
    per_row = (g_c * x_c * a_c).sum(1)  # (B,)
    # shared output columns S: sum_j s_j (hx_c W2[C, j] + gamma_j)(W1[j, C] x_c + alpha_j)
    w2_s, w1_s = w2[:n_c, n_c:], w1[n_c:, :n_c]  # (F_c, S), (S, F_c)
    q = (w2_s * s) @ w1_s  # (F_c, F_c): hx_c Q x_c'
    a_s, g_s = alpha[n_c:], gamma[n_c:]  # (S,)
    lin_hx = w2_s @ (s * a_s)  # (F_c,) coefficient of hx_c
    lin_x = (s * g_s) @ w1_s  # (F_c,) coefficient of x_c
    quad = ((hx_c @ q) * x_c).sum(1)  # (B,)
    const = (s * g_s * a_s).sum() + hs @ b2[n_c:]
    return per_row + quad + hx_c @ (lin_hx + b2[:n_c]) + x_c @ lin_x + const  # (B,)


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

    def forward_shared(self, x_c: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """``forward(concat(x_c, broadcast(s)))`` (B, hidden[-1]) for rows x_c (B, F_c) that share their last
        columns s (S,) (one user's shared user columns): the first layer multiplies s once."""
        first = self.net[0] if len(self.net) else None
        if not isinstance(first, nn.Linear) or x_c.shape[0] == 0:
            return self.net(torch.cat([x_c, s.expand(x_c.shape[0], -1)], dim=1))
        h = _split_linear(first, x_c, s)  # (B, hidden[0])
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
