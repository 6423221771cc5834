"""Numeric (dense) features: the transform, the training statistics and the standardization, stated once.

Offline (:func:`adsformer.data.features.build_features`) and online
(:mod:`adsformer.serving.online_features`) a numeric column goes through the same three steps:

1. :func:`transform`: ``log1p(max(x, 0))`` for prices and bids (:data:`LOG_FEATURES`), else ``x`` as is;
2. :func:`fit_stats`: the mean and standard deviation of the training rows' finite values (a constant
   column gets a standard deviation of 1, an empty one the given mean and 1);
3. :func:`standardize`: ``(x - mean) / std`` as float32, a missing or non-finite value -> 0.

Letters: N rows.
"""

from __future__ import annotations

import numpy as np

#: Columns standardized as ``log1p``: heavy-tailed amounts
LOG_FEATURES = ("price", "bid")
#: A standard deviation at or below this is treated as 1 (a constant column stays 0 after standardizing)
MIN_STD = 1e-12

#: (mean, std) of one column over the training rows
Stats = tuple[float, float]


def transform(name: str, x: np.ndarray) -> np.ndarray:
    """(N,) float64: ``log1p`` of the non-negative part for the columns of :data:`LOG_FEATURES`, else ``x``."""
    return np.log1p(np.clip(x, 0, None)) if name in LOG_FEATURES else x


def fit_stats(train: np.ndarray, *, empty_mean: float = 0.0) -> Stats:
    """(mean, std) of the finite values of ``train`` (T,); ``(empty_mean, 1)`` when there are none, std 1 for
    a constant column."""
    values = train[np.isfinite(train)]
    if not values.size:
        return empty_mean, 1.0
    std = float(values.std())
    return float(values.mean()), std if std > MIN_STD else 1.0


def standardize(x: np.ndarray, stats: Stats) -> np.ndarray:
    """(N,) float32 ``(x - mean) / std``; non-finite results (missing values) -> 0."""
    mean, std = stats
    z = (x - mean) / std
    return np.where(np.isfinite(z), z, 0.0).astype(np.float32)
