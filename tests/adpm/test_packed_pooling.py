"""The speed-ups keep the values: packed pooling (components 2 and 3), merged length groups, the
one-position attention shortcut -- each against the plain padded computation."""

from __future__ import annotations

import torch

from adsformer.adpm import encoder as encoder_module
from adsformer.adpm.config import EncoderConfig
from adsformer.adpm.encoder import AdSformerEncoder
from adsformer.adpm.learned import LearnedComponent
from adsformer.adpm.pretrained import FrozenTable
from adsformer.layers.attention import MultiHeadSelfAttention
from adsformer.layers.pooling import lengths_to_mask, masked_mean


def _batch(B: int, M: int, V: int, empty: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, M + 1, (B,), generator=g) * (torch.rand(B, generator=g) > empty)
    ids = torch.randint(1, V, (B, M), generator=g) * lengths_to_mask(lengths, M)
    return ids, lengths


def test_learned_component_equals_masked_mean_with_gradients():
    torch.manual_seed(0)
    comp = LearnedComponent(
        ["listing:view", "shop:view"], {"listing": 300, "shop": 40}, {"listing": 8, "shop": 4}
    )
    seq_ids, seq_len = {}, {}
    for i, pair in enumerate(comp.pairs):
        seq_ids[pair], seq_len[pair] = _batch(64, 12, 40, empty=0.5, seed=i)
    out = comp(seq_ids, seq_len)
    ref = torch.cat(
        [
            masked_mean(comp.tables[p](seq_ids[p]), lengths_to_mask(seq_len[p], seq_ids[p].shape[1]))
            for p in comp.pairs
        ],
        dim=1,
    )
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)
    assert (out[seq_len["listing:view"] == 0, :8] == 0).all()  # empty sequences pool to zeros
    weights = torch.randn_like(out)
    (g_out,) = torch.autograd.grad((out * weights).sum(), comp.tables["listing:view"].weight)
    (g_ref,) = torch.autograd.grad((ref * weights).sum(), comp.tables["listing:view"].weight)
    torch.testing.assert_close(g_out, g_ref, atol=1e-6, rtol=0)


def test_frozen_table_packed_mean_skips_absent_rows():
    vectors = torch.randn(50, 6)
    present = torch.rand(50) > 0.3
    present[0] = False
    table = FrozenTable("t", vectors * present[:, None], present)
    ids, lengths = _batch(40, 9, 50, empty=0.4)
    mask = lengths_to_mask(lengths, 9) & present[ids]
    torch.testing.assert_close(table(ids, lengths), masked_mean(table.vectors[ids], mask), atol=1e-6, rtol=0)


def test_merged_length_groups_equal_one_padded_block(monkeypatch):
    monkeypatch.setattr(
        encoder_module, "ROWS_PER_GROUP", 1
    )  # up to 8 groups (the default floor is 32 rows a group)
    torch.manual_seed(0)
    enc = AdSformerEncoder(EncoderConfig(dim=16, heads=3, head_dim=8, length_groups=8), 100)
    ids, lengths = _batch(200, 15, 100, empty=0.6)  # many empty sequences: several width-0 groups merge
    target = torch.randint(1, 100, (200,))
    torch.testing.assert_close(enc(target, ids, lengths), enc.pooled(target, ids, lengths), atol=1e-5, rtol=0)


def test_one_position_attention_shortcut_is_exact():
    torch.manual_seed(0)
    attn = MultiHeadSelfAttention(16, 3, 8)
    x = torch.randn(10, 1, 16)
    mask = torch.ones(10, 1, dtype=torch.bool)
    q, k, v = attn.qkv(x).split(24, dim=-1)
    shape = (10, 1, 3, 8)
    full = torch.nn.functional.scaled_dot_product_attention(
        *(t.view(shape).transpose(1, 2) for t in (q, k, v)), attn_mask=mask[:, None, None, :]
    )
    assert torch.equal(attn(x, mask), attn.proj(full.transpose(1, 2).reshape(10, 1, 24)))
