import numpy as np
import pytest
import torch

from adsformer.config import DataConfig, SplitConfig
from adsformer.data.batching import make_batch
from adsformer.data.features import build_features
from adsformer.models.config import ModelConfig, RankerConfig
from adsformer.models.registry import USER_MODULES, build_model
from adsformer.run.model import spec_from_features
from adsformer.run.scoring import forward, predict


@pytest.fixture
def fs(tiny_dataset):
    return build_features(
        tiny_dataset, DataConfig(split=SplitConfig(mode="fraction", val_fraction=0.2, test_fraction=0.2))
    )


@pytest.mark.parametrize("user", sorted(USER_MODULES))
def test_every_user_module_gives_one_logit_per_row(fs, user):
    torch.manual_seed(0)
    model = build_model(ModelConfig(user=user), spec_from_features(fs)).eval()
    batch = make_batch(fs, np.arange(7))
    out = forward(model, batch)
    assert out.shape == (7,) and torch.isfinite(out).all()


def test_position_tower_only_in_training_and_never_at_scoring(fs):
    torch.manual_seed(0)
    model = build_model(ModelConfig(user="baseline"), spec_from_features(fs)).eval()
    tower = model.position_tower
    assert torch.equal(tower(torch.arange(5), {}), torch.zeros(5))  # contributes nothing until trained
    with torch.no_grad():
        tower.out.weight.normal_()
    batch = make_batch(fs, np.arange(5))
    trained = forward(model, batch, with_position=True)
    served = forward(model, batch)
    assert torch.allclose(trained - served, tower(batch.position, batch.categorical), atol=1e-6)
    assert tower(torch.arange(1, 6), batch.categorical).unique().numel() == 5
    rows = np.arange(fs.n)
    before = predict(model, fs, rows)
    fs.position[:] = 7  # scoring does not look at positions at all
    assert np.array_equal(before, predict(model, fs, rows))


def test_baseline_ignores_sequences(fs):
    torch.manual_seed(0)
    model = build_model(ModelConfig(user="baseline"), spec_from_features(fs)).eval()
    batch = make_batch(fs, np.arange(6))
    for ids in batch.seq_ids.values():
        ids.zero_()
    for n in batch.seq_len.values():
        n.zero_()
    assert torch.equal(forward(model, batch), forward(model, make_batch(fs, np.arange(6))))


@torch.no_grad()
@pytest.mark.parametrize("rank", [None, 64])
def test_golden_logits_with_seed(fs, rank):
    """Pinned logits of the default ranker (ADPM with every component the data allows, touch signals on)
    and of the baseline for the tiny dataset's first rows, as torchrec's test_dlrm pins DLRM's: catches
    silent changes to initialization, feature layout, masking or pooling (torch 2.13, CPU). Full-rank cross
    layers (PCCVR's, and an unresolved ``auto``'s) and rank 64 (CTR's)."""
    batch = make_batch(fs, np.arange(8))
    got = {}
    for user in ("adsformer", "baseline"):
        torch.manual_seed(0)
        cfg = ModelConfig(user=user, ranker=RankerConfig(cross_rank="auto" if rank is None else rank))
        model = build_model(cfg, spec_from_features(fs)).eval()
        with (
            torch.no_grad()
        ):  # embeddings of realistic size (the default init is tiny), so the user part counts
            for name, p in model.named_parameters():
                if "emb" in name or "embed" in name:
                    p.normal_(0, 0.5, generator=torch.Generator().manual_seed(1))
        got[user] = forward(model, batch)
    golden_ads, golden_base = GOLDEN[rank]
    assert [round(float(x), 4) for x in got["adsformer"]] == pytest.approx(golden_ads, abs=2e-3)
    assert [round(float(x), 4) for x in got["baseline"]] == pytest.approx(golden_base, abs=2e-3)
    assert not torch.allclose(got["adsformer"], got["baseline"])  # the user vector changes the logits


# dense features: price and rank(price) (with request_ranks=() the values were -0.1701, 0.0036, 0.1169, ...)
GOLDEN = {  # cross rank -> (adsformer, baseline); row 4 has no history: the encoder's mask cannot matter there
    None: (
        [0.2334, 0.1164, -0.1914, -0.154, 0.3827, 0.2334, 0.1164, -0.1914],
        [0.2421, 0.1206, 0.423, -0.0404, 0.1958, 0.2421, 0.1206, 0.423],
    ),
    64: (
        [0.1207, 0.0625, 0.0579, 0.1155, -0.2515, 0.1207, 0.0625, 0.0579],
        [-0.4835, -0.2195, -0.176, -0.1139, -0.1319, -0.4835, -0.2195, -0.176],
    ),
}
