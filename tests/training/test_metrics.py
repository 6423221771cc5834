import numpy as np
import pytest

from adsformer.training.calibration import correct_downsampling
from adsformer.training.metrics import (
    expected_calibration_error,
    log_loss,
    normalized_cross_entropy,
    pr_auc,
    roc_auc,
)


def _brute_auc(y, p):
    pos, neg = p[y == 1], p[y == 0]
    diff = pos[:, None] - neg[None, :]
    return ((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size


def _brute_ap(y, p):
    thresholds = np.unique(p)[::-1]
    ap, prev_recall = 0.0, 0.0
    for t in thresholds:
        sel = p >= t
        tp = (y[sel] == 1).sum()
        recall, precision = tp / y.sum(), tp / sel.sum()
        ap += (recall - prev_recall) * precision
        prev_recall = recall
    return ap


@pytest.mark.parametrize("seed", range(5))
def test_aucs_match_brute_force_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = (rng.random(300) < 0.3).astype(int)
    p = np.round(rng.random(300) * 0.5 + 0.3 * y, 1)  # coarse rounding -> many ties
    assert roc_auc(y, p) == pytest.approx(_brute_auc(y, p), abs=1e-12)
    assert pr_auc(y, p) == pytest.approx(_brute_ap(y, p), abs=1e-12)


def test_known_values_and_degenerate_cases():
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    assert pr_auc([1, 0, 1], [0.9, 0.8, 0.7]) == pytest.approx((1 + 2 / 3) / 2)
    assert np.isnan(roc_auc([1, 1], [0.2, 0.3]))
    assert log_loss([1, 0], [0.5, 0.5]) == pytest.approx(np.log(2))
    assert normalized_cross_entropy([1, 0], [0.5, 0.5]) == pytest.approx(1.0)


def test_ece():
    assert expected_calibration_error([1, 0, 1, 0], [0.5, 0.5, 0.5, 0.5], bins=10) == pytest.approx(0.0)
    assert expected_calibration_error([1, 1], [0.2, 0.2], bins=5) == pytest.approx(0.8)


def test_downsampling_correction_is_monotone_and_recovers_rate():
    rng = np.random.default_rng(0)
    p = rng.random(1000)
    q = correct_downsampling(p, 0.5)
    y = (rng.random(1000) < p).astype(int)
    assert roc_auc(y, q) == roc_auc(y, p) and pr_auc(y, q) == pr_auc(y, p)
    assert (np.diff(q[np.argsort(p)]) >= 0).all()
    # a model trained with half the negatives predicts 2/3 where the truth is 1/2
    assert correct_downsampling(np.array([2 / 3]), 0.5)[0] == pytest.approx(0.5)
