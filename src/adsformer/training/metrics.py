"""Offline metrics, exact and dependency-free: ROC-AUC, PR-AUC (average precision), log loss, ECE and
normalized cross-entropy. Ties in scores are handled exactly (ROC-AUC with average ranks; PR-AUC with one
step per distinct score), so a monotone transform of the scores never changes either AUC.

Per-request ranking quality: :func:`gauc` (group AUC), :func:`ndcg_at_k` and :func:`mrr`, vectorized over
requests; :func:`bootstrap_ci` gives percentile intervals that resample whole requests.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

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


# ---------------------------------------------------------------------------------------------------------
# Per-request ranking metrics. ``groups`` (N,) holds any integer request key (rows of one request share it);
# None means all rows form one request. Every function sorts once and reduces per request with
# ``np.add.reduceat`` / ``np.minimum.reduceat``: no Python loop over requests.

Metric = Callable[[np.ndarray, np.ndarray, np.ndarray | None], float]  # fn(y, p, groups) -> value


def _grouped(
    y: np.ndarray, p: np.ndarray, groups: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Binary labels (N,) float64, scores (N,) float64 and request keys (N,) int64 (zeros when None)."""
    y, p = _check(y, p)
    if groups is None:
        return (y > 0.5).astype(np.float64), p, np.zeros(y.size, np.int64)
    g = np.asarray(groups).ravel()
    if g.shape != y.shape:
        raise ValueError(f"groups and labels differ in length: {g.shape[0]} vs {y.shape[0]}")
    return (y > 0.5).astype(np.float64), p, g.astype(np.int64, copy=False)


def _group_starts(g_sorted: np.ndarray) -> np.ndarray:
    """First index (G,) of every run of equal keys in a sorted (N,) array (N > 0)."""
    return np.concatenate([[0], np.flatnonzero(np.diff(g_sorted)) + 1])


