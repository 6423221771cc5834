"""ADPM: shapes, masking, target at position 0, frozen tables, golden values."""

import numpy as np
import pytest
import torch

from adsformer.adpm import ADPM, ADPMConfig, EncoderConfig, LearnedConfig, PretrainedConfig, TouchConfig
from adsformer.adpm import encoder as encoder_module
from adsformer.adpm.encoder import AdSformerEncoder
from adsformer.adpm.pretrained import FrozenTable
from adsformer.data.inputs import ModelInputs

PAIRS = ["listing:view", "listing:favorite", "shop:view", "query:search"]
SIZES = {"listing": 20, "shop": 6, "taxonomy": 4, "query": 5}


def _inputs(B=4, M=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = {p: torch.randint(0, M + 1, (B,), generator=g) for p in PAIRS}
    lengths["listing:view"][0] = 0  # an empty sequence
    ids = {}
    for p in PAIRS:
        vocab = SIZES[p.split(":")[0]]
        raw = torch.randint(2, vocab, (B, M), generator=g)
        mask = torch.arange(M)[None, :] < lengths[p][:, None]
        ids[p] = torch.where(mask, raw, torch.zeros_like(raw))
    target = torch.randint(2, SIZES["listing"], (B,), generator=g)
    return target, ids, lengths


def _u(m, target, ids, lengths):
    """The user vector of ADPM ``m`` for these rows (the model's inputs: the target listing, sequences)."""
    B = target.shape[0]
    return m(ModelInputs({"listing": target}, {}, torch.zeros(B, 0), ids, lengths))


def _table(d=3):
    rng = np.random.default_rng(0)
    present = np.ones(SIZES["listing"], bool)
    present[:2] = False  # padding and OOV rows have no vector
    return FrozenTable("air", rng.normal(size=(SIZES["listing"], d)).astype(np.float32), present)


NO_TOUCH = TouchConfig(enabled=False)  # the paper's three components (component 4 has its own tests)


def _adpm(**over):
    over.setdefault("touch", NO_TOUCH)
    over.setdefault("encoder", EncoderConfig(max_len=6))
    cfg = ADPMConfig(pretrained=PretrainedConfig(tables=("air",)), **over)
    torch.manual_seed(0)
    return ADPM(cfg, SIZES, PAIRS, [_table()]).eval()


def test_output_shape_is_concat_of_components():
    m = _adpm()
    u = _u(m, *_inputs())
    # o1 = 32, o2 = 3 d x 2 listing pairs, o3 = listing 32 x 2 + shop 16 + query 16
    assert u.shape == (4, 32 + 6 + 96) and m.out_dim == 134
    assert torch.isfinite(u).all()


def test_changing_padded_positions_never_changes_output():
    m = _adpm()
    target, ids, lengths = _inputs()
    u1 = _u(m, target, ids, lengths)
    garbage = {}
    for p, x in ids.items():
        mask = torch.arange(x.shape[1])[None, :] < lengths[p][:, None]
        noise = torch.randint(2, SIZES[p.split(":")[0]], x.shape)
        garbage[p] = torch.where(mask, x, noise)
    u2 = _u(m, target, garbage, lengths)
    assert torch.allclose(u1, u2, atol=1e-6)


def test_all_empty_sequences_give_finite_output():
    m = _adpm()
    target, ids, lengths = _inputs()
    zero = {p: torch.zeros_like(v) for p, v in lengths.items()}
    u = _u(m, target, {p: torch.zeros_like(v) for p, v in ids.items()}, zero)
    assert torch.isfinite(u).all()
    # components 2 and 3 pool nothing -> exactly zero; the encoder still sees the target
    assert (u[:, 32:] == 0).all() and (u[:, :32] != 0).any()


def test_target_sits_at_position_zero():
    enc = AdSformerEncoder(EncoderConfig(max_len=4), vocab_size=10)
    target = torch.tensor([7, 3])
    ids = torch.tensor([[5, 6, 0, 0], [0, 0, 0, 0]])
    tokens, mask = enc.tokens(target, ids, torch.tensor([2, 0]))
    assert tokens[:, 0].tolist() == [7, 3] and tokens[0, 1:3].tolist() == [5, 6]
    assert mask.tolist() == [[True, True, True, False, False], [True, False, False, False, False]]
    # and the output depends on the target
    torch.manual_seed(0)
    enc.eval()
    assert not torch.allclose(
        enc(target, ids, torch.tensor([2, 0])), enc(torch.tensor([8, 3]), ids, torch.tensor([2, 0]))
    )


def test_max_vs_mean_pooling_differ():
    target, ids, lengths = _inputs()
    torch.manual_seed(0)
    a = AdSformerEncoder(EncoderConfig(max_len=6, pooling="max"), 20).eval()
    b = AdSformerEncoder(EncoderConfig(max_len=6, pooling="mean"), 20).eval()
    b.load_state_dict(a.state_dict())
    assert not torch.allclose(
        a(target, ids["listing:view"], lengths["listing:view"]),
        b(target, ids["listing:view"], lengths["listing:view"]),
    )


def test_frozen_tables_get_no_gradient_and_live_in_state_dict():
    m = _adpm()
    m.train()
    u = _u(m, *_inputs())
    u.sum().backward()
    table = m.pretrained.tables[0]
    assert "vectors" not in dict(m.named_parameters())
    assert all(not name.startswith("pretrained") for name, _ in m.named_parameters())
    assert table.vectors.grad is None
    state = m.state_dict()
    assert "pretrained.tables.0.vectors" in state and "pretrained.tables.0.present" in state
    assert torch.equal(state["pretrained.tables.0.vectors"], table.vectors)


def test_component_subsets_and_errors():
    only3 = ADPM(
        ADPMConfig(
            encoder=EncoderConfig(enabled=False),
            pretrained=PretrainedConfig(),
            learned=LearnedConfig(pairs=("shop:view",)),
            touch=NO_TOUCH,
        ),
        SIZES,
        PAIRS,
    )
    assert only3.out_dim == 16
    with pytest.raises(ValueError, match="at least one component"):
        ADPM(
            ADPMConfig(
                encoder=EncoderConfig(enabled=False),
                pretrained=PretrainedConfig(),
                learned=LearnedConfig(enabled=False),
                touch=NO_TOUCH,
            ),
            SIZES,
            PAIRS,
        )
    with pytest.raises(ValueError, match="not built for this dataset"):
        ADPM(ADPMConfig(encoder=EncoderConfig(pair="listing:cart_add")), SIZES, PAIRS)
    with pytest.raises(ValueError, match=r"configured with 1 table\(s\) but 0 were loaded"):
        ADPM(ADPMConfig(pretrained=PretrainedConfig(tables=("air",))), SIZES, PAIRS, [])


@torch.no_grad()
@pytest.mark.parametrize(
    "sees_target, golden",
    [
        (False, [55.4738, 29.4957, 1.4766, 38.9767]),  # the default: the sequence never reads the target
        (True, [55.9363, 29.3915, 1.4766, 38.9767]),  # the paper's encoder: only o1 (the first 32) differs
    ],
)
def test_golden_values_with_seed(sees_target, golden):
    u = _u(_adpm(encoder=EncoderConfig(max_len=6, sequence_sees_target=sees_target)), *_inputs())
    # pinned from a reference run: catches silent changes to initialization, masking or pooling
    got = [float(v) for v in (u.sum(), u[1, :32].sum(), u[2, 32:38].sum(), u[3, 38:].abs().sum())]
    assert got == pytest.approx(golden, abs=2e-3)


@pytest.mark.parametrize("sees_target", [False, True])  # the default encoder and the paper's
@pytest.mark.parametrize("pooling", ["max", "mean"])
def test_length_groups_give_the_single_block_values_and_gradients(pooling, sees_target, monkeypatch):
    monkeypatch.setattr(
        encoder_module, "ROWS_PER_GROUP", 1
    )  # up to 8 groups (the default floor is 32 rows a group)
    B, M, V = 64, 12, 30
    g = torch.Generator().manual_seed(1)
    lengths = torch.randint(0, M + 1, (B,), generator=g)
    lengths[:20] = 0  # many empty windows, as in real logs
    ids = torch.randint(2, V, (B, M), generator=g) * (torch.arange(M)[None, :] < lengths[:, None])
    target = torch.randint(2, V, (B,), generator=g)
    outs, grads = [], []
    for groups in (1, 8):
        torch.manual_seed(0)
        cfg = EncoderConfig(
            max_len=M, pooling=pooling, length_groups=groups, sequence_sees_target=sees_target
        )
        enc = AdSformerEncoder(cfg, V)
        out = enc(target, ids, lengths)  # (B, D)
        out.square().sum().backward()
        outs.append(out.detach())
        grads.append(enc.blocks[0].attn.qkv.weight.grad.clone())
    assert outs[0].shape == (B, 32)
    assert torch.allclose(outs[0], outs[1], atol=1e-5)
    assert torch.allclose(grads[0], grads[1], atol=1e-4, rtol=1e-4)


@torch.no_grad()
def test_target_attention_pooling_ignores_padding_and_follows_the_target():
    """Component 3 with DIN-style target attention: padding never matters, an empty sequence pools to
    zeros, and the pooled vector leans to the entry most like the target."""
    comp = ADPM(
        ADPMConfig(
            encoder=EncoderConfig(enabled=False), learned=LearnedConfig(pooling="target"), touch=NO_TOUCH
        ),
        SIZES,
        PAIRS,
    ).learned
    assert comp is not None and comp.attended == ["listing:view", "listing:favorite"]
    table = comp.tables["listing:view"]
    table.weight.zero_()
    table.weight[3, 0], table.weight[4, 1] = 5.0, 5.0  # two orthogonal listings
    ids = {p: torch.zeros((2, 4), dtype=torch.long) for p in PAIRS}
    lens = {p: torch.tensor([2, 0]) for p in PAIRS}
    ids["listing:view"] = torch.tensor([[3, 4, 9, 9], [7, 7, 7, 7]])  # garbage beyond each length
    out = comp.attend(torch.tensor([3, 3]), ids, lens)  # (2, 32 + 32)
    assert out[0, 0] > 4.9 and out[0, 1] < 0.1  # attends to listing 3, the target
    assert out[1].abs().sum() == 0  # empty sequence: zeros
    ids["listing:view"][0, 2:] = torch.tensor([1, 2])
    torch.testing.assert_close(comp.attend(torch.tensor([3, 3]), ids, lens), out)
