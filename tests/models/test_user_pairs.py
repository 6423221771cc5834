"""A model reads only the sequences its user module names (``pairs``): a batch restricted to them scores
the same, and training batches carry no other."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adsformer.adpm.config import ADPMConfig, EncoderConfig, LearnedConfig
from adsformer.config import DataConfig, SplitConfig
from adsformer.data.batching import make_batch
from adsformer.data.features import build_features
from adsformer.models.config import ModelConfig
from adsformer.models.registry import USER_MODULES, build_model
from adsformer.run.model import spec_from_features
from adsformer.run.scoring import forward

CONFIGS = {name: ModelConfig(user=name) for name in USER_MODULES} | {
    "adsformer-view": ModelConfig(
        adpm=ADPMConfig(
            encoder=EncoderConfig(pair="listing:view"), learned=LearnedConfig(pairs=("listing:view",))
        )
    )
}


@pytest.fixture
def fs(tiny_dataset):
    return build_features(
        tiny_dataset, DataConfig(split=SplitConfig(mode="fraction", val_fraction=0.2, test_fraction=0.2))
    )


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_batches_of_the_pairs_read_score_the_same(fs, name):
    torch.manual_seed(0)
    model = build_model(CONFIGS[name], spec_from_features(fs)).eval()
    rows = np.arange(min(fs.n, 40))
    lean = make_batch(fs, rows, pairs=model.pairs)
    assert set(lean.seq_ids) == set(model.pairs) <= set(fs.sequences)
    assert lean.touch is not None and lean.touch.shape[1] == len(fs.sequences)  # the whole touch block
    with torch.no_grad():
        torch.testing.assert_close(forward(model, lean), forward(model, make_batch(fs, rows)))
    expected = {"baseline": 0, "lastk": 1, "bst": 1, "adsformer-view": 1}.get(name)
    assert expected is None or len(model.pairs) == expected
