import torch
from torch import nn

from adsformer.layers.attention import AdSformerBlock, MultiHeadSelfAttention
from adsformer.layers.dcn import CrossNetwork, DeepTower
from adsformer.layers.pooling import lengths_to_mask, masked_max, masked_mean


def test_masked_pooling_ignores_padding_and_empty_rows_are_zero():
    x = torch.tensor([[[1.0, -5.0], [3.0, 2.0], [100.0, 100.0]], [[7.0, 7.0], [8.0, 8.0], [9.0, 9.0]]])
    mask = torch.tensor([[True, True, False], [False, False, False]])
    assert masked_max(x, mask).tolist() == [[3.0, 2.0], [0.0, 0.0]]
    assert masked_mean(x, mask).tolist() == [[2.0, -1.5], [0.0, 0.0]]


def test_lengths_to_mask():
    assert lengths_to_mask(torch.tensor([0, 2, 3]), 3).tolist() == [
        [False, False, False],
        [True, True, False],
        [True, True, True],
    ]


def test_attention_real_positions_ignore_padded_values():
    torch.manual_seed(0)
    attn = MultiHeadSelfAttention(dim=8, heads=3, head_dim=4).eval()
    x = torch.randn(2, 5, 8)
    mask = torch.tensor([[True, True, True, False, False], [True, False, False, False, False]])
    y1 = attn(x, mask)
    x2 = x.clone()
    x2[~mask] = torch.randn(int((~mask).sum()), 8) * 50
    y2 = attn(x2, mask)
    assert torch.allclose(y1[mask], y2[mask], atol=1e-6)
    assert torch.isfinite(y2).all()


def test_block_shapes_and_finite_with_single_real_position():
    block = AdSformerBlock(dim=32, heads=3, head_dim=32, dropout=0.1).eval()
    x = torch.randn(4, 11, 32)
    mask = torch.zeros(4, 11, dtype=torch.bool)
    mask[:, 0] = True
    y = block(x, mask)
    assert y.shape == (4, 11, 32) and torch.isfinite(y).all()


def test_cross_network_is_dcn_v2_formula():
    torch.manual_seed(0)
    net = CrossNetwork(dim=3, layers=1)
    x0 = torch.randn(2, 3)
    layer = net.layers[0]
    assert torch.allclose(net(x0), x0 * layer(x0) + x0)
    tower = DeepTower(3, (8, 4))
    assert tower(torch.randn(5, 3)).shape == (5, 4) and tower.out_dim == 4


def test_low_rank_cross_layer_is_u_v_of_rank_r():
    """``cross_rank`` r: each layer's weight is U V (F x r times r x F) with U's bias, 2 F r + F parameters."""
    torch.manual_seed(0)
    net = CrossNetwork(dim=10, layers=2, rank=3)
    x0 = torch.randn(6, 10)
    x = x0
    for layer in net.layers:
        w = layer.u.weight @ layer.v.weight  # (F, F) of rank 3
        assert torch.linalg.matrix_rank(w) == 3 and layer.v.bias is None
        x = x0 * (x @ w.t() + layer.u.bias) + x
    torch.testing.assert_close(net(x0), x)
    assert sum(p.numel() for p in net.parameters()) == 2 * (2 * 10 * 3 + 10)


def test_a_rank_of_at_least_the_width_is_full_rank():
    """A rank-F product U V is any F x F matrix: at r >= F the layers are plain full-rank linear maps
    (fewer parameters and multiply-adds than U and V), and ``rank`` reads None."""
    for rank in (10, 64):
        net = CrossNetwork(dim=10, layers=2, rank=rank)
        assert net.rank is None and all(isinstance(layer, nn.Linear) for layer in net.layers)
    assert CrossNetwork(dim=10, layers=2, rank=9).rank == 9
