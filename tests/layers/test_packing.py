"""Packed variable-length positions: the packing round-trips, the groups are the cheap split, and the
packed adSformer block gives the padded block's values and gradients at the real positions."""

from __future__ import annotations

import itertools

import pytest
import torch

from adsformer.layers.attention import AdSformerBlock
from adsformer.layers.packing import Packing, _spans
from adsformer.layers.pooling import lengths_to_mask


def _mask(lengths: list[int], L: int) -> torch.Tensor:
    return lengths_to_mask(torch.tensor(lengths), L)


def test_pack_pad_unpad_round_trip_keeps_every_real_position():
    lengths = [3, 1, 5, 1, 2, 5, 4, 1]
    mask = _mask(lengths, 6)  # (B, L)
    values = (1 + torch.arange(8 * 6, dtype=torch.float32)).view(8, 6, 1) * mask.unsqueeze(-1)  # real: > 0
    packing = Packing.of(mask, groups=3)
    packed = packing.pack(values)  # (T, 1)
    assert packed.shape == (sum(lengths), 1)
    # rows shortest first, each row's positions in order
    order = packing.order.tolist()
    assert [lengths[r] for r in order] == sorted(lengths)
    expected = torch.cat([values[r, : lengths[r], 0] for r in order])
    assert torch.equal(packed[:, 0], expected)
    padded = packing.pad(packed)
    assert len(padded) == len(packing.groups) <= 3
    for part, group in zip(padded, packing.groups, strict=True):
        assert part.shape[:2] == group.mask.shape
        assert torch.equal(part[~group.mask], torch.zeros_like(part[~group.mask]))  # padding reads zeros
        assert group.mask.sum(1).max() == group.mask.shape[1]  # width = the group's longest row
    assert torch.equal(packing.unpad(padded), packed)
    per_row = torch.tensor([float(r) for r in order])  # (B,) in packed order
    assert packing.in_input_order(per_row).tolist() == list(range(8))


def test_groups_split_off_the_few_long_rows_and_respect_the_cap():
    sorted_lengths = torch.tensor([2] * 1000 + [50] * 10)
    assert _spans(sorted_lengths, 32) == [(0, 1000, 2), (1000, 1010, 50)]
    assert _spans(sorted_lengths, 1) == [(0, 1010, 50)]  # one group at most: everything padded to 50
    # many distinct lengths, a cap of 3: never more than 3 groups, every row covered once, widths sorted
    varied = torch.sort(torch.randint(1, 51, (1024,), generator=torch.Generator().manual_seed(0))).values
    spans = _spans(varied, 3)
    assert len(spans) <= 3 and spans[0][0] == 0 and spans[-1][1] == 1024
    assert all(a[1] == b[0] and a[2] < b[2] for a, b in itertools.pairwise(spans))
    assert all(int(varied[end - 1]) == width for _, end, width in spans)
    # two rows never get a group each: a group's fixed cost is more than their padding
    assert len(_spans(torch.tensor([1, 2]), 32)) == 1


def test_packed_block_equals_the_padded_block_with_gradients():
    torch.manual_seed(0)
    block = AdSformerBlock(dim=16, heads=3, head_dim=8)
    B, L = 400, 30
    g = torch.Generator().manual_seed(1)
    lengths = torch.randint(1, 8, (B,), generator=g)
    lengths[:150] = 1  # target-only rows take the one-position path
    lengths[-6:] = L  # a few long rows: a group of their own
    mask = lengths_to_mask(lengths, L)  # (B, L)
    x = torch.randn(B, L, 16, generator=g)
    packing = Packing.of(mask, groups=8)
    assert len(packing.groups) > 2
    real_flat = (torch.arange(B).unsqueeze(1) * L + torch.arange(L))[mask]  # (T,) row-major real slots

    outs, grads = [], []
    for packed_path in (False, True):
        block.zero_grad()
        xin = x.clone().requires_grad_(True)
        if packed_path:
            packed = block.forward_packed(packing.pack(xin), packing)  # (T, D) in packed order
            out = torch.zeros(B * L, 16).index_copy(0, packing.flat, packed)[real_flat]  # (T, D) row-major
        else:
            out = block(xin, mask)[mask]  # (T, D) row-major
        out.square().sum().backward()
        outs.append(out.detach())
        grads.append((xin.grad, block.attn.qkv.weight.grad.clone(), block.ffn[0].weight.grad.clone()))
    assert torch.allclose(outs[0], outs[1], atol=1e-5)
    for padded_grad, packed_grad in zip(*grads, strict=True):
        assert torch.allclose(padded_grad, packed_grad, atol=1e-4, rtol=1e-4)


def test_packing_refuses_no_rows_or_no_groups():
    with pytest.raises(ValueError, match="at least one row"):
        Packing.of(_mask([], 4), groups=2)
    with pytest.raises(ValueError, match="one group"):
        Packing.of(_mask([1, 2], 4), groups=0)


def test_groups_are_the_cheapest_split_within_the_cap_by_brute_force():
    """Against every split at group boundaries where the length changes, on random small batches: the
    chosen split costs no more than the cheapest with at most ``cap`` groups (the cap binding or not)."""
    import random

    from adsformer.layers.packing import GROUP_COST, WIDTH_SCALE

    def cost(spans: list[tuple[int, int, int]]) -> float:
        return sum(GROUP_COST + (b - a) * (w + w * w / WIDTH_SCALE) for a, b, w in spans)

    rng = random.Random(0)
    for _ in range(100):
        K = rng.randint(2, 8)
        widths = sorted(rng.sample(range(1, 52), K))
        counts = [rng.randint(1, 200) for _ in range(K)]
        lengths = torch.tensor([w for w, c in zip(widths, counts, strict=True) for _ in range(c)])
        ends = list(itertools.accumulate(counts))
        cap = rng.choice([1, 2, 3, 100])
        cheapest = float("inf")
        for r in range(min(cap, K)):
            for cuts in itertools.combinations(range(K - 1), r):
                bounds = [0, *(ends[j] for j in cuts), ends[-1]]
                last = [*cuts, K - 1]
                spans = [(a, b, widths[j]) for a, b, j in zip(bounds[:-1], bounds[1:], last, strict=True)]
                cheapest = min(cheapest, cost(spans))
        got = _spans(lengths, cap)
        assert len(got) <= cap and got[0][0] == 0 and got[-1][1] == len(lengths)
        assert cost(got) <= cheapest + 1e-6