def gauc(y: np.ndarray, p: np.ndarray, groups: np.ndarray | None) -> float:
    """Group AUC: the impression-weighted mean of per-request ROC-AUC over the requests that hold both a
    positive and a negative (requests with one label only are ignored, weights included).

    ``y``, ``p``, ``groups``: (N,). Ties within a request count one half (average ranks, as
    :func:`roc_auc`). NaN when no request has both labels. ``groups=None`` is one request (= ROC-AUC)."""
    y, p, g = _grouped(y, p, groups)
    if y.size == 0:
        return float("nan")
    order = np.lexsort((p, g))  # by request, then score ascending
    g_s, p_s, y_s = g[order], p[order], y[order]
    starts = _group_starts(g_s)
    size = np.diff(np.concatenate([starts, [y.size]]))
    group_start = np.repeat(starts, size)  # (N,) first index of each row's request
    # tie blocks: equal score within one request
    tie = np.concatenate([[0], np.flatnonzero((np.diff(g_s) != 0) | (np.diff(p_s) != 0)) + 1])
    tie_end = np.concatenate([tie[1:], [y.size]])
    avg_rank = np.repeat((tie + tie_end + 1) / 2.0, tie_end - tie) - group_start  # 1-based, in-request
    n_pos = np.add.reduceat(y_s, starts)
    rank_sum = np.add.reduceat(avg_rank * y_s, starts)
    n_neg = size - n_pos
    both = (n_pos > 0) & (n_neg > 0)
    if not both.any():
        return float("nan")
    n_pos, n_neg, rank_sum, w = n_pos[both], n_neg[both], rank_sum[both], size[both]
    auc = (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    return float((auc * w).sum() / w.sum())


def _pessimistic_ranks(
    y: np.ndarray, p: np.ndarray, g: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows sorted by request, score descending, and - among equal scores - negatives first (ties broken
    against the model, independent of row order). Returns sorted labels (N,), 0-based in-request ranks
    (N,) and request starts (G,)."""
    order = np.lexsort((y, -p, g))
    g_s, y_s = g[order], y[order]
    starts = _group_starts(g_s)
    size = np.diff(np.concatenate([starts, [y.size]]))
    rank = np.arange(y.size) - np.repeat(starts, size)
    return y_s, rank, starts


def ndcg_at_k(y: np.ndarray, p: np.ndarray, groups: np.ndarray | None, k: int = 10) -> float:
    """Mean over requests with at least one positive of DCG@k / IDCG@k, binary gains and discount
    1 / log2(rank + 1) (rank 1 = top). ``y``, ``p``, ``groups``: (N,).

    Ties in score are broken pessimistically: within equal scores, negatives rank above positives, so a
    constant score earns no credit from the order the rows were logged in. NaN without positives."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    y, p, g = _grouped(y, p, groups)
    if y.size == 0:
        return float("nan")
    y_s, rank, starts = _pessimistic_ranks(y, p, g)
    discount = 1.0 / np.log2(np.arange(k) + 2.0)  # (k,) for 0-based ranks 0..k-1
    gain = np.where(rank < k, discount[np.minimum(rank, k - 1)], 0.0) * y_s
    dcg = np.add.reduceat(gain, starts)
    n_pos = np.add.reduceat(y_s, starts).astype(np.int64)
    ideal = np.concatenate([[0.0], np.cumsum(discount)])  # (k + 1,) IDCG for 0..k positives
    has = n_pos > 0
    if not has.any():
        return float("nan")
    return float((dcg[has] / ideal[np.minimum(n_pos[has], k)]).mean())


def mrr(y: np.ndarray, p: np.ndarray, groups: np.ndarray | None) -> float:
    """Mean reciprocal rank: the mean over requests with at least one positive of 1 / (rank of the first
    positive), rank 1 = top; ties broken pessimistically as in :func:`ndcg_at_k`. ``y``, ``p``, ``groups``:
    (N,). NaN without positives."""
    y, p, g = _grouped(y, p, groups)
    if y.size == 0:
        return float("nan")
    y_s, rank, starts = _pessimistic_ranks(y, p, g)
    first = np.minimum.reduceat(np.where(y_s > 0, rank, y.size), starts)  # y.size: no positive
    has = first < y.size
    if not has.any():
        return float("nan")
    return float((1.0 / (first[has] + 1.0)).mean())


def rowwise(fn: Callable[[np.ndarray, np.ndarray], float]) -> Metric:
    """A row-level metric (``roc_auc``, ``pr_auc``, ...) as a :data:`Metric` that ignores the requests, for
    :func:`bootstrap_ci`."""

    def metric(y: np.ndarray, p: np.ndarray, _groups: np.ndarray | None) -> float:
        return fn(y, p)

    return metric


def bootstrap_intervals(
    fns: Mapping[str, Metric],
    y: np.ndarray,
    p: np.ndarray,
    groups: np.ndarray | None,
    n_boot: int = 200,
    seed: int = 0,
    alpha: float = 0.05,
    max_rows: int | None = None,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals (level 1 - ``alpha``) of several metrics on the same resamples.

    Whole requests are drawn with replacement (rows when ``groups`` is None); a request drawn twice is two
    requests (distinct keys) in the resample. ``y``, ``p``, ``groups``: (N,). Each metric is called as
    ``fn(y_b, p_b, groups_b)`` (``groups_b`` None when ``groups`` is None; wrap row metrics in
    :func:`rowwise`).

    ``max_rows`` caps the cost on big sets (m-out-of-n bootstrap): when N > ``max_rows``, each resample
    draws only m = ceil(G x max_rows / N) of the G requests and its deviation from the full-data estimate
    is shrunk by sqrt(m / G), the 1/sqrt(size) scaling of these metrics' sampling error. Resamples where a
    metric is NaN are left out; (NaN, NaN) when all are. ``n_boot`` 0 gives (NaN, NaN)."""
    y, p = _check(y, p)
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    nan = (float("nan"), float("nan"))
    if n_boot <= 0 or y.size == 0:
        return dict.fromkeys(fns, nan)
    if groups is None:
        order, starts = np.arange(y.size), np.arange(y.size)
    else:
        g = np.asarray(groups).ravel()
        if g.shape != y.shape:
            raise ValueError(f"groups and labels differ in length: {g.shape[0]} vs {y.shape[0]}")
        order = np.argsort(g, kind="stable")
        starts = _group_starts(g[order])
    size = np.diff(np.concatenate([starts, [y.size]]))
    n_groups = starts.size
    m = n_groups
    if max_rows is not None and y.size > max_rows:
        m = max(1, min(n_groups, math.ceil(n_groups * max_rows / y.size)))
    shrink = math.sqrt(m / n_groups)
    full = {name: fn(y, p, groups) for name, fn in fns.items()} if m < n_groups else {}
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(n_boot):
        pick = rng.integers(0, n_groups, m)  # (m,) requests
        counts = size[pick]
        offsets = np.cumsum(counts) - counts  # (m,) first slot of each drawn request
        within = np.arange(int(counts.sum())) - np.repeat(offsets, counts)
        idx = order[np.repeat(starts[pick], counts) + within]
        g_b = None if groups is None else np.repeat(np.arange(m), counts)
        y_b, p_b = y[idx], p[idx]
        for name, fn in fns.items():
            value = fn(y_b, p_b, g_b)
            if m < n_groups:
                value = full[name] + shrink * (value - full[name])
            draws[name].append(value)
    out = {}
    for name, values in draws.items():
        arr = np.asarray(values, dtype=np.float64)
        arr = arr[np.isfinite(arr)]
        if arr.size == 0:
            out[name] = nan
            continue
        lo, hi = np.quantile(arr, [alpha / 2, 1 - alpha / 2])
        out[name] = (float(lo), float(hi))
    return out


def bootstrap_ci(
    fn: Metric,
    y: np.ndarray,
    p: np.ndarray,
    groups: np.ndarray | None,
    n_boot: int = 200,
    seed: int = 0,
    alpha: float = 0.05,
    max_rows: int | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap interval (lo, hi) of ``fn(y, p, groups)`` over resampled requests (rows when
    ``groups`` is None); see :func:`bootstrap_intervals`. ``y``, ``p``, ``groups``: (N,)."""
    return bootstrap_intervals({"m": fn}, y, p, groups, n_boot, seed, alpha, max_rows)["m"]


def lift_interval(
    fn: Callable[[np.ndarray, np.ndarray], float],
    y: np.ndarray,
    p_base: np.ndarray,
    p_model: np.ndarray,
    groups: np.ndarray | None,
    n_boot: int = 200,
    seed: int = 0,
    alpha: float = 0.05,
    max_rows: int | None = None,
) -> tuple[float, float]:
    """Paired percentile bootstrap interval of the lift in percent, ``100 (fn(y, p_model) - fn(y, p_base)) /
    fn(y, p_base)``: both models are scored on the same resampled requests (rows when ``groups`` is None),
    so the interval reflects the difference, not each model's own spread. ``y``, ``p_base``, ``p_model``,
    ``groups``: (N,) over the same rows."""
    p_base, p_model = np.asarray(p_base, np.float64), np.asarray(p_model, np.float64)

    def lift(y_b: np.ndarray, idx_b: np.ndarray, _groups: np.ndarray | None) -> float:
        rows = idx_b.astype(np.int64)  # the resample's rows, carried through as the "scores"
        base = fn(y_b, p_base[rows])
        return 100.0 * (fn(y_b, p_model[rows]) - base) / base if base else float("nan")

    index = np.arange(np.asarray(y).size, dtype=np.float64)
    return bootstrap_ci(lift, y, index, groups, n_boot, seed, alpha, max_rows)
