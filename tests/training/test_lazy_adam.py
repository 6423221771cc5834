"""LazyAdam is torch's SparseAdam, step for step, on id tables (touched rows only; repeated ids summed)."""

from __future__ import annotations

import pytest
import torch

from adsformer.training.lazy_adam import LazyAdam


def _tables(seed: int) -> list[torch.nn.Embedding]:
    torch.manual_seed(seed)
    return [torch.nn.Embedding(50, 8, sparse=True, padding_idx=0), torch.nn.Embedding(7, 3, sparse=True)]


@pytest.mark.parametrize("lr", [0.002, 0.5])
def test_lazy_adam_matches_sparse_adam(lr):
    ours, ref = _tables(0), _tables(0)
    opt_ours = LazyAdam([t.weight for t in ours], lr=lr)
    opt_ref = torch.optim.SparseAdam([t.weight for t in ref], lr=lr)
    g = torch.Generator().manual_seed(1)
    for step in range(12):
        ids = torch.randint(0, 50, (30,), generator=g)  # repeated ids: their gradients add up
        small = torch.randint(0, 7, (0 if step == 4 else 5,), generator=g)  # an empty step too
        target = torch.randn(30, 8, generator=g)
        for tables, opt in ((ours, opt_ours), (ref, opt_ref)):
            opt.zero_grad()
            loss = ((tables[0](ids) - target) ** 2).sum() + tables[1](small).sum()
            loss.backward()
            opt.step()
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a.weight, b.weight, rtol=1e-6, atol=1e-7)
        assert not torch.equal(
            a.weight, _tables(0)[0].weight if a.weight.shape[0] == 50 else _tables(0)[1].weight
        )
    assert opt_ours.state[ours[1].weight]["step"] == 12  # empty gradients count as steps, as SparseAdam does


def test_dense_gradients_are_refused():
    w = torch.nn.Parameter(torch.ones(3, 2))
    (w * 2).sum().backward()
    with pytest.raises(RuntimeError, match="sparse"):
        LazyAdam([w]).step()
