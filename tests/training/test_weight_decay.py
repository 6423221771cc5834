"""Weight decay by task: PCCVR (few positives) is regularized by default, CTR is not; an explicit value wins."""

import pytest
import torch

from adsformer.config import ConfigError, DataConfig, SplitConfig
from adsformer.data.features import build_features
from adsformer.models.config import ModelConfig
from adsformer.models.registry import build_model
from adsformer.run.config import WEIGHT_DECAY_BY_TASK, TrainConfig, load_experiment
from adsformer.run.model import spec_from_features
from adsformer.training.loop import make_optimizers


def test_default_is_by_task_and_an_explicit_value_wins():
    assert TrainConfig().weight_decay is None
    assert TrainConfig().weight_decay_for("pccvr") == WEIGHT_DECAY_BY_TASK["pccvr"] == 0.01
    assert TrainConfig().weight_decay_for("ctr") == 0.0
    assert TrainConfig(weight_decay=0.0).weight_decay_for("pccvr") == 0.0
    cfg = load_experiment(None, ["train.weight_decay=0.003"], extra={"task": "pccvr"})
    assert cfg.train.weight_decay_for(cfg.task) == 0.003
    with pytest.raises(ConfigError, match="weight_decay"):
        TrainConfig(weight_decay=-1.0)


@pytest.mark.parametrize(("task", "expected"), [("ctr", 0.0), ("pccvr", 0.01)])
def test_the_dense_optimizer_gets_the_tasks_decay_and_id_tables_none(tiny_dataset, task, expected):
    fs = build_features(tiny_dataset, DataConfig(split=SplitConfig(mode="fraction")))
    torch.manual_seed(0)
    model = build_model(ModelConfig(), spec_from_features(fs))
    dense, *sparse = make_optimizers(model, TrainConfig(), task)
    assert isinstance(dense, torch.optim.Adam)
    assert {g["weight_decay"] for g in dense.param_groups} == {expected}
    assert len(sparse) == 1 and "weight_decay" not in sparse[0].defaults  # lazy Adam: id tables not decayed
