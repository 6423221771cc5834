"""Platt calibration: lowers ECE, never changes ranking, and the down-sampling correction recovers the
simulator's true click rate."""

import numpy as np
import polars as pl
import pytest

from adsformer.data.features import build_features
from adsformer.data.validate import read_dataset
from adsformer.experiments.runs import fit, score_test_split
from adsformer.run.calibration import Calibrator, fit_platt, sigmoid
from adsformer.run.config import load_experiment
from adsformer.simulator import SimulatorConfig, simulate
from adsformer.training.metrics import expected_calibration_error, pr_auc, roc_auc


def _labels(z_true, seed=0):
    return (np.random.default_rng(seed).random(z_true.size) < sigmoid(z_true)).astype(np.int8)


def test_platt_fixes_a_miscalibrated_model_and_keeps_auc():
    rng = np.random.default_rng(0)
    z_true = rng.normal(-2.5, 1.0, 50_000)
    y = _labels(z_true)
    z_model = 3.0 * z_true + 8.0  # over-confident and far too high
    cal = fit_platt(z_model, y)
    assert cal.method == "platt" and cal.fit_rows == y.size
    assert cal.scale == pytest.approx(1 / 3, rel=0.05) and cal.bias == pytest.approx(-8 / 3, abs=0.15)
    before, after = sigmoid(z_model), cal(z_model)
    assert expected_calibration_error(y, before) > 0.3
    assert expected_calibration_error(y, after) < 0.01
    assert roc_auc(y, after) == roc_auc(y, before) and pr_auc(y, after) == pr_auc(y, before)


def test_downsampling_then_platt_on_logits():
    rng = np.random.default_rng(1)
    z_true = rng.normal(-3, 1, 40_000)
    y = _labels(z_true, 1)
    z_model = z_true - np.log(0.25)  # what a model trained with a quarter of the negatives learns
    corrected = Calibrator(keep_rate=0.25)
    assert np.allclose(corrected(z_model), sigmoid(z_true))
    cal = fit_platt(z_model, y, keep_rate=0.25)  # nothing left to fix: scale ~1, bias ~0
    assert cal.scale == pytest.approx(1, abs=0.05) and cal.bias == pytest.approx(0, abs=0.06)
    assert Calibrator.from_dict(cal.to_dict()) == cal


def test_platt_never_reverses_the_ranking():
    rng = np.random.default_rng(2)
    z_true = rng.normal(-2, 1, 10_000)
    y = _labels(z_true, 2)
    cal = fit_platt(-z_true, y)  # an anti-correlated model: the best scale is negative
    assert cal.scale == 1.0 and cal.method == "platt"  # bias-only fit
    assert roc_auc(y, cal(-z_true)) == roc_auc(y, sigmoid(-z_true))
    assert abs(cal(-z_true).mean() - y.mean()) < 0.005  # the bias still fixes the mean
    assert fit_platt(z_true, np.zeros_like(y)).method == "downsampling"  # one class: nothing to fit
    with pytest.raises(ValueError, match="must be > 0"):
        Calibrator(scale=-1.0)


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim") / "data"
    simulate(SimulatorConfig.preset("tiny").with_overrides(images=False), out)
    return out


def test_downsampling_correction_recovers_the_simulators_true_click_rate(sim):
    """Trained on a quarter of the negatives, the corrected predictions' mean on the natural-rate test split
    is within 15% of the simulator's true mean click probability; uncorrected it is about 3x too high."""
    cfg = load_experiment(None, ["epochs=2", "batch_size=256", "neg_keep_rate=0.25"], extra={"task": "ctr"})
    cfg = cfg.__class__(**{**cfg.__dict__, "model": cfg.model.__class__(user="baseline")})
    ds = read_dataset(sim)
    fs = build_features(ds, cfg.data)
    model, result = fit(cfg, fs, show_progress=False)
    rows = fs.rows("test", "ctr")
    truth = pl.read_parquet(sim / "truth" / "impressions.parquet")
    keys = ds.impressions.select("request_id", "position")[rows]
    true_p = keys.join(truth, on=["request_id", "position"], how="left")["p_click"].to_numpy()
    assert not np.isnan(true_p).any()
    _y, p_corrected, p_cal = score_test_split(model, fs, cfg, result.calibrator)
    raw = sigmoid(np.log(p_corrected / (1 - p_corrected)) - np.log(0.25))
    assert abs(p_corrected.mean() / true_p.mean() - 1) < 0.15
    assert abs(p_cal.mean() / true_p.mean() - 1) < 0.15
    assert raw.mean() / true_p.mean() > 2.5
