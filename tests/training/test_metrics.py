import numpy as np
import pytest

from adsformer.run.calibration import correct_downsampling
from adsformer.training.metrics import (
    bootstrap_ci,
    bootstrap_intervals,
    expected_calibration_error,
    gauc,
    log_loss,
    mrr,
    ndcg_at_k,
    normalized_cross_entropy,
    pr_auc,
    roc_auc,
    rowwise,
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


# ---- per-request ranking metrics ----------------------------------------------------------------------
# Four requests, by hand:
#   A: y 1 0 0,  p .90 .50 .95   -> AUC 1/2 (beats .50, loses to .95); first positive at rank 2
#   B: y 1 1 0 0, p .80 .30 .60 .30 -> pairs (.8>.6, .8>.3, .3<.6, .3=.3) = (1 + 1 + 0 + 1/2) / 4 = 5/8;
#      descending with ties negatives-first: .8(+) .6(-) .3(-) .3(+) -> positives at ranks 1 and 4
#   C: y 0 0 (no positive: no AUC, no NDCG, no MRR)
#   D: y 1 (one row: no AUC; NDCG 1, MRR 1)
# Rows are interleaved and request keys are arbitrary, non-contiguous integers.
# A = key 7 (rows 0, 2, 4), B = key 42 (rows 1, 5, 6, 9), C = key 3 (rows 3, 7), D = key -5 (row 8).
REQ_Y = np.array([1, 1, 0, 0, 0, 1, 0, 0, 1, 0])
REQ_P = np.array([0.90, 0.80, 0.50, 0.30, 0.95, 0.30, 0.60, 0.20, 0.40, 0.30])
REQ_G = np.array([7, 42, 7, 3, 7, 42, 42, 3, -5, 42])


def test_gauc_golden_value_weights_by_impressions_and_ignores_single_label_requests():
    # (3 impressions x 1/2 + 4 impressions x 5/8) / 7; C and D (one label only) are left out entirely
    assert gauc(REQ_Y, REQ_P, REQ_G) == pytest.approx((3 * 0.5 + 4 * 0.625) / 7, abs=1e-12)
    keep = np.isin(REQ_G, [7, 42])
    assert gauc(REQ_Y, REQ_P, REQ_G) == pytest.approx(gauc(REQ_Y[keep], REQ_P[keep], REQ_G[keep]), abs=1e-12)
    # a big all-negative / all-positive request changes nothing
    y = np.concatenate([REQ_Y, np.zeros(50, int), np.ones(20, int)])
    p = np.concatenate([REQ_P, np.linspace(0, 1, 50), np.linspace(0, 1, 20)])
    g = np.concatenate([REQ_G, np.full(50, 100), np.full(20, 101)])
    assert gauc(y, p, g) == pytest.approx(4 / 7, abs=1e-12)
    assert np.isnan(gauc([1, 0, 1], [0.1, 0.2, 0.3], [1, 2, 3]))  # no request with both labels
    assert np.isnan(gauc([], [], []))
    # one request: plain ROC-AUC (average ranks for ties)
    assert gauc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], None) == 0.75
    assert gauc([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9], [1, 1, 1, 1]) == pytest.approx(
        roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9])
    )


def test_ndcg_at_k_golden_values():
    ndcg_a = 1 / np.log2(3)  # one positive at rank 2; IDCG = 1
    ndcg_b = (1 + 1 / np.log2(5)) / (1 + 1 / np.log2(3))  # positives at ranks 1 and 4
    ndcg_d = 1.0
    assert ndcg_at_k(REQ_Y, REQ_P, REQ_G) == pytest.approx((ndcg_a + ndcg_b + ndcg_d) / 3, abs=1e-12)
    # k = 2: B's positive at rank 4 falls out; its ideal list holds two positives in the top 2
    assert ndcg_at_k(REQ_Y, REQ_P, REQ_G, k=2) == pytest.approx(
        (ndcg_a + 1 / (1 + 1 / np.log2(3)) + 1) / 3, abs=1e-12
    )
    # k = 1: only the top row counts (A: 0, B: 1, D: 1)
    assert ndcg_at_k(REQ_Y, REQ_P, REQ_G, k=1) == pytest.approx(2 / 3, abs=1e-12)
    assert np.isnan(ndcg_at_k([0, 0], [0.3, 0.4], [1, 2]))
    with pytest.raises(ValueError):
        ndcg_at_k(REQ_Y, REQ_P, REQ_G, k=0)


def test_mrr_golden_value_and_pessimistic_ties():
    assert mrr(REQ_Y, REQ_P, REQ_G) == pytest.approx((1 / 2 + 1 + 1) / 3, abs=1e-12)
    # constant scores earn nothing from the logged row order: the positive ranks below the tied negatives
    assert mrr([1, 0, 0], [0.5, 0.5, 0.5], None) == pytest.approx(1 / 3)
    assert ndcg_at_k([1, 0, 0], [0.5, 0.5, 0.5], None) == pytest.approx(1 / np.log2(4))
    assert np.isnan(mrr([0, 0], [0.3, 0.4], None))


