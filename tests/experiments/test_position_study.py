"""The position study end to end on the tiny simulator, and its ranking metric."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from adsformer.cli import app
from adsformer.experiments.position import request_ndcg
from adsformer.simulator import SimulatorConfig, simulate


def test_request_ndcg_is_one_for_the_true_order_and_lower_when_reversed():
    request = np.array([1, 1, 1, 2, 2, 3])  # request 3 has one ad: left out
    gain = np.array([0.9, 0.5, 0.1, 0.2, 0.6, 0.7])
    assert request_ndcg(request, gain, gain) == pytest.approx(1.0)
    reversed_ = request_ndcg(request, -gain, gain)
    ideal_1 = 0.9 + 0.5 / np.log2(3) + 0.1 / 2
    worst_1 = 0.1 + 0.5 / np.log2(3) + 0.9 / 2
    ideal_2, worst_2 = 0.6 + 0.2 / np.log2(3), 0.2 + 0.6 / np.log2(3)
    assert reversed_ == pytest.approx((worst_1 / ideal_1 + worst_2 / ideal_2) / 2)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("position")
    data = tmp / "data"
    simulate(SimulatorConfig.preset("tiny").with_overrides(images=False), data)
    out = tmp / "study"
    args = ["position", "--data", str(data), "--config", "configs/ctr_test.yaml", "--out", str(out)]
    res = CliRunner().invoke(app, [*args, "--seeds", "2", "--min-shown", "20", "--set", "model=baseline"])
    assert res.exit_code == 0, res.output
    return out, json.loads((out / "position.json").read_text())


def test_study_writes_curves_and_relevance_metrics_for_both_arms(study):
    out, s = study
    assert s["seeds"] == 2 and set(s["arms"]) == {"without tower", "with tower"}
    n = len(s["positions"])
    assert n >= 2 and s["positions"][0] == 1
    true = np.array(s["true_curve"])  # the simulator's examination curve: 0 at the top, then falling
    assert true[0] == 0 and np.all(np.diff(true) < 0)
    assert len(s["naive_curve"]) == n and s["naive_curve"][0] == 0
    learned = s["arms"]["with tower"]["curve"]
    assert len(learned) == n and learned[0] == 0 and np.isfinite(learned).all()
    assert "curve" not in s["arms"]["without tower"]
    for arm in s["arms"].values():
        assert 0 <= arm["relevance_auc"] <= 1 and 0 < arm["relevance_ndcg"] <= 1
        assert arm["roc_auc_std"] >= 0
    assert (out / "position_curve.png").stat().st_size > 0
    assert "relevance AUC" in (out / "position.md").read_text()


def test_study_refuses_pccvr(tmp_path):
    res = CliRunner().invoke(
        app, ["position", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--set", "task=pccvr"]
    )
    assert res.exit_code != 0 and "clicks" in res.output
