"""The fast one-user scoring path equals the plain batched forward (to 1e-5), for every user module,
several encoder configurations, sequence lengths from empty to over the encoder's max_len, and padding."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from adsformer.adpm import fast as fast_encoder
from adsformer.adpm.config import ADPMConfig, EncoderConfig, LearnedConfig, PretrainedConfig
from adsformer.adpm.fast import encode_one_user
from adsformer.adpm.pretrained import FrozenTable
from adsformer.data.inputs import ModelInputs
from adsformer.layers import dcn
from adsformer.layers.user import UserModule
from adsformer.models.config import BSTConfig, LastKConfig, ModelConfig, RankerConfig
from adsformer.models.fast import FastScorer
from adsformer.models.registry import USER_MODULES, ModelSpec, build_model

PAIRS = [
    "listing:view",
    "listing:favorite",
    "shop:view",
    "taxonomy:view",
    "query:search",
    "c_color:view",
    "listing:any",
]
VOCAB = {"listing": 97, "shop": 23, "taxonomy": 11, "query": 31, "c_color": 7, "action": 5}
ID_RANGE = {**VOCAB, "any": 97 * 5}  # the merged sequence packs listing * 5 + action
SPEC = ModelSpec(VOCAB, {"query": 31, "c_color": 7}, n_dense=3, pairs=PAIRS)
B = 37


def _adpm(**encoder) -> ModelConfig:
    return ModelConfig(user="adsformer", adpm=ADPMConfig(encoder=EncoderConfig(**encoder)))


CONFIGS = {
    "adpm-default": _adpm(),
    "adpm-2blocks-mean-2heads": _adpm(blocks=2, pooling="mean", heads=2, head_dim=8),
    "adpm-3blocks-max-len7": _adpm(blocks=3, max_len=7, heads=4, head_dim=8, ffn_mult=2),
    "adpm-merged-sequence": _adpm(pair="listing:any", blocks=2),
    "adpm-paper-encoder": _adpm(sequence_sees_target=True),  # every position attends to the target
    "adpm-paper-encoder-2blocks-mean": _adpm(sequence_sees_target=True, blocks=2, pooling="mean", head_dim=8),
    "bst-merged-sequence": ModelConfig(
        user="bst", bst=BSTConfig(pair="listing:any", k=6, heads=2, head_dim=8)
    ),
    "adpm-no-encoder": ModelConfig(adpm=ADPMConfig(encoder=EncoderConfig(enabled=False))),
    "adpm-encoder-only": ModelConfig(adpm=ADPMConfig(learned=LearnedConfig(enabled=False))),
    "adpm-pretrained": ModelConfig(adpm=ADPMConfig(pretrained=PretrainedConfig(tables=("t",)))),
    "adpm-target-attention": ModelConfig(
        adpm=ADPMConfig(pretrained=PretrainedConfig(tables=("t",)), learned=LearnedConfig(pooling="target"))
    ),
    "lastk": ModelConfig(user="lastk", lastk=LastKConfig(k=4)),
    "bst": ModelConfig(user="bst", bst=BSTConfig(k=6, heads=2, head_dim=8, dropout=0.1)),
    "baseline": ModelConfig(user="baseline"),
    "no-cross-no-deep": dataclasses.replace(_adpm(), ranker=RankerConfig(cross_layers=0, deep=())),
    "one-cross-layer": dataclasses.replace(_adpm(), ranker=RankerConfig(cross_layers=1, deep=(16,))),
    "three-cross-layers": dataclasses.replace(_adpm(), ranker=RankerConfig(cross_layers=3, deep=(32, 16, 8))),
    "low-rank-cross": dataclasses.replace(_adpm(), ranker=RankerConfig(cross_rank=8)),
    "low-rank-three-cross-layers": dataclasses.replace(
        _adpm(blocks=2), ranker=RankerConfig(cross_layers=3, cross_rank=5)
    ),
}


def _model(cfg: ModelConfig) -> torch.nn.Module:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    tables = []
    if cfg.adpm.pretrained.tables:
        present = rng.random(VOCAB["listing"]) < 0.7
        tables = [FrozenTable("t", rng.normal(size=(VOCAB["listing"], 5)).astype(np.float32), present)]
    model = build_model(cfg, SPEC, tables)
    with torch.no_grad():  # weights of realistic size (the default embedding init is tiny), batch-norm stats
        for name, p in model.named_parameters():
            if "emb" in name or "embed" in name or name.endswith("position.weight"):
                p.normal_(0, 0.5)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def _inputs(lengths: dict[str, int], width: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    target = {e: torch.randint(0, VOCAB[e], (B,), generator=g) for e in ("listing", "shop", "taxonomy")}
    categorical = {c: torch.randint(0, VOCAB[c], (B,), generator=g) for c in ("query", "c_color")}
    dense = torch.randn(B, 3, generator=g)
    seq_ids, seq_len = {}, {}
    for pair in PAIRS:
        # non-zero garbage beyond the length: padding must never matter
        entity = "any" if pair == "listing:any" else pair.split(":")[0]
        seq_ids[pair] = torch.randint(1, ID_RANGE[entity], (1, width), generator=g)
        seq_len[pair] = torch.tensor([lengths.get(pair, 3)])
    # each candidate's own touch signals (B, P, 2): counts 0..3, ages in the hour, -1 where untouched
    count = torch.randint(0, 4, (B, len(PAIRS)), generator=g).float()
    age = torch.randint(0, 3600, (B, len(PAIRS)), generator=g).float()
    touch = torch.stack([count, torch.where(count > 0, age, -1.0)], dim=2)
    return ModelInputs(target, categorical, dense, seq_ids, seq_len, touch)  # the one-user form


def _plain(model, inputs):
    with torch.no_grad():
        return model(inputs.repeated())


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("length", [0, 1, 5, 12])
def test_fast_path_equals_plain_forward(name, length):
    model = _model(CONFIGS[name])
    args = _inputs({"listing:view": length, "shop:view": max(0, length - 2), "query:search": 1}, width=14)
    ref = _plain(model, args)
    got = FastScorer(model).logits(args)
    assert got.shape == (B,) and ref.std() > 0.01  # not a constant model
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_candidates_in_many_chunks(monkeypatch):
    """The per-candidate work runs in chunks of candidates; tiny chunks give the same logits."""
    model = _model(CONFIGS["adpm-2blocks-mean-2heads"])
    args = _inputs({"listing:view": 9}, width=12)
    whole = FastScorer(model).logits(args)
    monkeypatch.setattr(fast_encoder, "CHUNK_POSITIONS", 25)  # 2 candidates per chunk at L = 10
    torch.testing.assert_close(FastScorer(model).logits(args), whole, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(whole, _plain(model, args), rtol=1e-5, atol=1e-5)


def test_padding_width_and_garbage_do_not_matter():
    model = _model(CONFIGS["adpm-default"])
    scorer = FastScorer(model)
    narrow = _inputs({"listing:view": 4}, width=4, seed=3)
    wide = _inputs({"listing:view": 4}, width=40, seed=3)
    for pair in PAIRS:  # same real events, different padding (width and garbage beyond the length)
        wide.seq_ids[pair][0, :4] = narrow.seq_ids[pair][0, :4]
    wide = dataclasses.replace(narrow, seq_ids=wide.seq_ids, seq_len=wide.seq_len)
    torch.testing.assert_close(scorer.logits(wide), scorer.logits(narrow), rtol=0, atol=1e-6)
    torch.testing.assert_close(scorer.logits(wide), _plain(model, wide), rtol=1e-5, atol=1e-5)


def test_encoder_positions_match_the_padded_block():
    """The paper's encoder's per-position outputs, the first block's sequence side shared (a sequence-blind
    encoder is scored by the cached sequence instead: the sharing assumes the sequence reads the target)."""
    model = _model(CONFIGS["adpm-paper-encoder-2blocks-mean"])
    encoder = model.user.encoder
    ids = torch.randint(1, VOCAB["listing"], (9,))
    target = torch.randint(0, VOCAB["listing"], (B,))
    with torch.no_grad():
        ref, mask = encoder.encode(target, ids.expand(B, -1), torch.full((B,), 6))
        got = encode_one_user(encoder, target, ids, 6)
    assert got.shape == (B, 7, encoder.cfg.dim) and mask[:, :7].all() and not mask[:, 7:].any()
    torch.testing.assert_close(got, ref[:, :7], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="pooled_cached_sequence"):
        encode_one_user(_model(CONFIGS["adpm-default"]).user.encoder, target, ids, 6)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_one_user_split_is_the_user_vector(name):
    """Each user module's own split: per-target columns first, ``shared_dim`` shared columns last, and
    together the user vector of the plain forward."""
    model = _model(CONFIGS[name])
    user = model.user
    assert isinstance(user, UserModule) and model.in_dim > user.out_dim >= user.shared_dim >= 0
    inputs = _inputs({"listing:view": 7, "shop:view": 2}, width=9)
    with torch.no_grad():
        split = user.one_user(inputs)
        ref = user(inputs.repeated())
    assert split.shared.shape == (user.shared_dim,)
    assert split.per_target.shape == (B, user.out_dim - user.shared_dim)
    torch.testing.assert_close(split.full(), ref, rtol=1e-5, atol=1e-5)


def test_every_registered_user_module_meets_the_contract():
    for name in USER_MODULES:
        user = build_model(ModelConfig(user=name), SPEC).user
        assert isinstance(user, UserModule), name
        assert type(user).one_user is not UserModule.one_user, name  # its own split, not the base's


@pytest.mark.parametrize(
    "cfg", ["adpm-default", "adpm-2blocks-mean-2heads", "adpm-3blocks-max-len7", "low-rank-cross"]
)
def test_cached_sequence_mode_is_the_target_blind_encoder(cfg):
    """For the paper's encoder (``sequence_sees_target: true``) ``cached-sequence`` is an approximation: it
    equals the plain forward of the same weights in an encoder whose sequence positions do not attend to the
    target (the default), differs from the exact scores, and equals them when there is no sequence. For the
    default encoder both modes are the exact scores."""
    blind_cfg = CONFIGS[cfg]
    assert blind_cfg.adpm.encoder.sequence_sees_target is False  # the default
    paper_cfg = dataclasses.replace(
        blind_cfg,
        adpm=dataclasses.replace(
            blind_cfg.adpm, encoder=dataclasses.replace(blind_cfg.adpm.encoder, sequence_sees_target=True)
        ),
    )
    model = _model(paper_cfg)
    args = _inputs({"listing:view": 9}, width=12)
    cached = FastScorer(model, mode="cached-sequence").logits(args)
    exact = FastScorer(model).logits(args)
    assert (cached - exact).abs().max() > 1e-4  # the sequence positions' view of the target is gone
    blind = _model(blind_cfg)
    blind.load_state_dict(model.state_dict())  # the same weights: only the attention mask differs
    torch.testing.assert_close(cached, _plain(blind, args), rtol=1e-5, atol=1e-5)
    for mode in ("exact", "cached-sequence"):
        torch.testing.assert_close(FastScorer(blind, mode=mode).logits(args), cached, rtol=1e-5, atol=1e-5)
    empty = _inputs({"listing:view": 0}, width=12)
    torch.testing.assert_close(
        FastScorer(model, mode="cached-sequence").logits(empty), _plain(model, empty), rtol=1e-5, atol=1e-5
    )


def test_a_sequence_blind_encoder_keeps_its_sequence_from_the_target():
    """With ``sequence_sees_target: false`` (the default) the sequence positions' outputs do not depend on the target (padded
    block and packed training path alike); the target's own position still reads the sequence."""
    torch.manual_seed(0)
    encoder = _model(CONFIGS["adpm-default"]).user.encoder
    ids = torch.randint(1, 97, (64, 10))
    lengths = torch.randint(0, 11, (64,))
    t1, t2 = torch.randint(1, 97, (64,)), torch.randint(1, 97, (64,))
    (x1, mask), (x2, _) = encoder.encode(t1, ids, lengths), encoder.encode(t2, ids, lengths)
    seq = mask[:, 1:]
    torch.testing.assert_close(x1[:, 1:][seq], x2[:, 1:][seq], rtol=0, atol=0)  # (real sequence positions, D)
    assert (x1[:, 0] - x2[:, 0]).abs().amax() > 1e-3  # the target row is the target's
    ids_b = torch.randint(1, 97, (64, 10))
    x3, _ = encoder.encode(t1, ids_b, lengths)
    assert (x1[:, 0] - x3[:, 0])[lengths > 0].abs().amax() > 1e-3  # ... and reads the sequence
    encoder.cfg = dataclasses.replace(encoder.cfg, length_groups=4)
    packed = encoder(t1, ids, lengths)  # 64 rows: two length groups, the packed path
    encoder.cfg = dataclasses.replace(encoder.cfg, length_groups=1)
    torch.testing.assert_close(packed, encoder(t1, ids, lengths), rtol=1e-5, atol=1e-5)


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="mode"):
        FastScorer(_model(CONFIGS["baseline"]), mode="fastest")  # type: ignore[arg-type]


def test_training_mode_is_refused():
    model = _model(CONFIGS["adpm-default"]).train()
    with pytest.raises(ValueError, match="eval"):
        FastScorer(model)


@pytest.mark.parametrize("name", ["adpm-default", "adpm-target-attention", "lastk", "low-rank-cross"])
def test_two_layer_quadratic_read_out_in_the_ranker(monkeypatch, name):
    """The default ranker (two cross layers) reads shared columns through a quadratic form from 128
    candidates on; forced on at B = 37, it gives the plain forward's logits."""
    monkeypatch.setattr(dcn, "_QUADRATIC_MIN_ROWS", 1)
    model = _model(CONFIGS[name])
    args = _inputs({"listing:view": 6, "shop:view": 3}, width=8)
    torch.testing.assert_close(FastScorer(model).logits(args), _plain(model, args), rtol=1e-5, atol=1e-5)