def _brute_ranking(y, p, g, k=10):
    """Per-request loops: impression-weighted AUC, NDCG@k and MRR (ties: negatives first)."""
    auc_num = auc_den = 0.0
    ndcgs, rrs = [], []
    for key in np.unique(g):
        yy, pp = y[g == key], p[g == key]
        if 0 < yy.sum() < yy.size:
            auc_num += _brute_auc(yy, pp) * yy.size
            auc_den += yy.size
        if yy.sum() == 0:
            continue
        ranked = [label for _score, label in sorted(zip(-pp, yy, strict=True))]  # negatives first in ties
        dcg = sum(label / np.log2(i + 2) for i, label in enumerate(ranked[:k]))
        ideal = sum(1 / np.log2(i + 2) for i in range(min(int(yy.sum()), k)))
        ndcgs.append(dcg / ideal)
        rrs.append(1 / (ranked.index(1) + 1))
    return auc_num / auc_den, float(np.mean(ndcgs)), float(np.mean(rrs))


@pytest.mark.parametrize("seed", range(3))
def test_ranking_metrics_match_per_request_loops_and_ignore_row_order(seed):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 60, 900)
    y = (rng.random(900) < 0.15).astype(int)
    p = np.round(rng.random(900) * 0.6 + 0.3 * y, 1)  # many ties
    want = _brute_ranking(y, p, g)
    got = (gauc(y, p, g), ndcg_at_k(y, p, g), mrr(y, p, g))
    assert got == pytest.approx(want, abs=1e-12)
    perm = rng.permutation(900)
    assert (
        gauc(y[perm], p[perm], g[perm]),
        ndcg_at_k(y[perm], p[perm], g[perm]),
        mrr(y[perm], p[perm], g[perm]),
    ) == pytest.approx(want, abs=1e-12)


def _ranking_data(n_requests, seed):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2, 12, n_requests)
    g = np.repeat(np.arange(n_requests), sizes)
    y = (rng.random(g.size) < 0.2).astype(int)
    p = rng.random(g.size) + 0.4 * y
    return y, p, g


def test_bootstrap_intervals_contain_the_estimate_and_narrow_with_more_data():
    widths = {}
    for n in (100, 2_000):
        y, p, g = _ranking_data(n, seed=n)
        for name, fn in (("roc_auc", rowwise(roc_auc)), ("pr_auc", rowwise(pr_auc)), ("gauc", gauc)):
            lo, hi = bootstrap_ci(fn, y, p, g, n_boot=200, seed=0)
            assert lo <= fn(y, p, g) <= hi, (n, name)
            widths[n, name] = hi - lo
    for name in ("roc_auc", "pr_auc", "gauc"):
        assert widths[2_000, name] < 0.5 * widths[100, name], name
    y, p, g = _ranking_data(300, seed=1)
    # deterministic in the seed; rows resampled when groups is None; 0 resamples: no interval
    assert bootstrap_ci(gauc, y, p, g, seed=3) == bootstrap_ci(gauc, y, p, g, seed=3)
    lo, hi = bootstrap_ci(rowwise(roc_auc), y, p, None, n_boot=100)
    assert lo <= roc_auc(y, p) <= hi
    assert all(np.isnan(bootstrap_ci(gauc, y, p, g, n_boot=0)))
    # several metrics at once share the resamples: the same intervals as one by one
    both = bootstrap_intervals({"gauc": gauc, "mrr": mrr}, y, p, g, n_boot=50, seed=2)
    assert both["mrr"] == bootstrap_ci(mrr, y, p, g, n_boot=50, seed=2)


def test_bootstrap_row_cap_keeps_the_interval_width():
    """m-out-of-n with sqrt(m / G) rescaling: about the full bootstrap's width at a fraction of the cost."""
    y, p, g = _ranking_data(3_000, seed=5)
    full = bootstrap_ci(gauc, y, p, g, n_boot=200, seed=0)
    capped = bootstrap_ci(gauc, y, p, g, n_boot=200, seed=0, max_rows=y.size // 5)
    assert capped[0] <= gauc(y, p, g) <= capped[1]
    assert (capped[1] - capped[0]) == pytest.approx(full[1] - full[0], rel=0.3)


def test_lift_interval_is_paired_and_contains_the_point_lift():
    from adsformer.training.metrics import lift_interval

    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(400), 5)  # 400 requests of 5
    y = (rng.random(groups.size) < 0.3).astype(float)
    base = rng.random(groups.size)
    better = base + 0.8 * y  # clearly better
    same = base + 1e-9 * rng.random(groups.size)  # the same ranking but for ties: lift ~ 0
    point = 100 * (roc_auc(y, better) - roc_auc(y, base)) / roc_auc(y, base)
    lo, hi = lift_interval(roc_auc, y, base, better, groups, n_boot=100)
    assert 0 < lo <= point <= hi
    lo0, hi0 = lift_interval(roc_auc, y, base, same, groups, n_boot=100)
    assert lo0 <= 0 <= hi0 and hi0 - lo0 < 0.5  # paired: both models on one resample, no spread of their own
