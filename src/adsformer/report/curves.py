"""Curve points for the report: ROC, precision-recall and reliability (calibration) bins.

Letters: N scored rows, K curve points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Curve:
    x: np.ndarray  # (K,)
    y: np.ndarray  # (K,)


def _ranked(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative true / false positives at each distinct threshold, highest score first."""
    order = np.argsort(-np.asarray(p, np.float64), kind="mergesort")
    y, p = np.asarray(y, np.float64)[order], np.asarray(p)[order]
    last = np.r_[np.flatnonzero(np.diff(p)), y.size - 1]  # last row of each tie group
    tp = np.cumsum(y)[last]
    fp = (last + 1) - tp
    return tp, fp


def _thin(x: np.ndarray, y: np.ndarray, points: int) -> Curve:
    if x.size > points:
        keep = np.unique(np.r_[np.linspace(0, x.size - 1, points).astype(np.int64), x.size - 1])
        x, y = x[keep], y[keep]
    return Curve(x, y)


def roc_curve(y: np.ndarray, p: np.ndarray, points: int = 1000) -> Curve:
    """False positive rate (x) against true positive rate (y), from (0, 0) to (1, 1)."""
    tp, fp = _ranked(y, p)
    P, N = max(tp[-1], 1), max(fp[-1], 1)
    return _thin(np.r_[0.0, fp / N], np.r_[0.0, tp / P], points)


def pr_curve(y: np.ndarray, p: np.ndarray, points: int = 1000) -> Curve:
    """Recall (x) against precision (y)."""
    tp, fp = _ranked(y, p)
    return _thin(tp / max(tp[-1], 1), tp / (tp + fp), points)


@dataclass(frozen=True)
class Reliability:
    predicted: np.ndarray  # (K,) mean predicted probability per bin
    observed: np.ndarray  # (K,) observed rate per bin
    count: np.ndarray  # (K,) rows per bin


def reliability(y: np.ndarray, p: np.ndarray, bins: int = 15) -> Reliability:
    """Equal-mass bins (quantiles of ``p``): with click rates of a few percent, equal-width bins would put
    nearly every row in the first bin; the ECE in the metrics uses equal-width bins, as is standard."""
    y, p = np.asarray(y, np.float64), np.asarray(p, np.float64)
    edges = np.unique(np.quantile(p, np.linspace(0, 1, bins + 1)))
    idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, max(edges.size - 2, 0))
    count = np.bincount(idx, minlength=max(edges.size - 1, 1))
    keep = count > 0
    pred = np.bincount(idx, weights=p, minlength=count.size)[keep] / count[keep]
    obs = np.bincount(idx, weights=y, minlength=count.size)[keep] / count[keep]
    return Reliability(pred, obs, count[keep])
