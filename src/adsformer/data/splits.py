"""Time-based train / validation / test splits and negative down-sampling of the training split.

Splits cut the impressions at two instants, ``val_start`` and ``test_start``: training is everything
before ``val_start``, so no model ever trains on an impression later than one it is validated or tested
on. All impressions of a request share one ``ts`` and so land in the same split.

Only the training split is down-sampled (non-clicked impressions kept with probability
``neg_keep_rate``); validation and test keep the natural rate. The rate is recorded so calibration can
undo its effect on predicted probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from adsformer.config import SamplingConfig, SplitConfig
from adsformer.errors import UserError

TRAIN, VAL, TEST = 0, 1, 2
UNUSED = 3  # outside the configured train / validation / test window (daily protocol)
SPLIT_NAMES = ("train", "val", "test")
#: The name of each split code, UNUSED included (``predict``'s ``split`` column)
CODE_NAMES = ("train", "val", "test", "unused")
DAY_S = 86_400


class SplitError(UserError):
    """The data cannot be split as configured (e.g. too short a time span)."""


@dataclass(frozen=True)
class Split:
    """Which split each impression belongs to, and the cut instants."""

    split: np.ndarray  # (N,) int8: TRAIN, VAL or TEST
    val_start: int
    test_start: int
    mode: str  # "days" or "fraction", as resolved
    end: int | None = None  # first instant after the test period
    train_start: int | None = None  # first training instant (None: all history)

    def rows(self, which: int) -> np.ndarray:
        return np.flatnonzero(self.split == which)

    def counts(self) -> dict[str, int]:
        return {name: int((self.split == i).sum()) for i, name in enumerate(SPLIT_NAMES)}


def time_split(ts: np.ndarray, cfg: SplitConfig) -> Split:
    """Assign each impression (by its ``ts``) to train, validation or test."""
    ts = np.asarray(ts, dtype=np.int64)
    if ts.size == 0:
        raise SplitError("no impressions to split")
    lo, hi = int(ts.min()), int(ts.max())
    mode = cfg.mode
    if mode == "auto":
        span_days = (hi - lo) / DAY_S
        mode = "days" if span_days >= 3 * (cfg.val_days + cfg.test_days) else "fraction"
    end = hi + 1
    train_start = None
    if mode != "days" and (cfg.end_days_ago or cfg.train_days):
        raise SplitError("end_days_ago and train_days need split.mode=days")
    if mode == "days":
        end = hi + 1 - int(cfg.end_days_ago * DAY_S)
        test_start = end - int(cfg.test_days * DAY_S)
        val_start = test_start - int(cfg.val_days * DAY_S)
        if cfg.train_days:
            train_start = val_start - int(cfg.train_days * DAY_S)
        if val_start <= lo:
            raise SplitError(
                f"data spans {(hi - lo) / DAY_S:.2f} days, too short for {cfg.val_days} validation + "
                f"{cfg.test_days} test days ending {cfg.end_days_ago} days before the last impression; "
                f"use fewer days or split.mode=fraction"
            )
    elif mode == "fraction":
        if not (cfg.val_fraction > 0 and cfg.test_fraction > 0 and cfg.val_fraction + cfg.test_fraction < 1):
            raise SplitError(f"bad fractions val={cfg.val_fraction}, test={cfg.test_fraction}")
        sorted_ts = np.sort(ts)
        n = ts.size
        test_start = int(sorted_ts[min(n - 1, int(n * (1 - cfg.test_fraction)))])
        val_start = int(sorted_ts[min(n - 1, int(n * (1 - cfg.test_fraction - cfg.val_fraction)))])
        if not lo < val_start < test_start:
            raise SplitError(
                f"impression times are too concentrated to cut into three time-ordered splits ({n} impressions "
                f"at {np.unique(ts).size} distinct times); use more impressions, or larger split.val_fraction "
                f"and split.test_fraction"
            )
    else:
        raise SplitError(f"unknown split mode {cfg.mode!r}; expected auto, days or fraction")
    return Split(
        split_at(ts, val_start, test_start, end, train_start), val_start, test_start, mode, end, train_start
    )


def split_at(
    ts: np.ndarray, val_start: int, test_start: int, end: int | None = None, train_start: int | None = None
) -> np.ndarray:
    """(N,) int8 split of impressions at times ``ts`` (N,) cut at the given instants: TRAIN before
    ``val_start``, VAL before ``test_start``, TEST before ``end`` (None: no end), UNUSED from ``end`` on and
    before ``train_start`` (when set)."""
    ts = np.asarray(ts, dtype=np.int64)
    split = np.full(ts.shape, TRAIN, dtype=np.int8)
    split[ts >= val_start] = VAL
    split[ts >= test_start] = TEST
    if end is not None:
        split[ts >= end] = UNUSED
    if train_start is not None:
        split[ts < train_start] = UNUSED
    return split


def downsample_negatives(labels: np.ndarray, split: np.ndarray, cfg: SamplingConfig) -> np.ndarray:
    """Boolean keep-mask: every positive, every val/test row, and training negatives at ``neg_keep_rate``."""
    if not 0 < cfg.neg_keep_rate <= 1:
        raise ValueError(f"neg_keep_rate must be in (0, 1], got {cfg.neg_keep_rate}")
    rng = np.random.default_rng(cfg.seed)
    draw = rng.random(labels.shape[0])
    train_negative = (split == TRAIN) & (labels == 0)
    return ~train_negative | (draw < cfg.neg_keep_rate)
