import numpy as np
import pytest
import torch

from adsformer.config import DataConfig, SplitConfig
from adsformer.data.batching import make_batch
from adsformer.data.features import build_features
from adsformer.experiments.runs import spec_from_features
from adsformer.models.config import ModelConfig
from adsformer.models.registry import USER_MODULES, build_model
from adsformer.training.loop import forward, predict


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
