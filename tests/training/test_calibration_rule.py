"""Platt scaling is applied only where it lowers the validation ECE, and says so (golden seeds)."""

from __future__ import annotations

import numpy as np
import pytest

from adsformer.run.calibration import Calibrator, fit_platt
from adsformer.training.calibrate import choose_calibrator
from adsformer.training.metrics import expected_calibration_error, pr_auc, roc_auc


def _validation(seed: int, scale: float = 1.0, shift: float = 0.0, n: int = 3000):
    """Logits z (n,) and labels drawn from sigmoid(scale * z + shift): calibrated when (1, 0)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(-2.5, 1.0, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(scale * z + shift)))).astype(np.int8)
    return z, y


def test_platt_that_makes_validation_ece_worse_is_skipped():
    z, y = _validation(seed=2)  # already calibrated: this seed's Platt fit raises the ECE (0.0116 -> 0.0128)
    cal = choose_calibrator(z, y)
    assert cal.decision == "skipped" and cal.method == "downsampling" and (cal.scale, cal.bias) == (1.0, 0.0)
    assert cal.val_ece_before == pytest.approx(0.0116, abs=1e-4)
    assert cal.val_ece_platt == pytest.approx(0.0128, abs=1e-4)
    assert cal.val_ece_platt > cal.val_ece_before and cal.fit_rows == 3000
    served = expected_calibration_error(y, cal(z))
    assert served == pytest.approx(cal.val_ece_before)  # what serves is the better of the two


def test_platt_that_lowers_validation_ece_is_applied_and_keeps_the_ranking():
    z, y = _validation(seed=0, scale=0.5, shift=-1.0)  # miscalibrated: too confident, too high
    cal = choose_calibrator(z, y, keep_rate=1.0)
    assert cal.decision == "applied" and cal.method == "platt"
    assert cal.val_ece_before == pytest.approx(0.0309, abs=1e-4)
    assert cal.val_ece_platt == pytest.approx(0.0079, abs=1e-4)
    assert (cal.scale, cal.bias) == (pytest.approx(0.494, abs=1e-3), pytest.approx(-0.959, abs=1e-3))
    assert expected_calibration_error(y, cal(z)) == pytest.approx(cal.val_ece_platt)
    assert roc_auc(y, cal(z)) == pytest.approx(roc_auc(y, cal.uncalibrated(z)), abs=1e-12)
    assert pr_auc(y, cal(z)) == pytest.approx(pr_auc(y, cal.uncalibrated(z)), abs=1e-12)


def test_the_rule_applies_after_the_downsampling_correction():
    z, y = _validation(seed=2)
    keep = 0.25  # a model trained on a quarter of the negatives predicts odds 4x too high
    cal = choose_calibrator(z - np.log(keep), y, keep_rate=keep)
    assert cal.keep_rate == keep and cal.decision == "skipped"  # the correction alone is the same as above
    np.testing.assert_allclose(cal(z - np.log(keep)), 1 / (1 + np.exp(-z)))


def test_a_few_separable_rows_do_not_give_an_infinite_scale():
    # two rows, perfectly separated: unsmoothed Platt targets drive the scale to infinity (probabilities of
    # exactly 0 and 1); Platt's smoothed targets (2/3, 1/3) keep it finite, and here the fit is not kept
    z, y = np.array([-1.0, 1.0]), np.array([0, 1], np.int8)
    platt = fit_platt(z, y)
    assert platt.method == "platt" and 0 < platt.scale < 5
    assert platt(z).min() > 0 and platt(z).max() < 1


def test_one_class_is_not_fit():
    cal = choose_calibrator(np.array([0.1, -0.3, 2.0]), np.zeros(3, np.int8))
    assert cal.decision == "not_fit" and cal.method == "downsampling" and cal.val_ece_before is None


def test_the_decision_round_trips_and_old_calibration_files_still_load():
    z, y = _validation(seed=2)
    cal = choose_calibrator(z, y)
    assert Calibrator.from_dict(cal.to_dict()) == cal
    old = Calibrator.from_dict(
        {"keep_rate": 0.5, "scale": 2.0, "bias": 0.1, "method": "platt", "fit_rows": 9}
    )
    assert old.decision == "unknown" and old.val_ece_before is None
    with pytest.raises(ValueError, match="decision must be one of"):
        Calibrator.from_dict({**cal.to_dict(), "decision": "maybe"})
    with pytest.raises(ValueError, match="val_ece_platt must be a finite number or null"):
        Calibrator.from_dict({**cal.to_dict(), "val_ece_platt": "high"})


def test_metrics_say_which_calibration_serves():
    from adsformer.experiments.runs import _calibrated_metrics
    from adsformer.run.config import load_experiment

    z, y = _validation(seed=2)
    cfg = load_experiment(None, ["bootstrap=0"])
    for cal in (choose_calibrator(z, y), choose_calibrator(*_validation(seed=0, scale=0.5, shift=-1.0))):
        m = _calibrated_metrics(y, cal.uncalibrated(z), cal(z), cfg, cal)
        assert m["calibration_decision"] == cal.decision
        assert m["calibrated"] is (cal.decision == "applied")
