"""Offline metrics, exact and dependency-free: ROC-AUC, PR-AUC (average precision), log loss, ECE and
normalized cross-entropy. Ties in scores are handled exactly (ROC-AUC with average ranks; PR-AUC with one
step per distinct score), so a monotone transform of the scores never changes either AUC.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-7


def _check(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=np.float64).ravel()
    p = np.asarray(p, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise ValueError(f"labels and scores differ in length: {y.shape[0]} vs {p.shape[0]}")
    return y, p


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks); NaN when only one class is present."""
    y, p = _check(y, p)
    n_pos = y.sum()
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(p, kind="stable")
    sorted_p = p[order]
    ranks = np.empty(p.size, dtype=np.float64)
    # average rank within each group of tied scores
    boundaries = np.flatnonzero(np.diff(sorted_p)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [p.size]])
    avg = (starts + ends + 1) / 2.0  # 1-based average rank of each tie group
    ranks[order] = np.repeat(avg, ends - starts)
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def pr_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Average precision: sum over distinct thresholds of (recall step) x precision; NaN without positives."""
    y, p = _check(y, p)
    n_pos = y.sum()
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-p, kind="stable")
    y_sorted, p_sorted = y[order], p[order]
    tp = np.cumsum(y_sorted)
    last_of_group = np.concatenate([np.flatnonzero(np.diff(p_sorted)), [p.size - 1]])
    tp_at, n_at = tp[last_of_group], last_of_group + 1
    precision = tp_at / n_at
    recall = tp_at / n_pos
    recall_step = np.diff(np.concatenate([[0.0], recall]))
    return float((recall_step * precision).sum())


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    """Mean binary cross-entropy, probabilities clipped to [1e-7, 1 - 1e-7]."""
    y, p = _check(y, p)
    p = np.clip(p, EPS, 1 - EPS)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())


def normalized_cross_entropy(y: np.ndarray, p: np.ndarray) -> float:
    """Log loss divided by the entropy of the base rate (He et al. 2014): < 1 beats predicting the mean."""
    y, _ = _check(y, p)
    base = float(np.clip(y.mean(), EPS, 1 - EPS))
    entropy = -(base * np.log(base) + (1 - base) * np.log(1 - base))
    return log_loss(y, p) / entropy


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 15) -> float:
    """ECE with ``bins`` equal-width bins: sum over bins of |bin| / N x |mean label - mean prediction|."""
    y, p = _check(y, p)
    idx = np.clip((p * bins).astype(np.int64), 0, bins - 1)
    count = np.bincount(idx, minlength=bins)
    gap = np.abs(np.bincount(idx, weights=y, minlength=bins) - np.bincount(idx, weights=p, minlength=bins))
    return float(gap.sum() / max(count.sum(), 1))


def relevance_auc(p_true: np.ndarray, scores: np.ndarray) -> float:
    """Expected ROC-AUC of ``scores`` when each row's label is drawn from its known probability ``p_true``
    (a simulator's relevance): every ordered pair (i, j), i != j, counts with weight p_i (1 - p_j), ties half.
    It ranks against the truth itself rather than against one noisy draw of clicks."""
    w_pos, s = _check(p_true, scores)
    w_neg = 1.0 - w_pos
    order = np.argsort(s, kind="stable")
    s_sorted, pos_sorted, neg_sorted = s[order], w_pos[order], w_neg[order]
    boundaries = np.flatnonzero(np.diff(s_sorted)) + 1
    starts = np.concatenate([[0], boundaries])
    group_neg = np.add.reduceat(neg_sorted, starts) if s.size else np.zeros(0)
    below = np.concatenate([[0.0], np.cumsum(group_neg)[:-1]])  # negative weight of lower scores
    group_of = np.repeat(np.arange(starts.size), np.diff(np.concatenate([starts, [s.size]])))
    tied = group_neg[group_of] - neg_sorted  # same score, other rows
    numerator = float((pos_sorted * (below[group_of] + 0.5 * tied)).sum())
    denominator = float(w_pos.sum() * w_neg.sum() - (w_pos * w_neg).sum())
    return numerator / denominator if denominator > 0 else float("nan")


def all_metrics(y: np.ndarray, p: np.ndarray, ece_bins: int = 15) -> dict[str, float]:
    return {
        "roc_auc": roc_auc(y, p),
        "pr_auc": pr_auc(y, p),
        "log_loss": log_loss(y, p),
        "ece": expected_calibration_error(y, p, ece_bins),
        "nce": normalized_cross_entropy(y, p),
        "base_rate": float(np.mean(y)) if len(y) else float("nan"),
    }
