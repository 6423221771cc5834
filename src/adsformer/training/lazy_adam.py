"""Lazy Adam for id tables: :class:`LazyAdam`, ``torch.optim.SparseAdam``'s update with plain row operations.

An id table's sparse gradient touches a few rows; lazy Adam updates the moments and weights of those rows
only. ``SparseAdam`` expresses each step as sparse-tensor arithmetic (``sparse_mask`` twice and three sparse
additions, each re-sorting indices), which costs more than the arithmetic itself on small batches with many
tables. :class:`LazyAdam` coalesces the gradient once and works on the touched rows directly
(``index_select`` / ``index_copy_`` / ``index_add_``), with the same formula in the same order:

    m_r += (1 - b1) (g_r - m_r);  v_r += (1 - b2) (g_r^2 - v_r);  w_r -= lr sqrt(1 - b2^t) / (1 - b1^t) m_r / (sqrt(v_r) + eps)

where ``t`` counts the steps that found a gradient (empty ones included, as ``SparseAdam`` counts them).

Letters: V table rows, d width, n touched rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch


class LazyAdam(torch.optim.Optimizer):
    """Adam over sparse gradients, touched rows only (see the module docstring); no weight decay."""

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        if not lr > 0 or not eps > 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"LazyAdam needs lr > 0, eps > 0 and betas in [0, 1), got {lr}, {eps}, {betas}")
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, group)
        return loss

    def _update(self, p: torch.Tensor, group: dict) -> None:
        """One lazy Adam step of table p (V, d) from its sparse gradient."""
        grad = p.grad
        assert grad is not None
        if not grad.is_sparse:
            raise RuntimeError(
                "LazyAdam takes sparse gradients (nn.Embedding(sparse=True)); use Adam otherwise"
            )
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["step"] += 1
        grad = grad.coalesce()
        rows, values = grad.indices()[0], grad.values()  # (n,), (n, d)
        if values.numel() == 0:
            return
        beta1, beta2 = group["betas"]
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        m_old = exp_avg.index_select(0, rows)  # (n, d)
        m = (values - m_old).mul_(1 - beta1).add_(m_old)
        v_old = exp_avg_sq.index_select(0, rows)
        v = values.pow(2).sub_(v_old).mul_(1 - beta2).add_(v_old)
        exp_avg.index_copy_(0, rows, m)
        exp_avg_sq.index_copy_(0, rows, v)
        t = state["step"]
        step_size = group["lr"] * math.sqrt(1 - beta2**t) / (1 - beta1**t)
        p.index_add_(0, rows, m.div_(v.sqrt_().add_(group["eps"])).mul_(-step_size))
