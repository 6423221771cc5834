"""No-learning rules a user would compare against: the rows ``rule-touch`` and ``rule-touch+position`` of
every ablation table.

* ``rule-touch``: the score is how often the user touched the target listing in the window (views,
  favorites, carts, purchases: every listing sequence, from :meth:`FeatureSet.touch_count`). Position-free,
  so it compares with a model's served ``roc_auc``.
* ``rule-touch+position``: touches, then the display position (top first), then the price rank within the
  request (cheapest first), lexicographically. It reads the logged position, so it compares with a model's
  ``roc_auc_logged``; its own ``roc_auc_logged`` is its ``roc_auc``.

A rule's scores become probabilities by Platt scaling fit on the validation rows (one scale and one bias:
the order, hence every AUC, is the rule's own), so log loss and calibration are comparable too.

Letters: R rows scored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from adsformer.data.features import FeatureSet
from adsformer.run.calibration import fit_platt

CAP = 1_000  # positions and price ranks beyond share the last value


def touch_score(fs: FeatureSet, rows: np.ndarray) -> np.ndarray:
    """(R,) the user's touches of the target listing in the window."""
    return fs.touch_count("listing")[rows].astype(np.float64)


def touch_position_score(fs: FeatureSet, rows: np.ndarray) -> np.ndarray:
    """(R,) touches, then position (1 = top; unknown last), then price rank in the request (cheapest
    first), combined into one lexicographic score."""
    touches = np.minimum(fs.touch_count("listing")[rows], CAP - 1).astype(np.float64)
    position = fs.position[rows].astype(np.int64)
    position = np.where(position > 0, np.minimum(position, CAP - 1), CAP - 1)
    price_rank = _price_rank(fs)[rows]
    return touches * CAP * CAP + (CAP - 1 - position) * CAP + (CAP - 1 - price_rank)


def _price_rank(fs: FeatureSet) -> np.ndarray:
    """(N,) 0-based rank of each row's price within its request, cheapest first (0 everywhere when the data
    has no price or no requests)."""
    if "price" not in fs.dense_names or fs.request is None:
        return np.zeros(fs.n, np.int64)
    price = fs.dense[:, fs.dense_names.index("price")]
    order = np.lexsort((price, fs.request))  # by request, then price
    req = fs.request[order]
    starts = np.flatnonzero(np.r_[True, req[1:] != req[:-1]])  # first row of each request in order
    group_start = np.repeat(starts, np.diff(np.r_[starts, req.size]))
    rank = np.empty(fs.n, np.int64)
    rank[order] = np.arange(fs.n) - group_start
    return np.minimum(rank, CAP - 1)


#: rule row name -> (score function, whether it reads the logged position)
RULES: dict[str, tuple[Callable[[FeatureSet, np.ndarray], np.ndarray], bool]] = {
    "rule-touch": (touch_score, False),
    "rule-touch+position": (touch_position_score, True),
}


def rule_scores(name: str, fs: FeatureSet, task: str) -> dict[str, Any]:
    """The rule's test-split labels ``y``, calibrated probabilities ``p`` (Platt fit on validation), the
    request codes ``groups`` and whether the scores read the logged position."""
    score, positional = RULES[name]
    val, test = fs.rows("val", task), fs.rows("test", task)
    z_val, z_test = score(fs, val), score(fs, test)
    mean, std = (float(z_val.mean()), float(z_val.std())) if val.size else (0.0, 1.0)
    std = std if std > 0 else 1.0
    calibrator = fit_platt((z_val - mean) / std, fs.labels(task)[val])
    p = calibrator((z_test - mean) / std)
    groups = None if fs.request is None else fs.request[test].astype(np.int64)
    return {"y": fs.labels(task)[test], "p": p, "groups": groups, "positional": positional}
