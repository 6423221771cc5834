"""The cross network's and deep tower's one-user forms equal their plain forward on rows that share their
last columns (the user's shared columns), for every layer count, either read-out path and low-rank layers."""

from __future__ import annotations

import pytest
import torch

from adsformer.layers import dcn
from adsformer.layers.dcn import CrossNetwork, DeepTower


def _rows(B: int, F_c: int, S: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(B * 7 + F_c + S)
    x_c, s = torch.randn(B, F_c, generator=g), torch.randn(S, generator=g)
    return x_c, s, torch.cat([x_c, s.expand(B, -1)], dim=1)


@pytest.mark.parametrize("layers", [0, 1, 2, 3])
@pytest.mark.parametrize(
    "fold_from", [1, 10_000]
)  # the two-layer folds (quadratic form, low rank) on and off
@pytest.mark.parametrize("S", [0, 9])
@pytest.mark.parametrize("rank", [None, 4])  # full-rank and low-rank layers
def test_cross_read_out_equals_forward_then_head(monkeypatch, layers, fold_from, S, rank):
    monkeypatch.setattr(dcn, "_QUADRATIC_MIN_ROWS", fold_from)
    monkeypatch.setattr(dcn, "_LOW_RANK_FOLD_MIN_ROWS", fold_from)
    torch.manual_seed(layers)
    cross = CrossNetwork(13 + S, layers, rank)
    h = torch.randn(13 + S)
    x_c, s, x0 = _rows(50, 13, S)
    with torch.no_grad():
        got, ref = cross.read_out(x_c, s, h), cross(x0) @ h
    assert got.shape == (50,) and ref.std() > 0.1
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-4)


def test_deep_tower_shared_columns_once():
    torch.manual_seed(0)
    deep = DeepTower(20, (16, 8), dropout=0.3).eval()
    x_c, s, x0 = _rows(40, 12, 8)
    with torch.no_grad():
        torch.testing.assert_close(deep.forward_shared(x_c, s), deep(x0), rtol=1e-5, atol=1e-5)
        empty = DeepTower(20, ()).eval()
        torch.testing.assert_close(empty.forward_shared(x_c, s), x0)
