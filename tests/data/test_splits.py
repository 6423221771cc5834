import numpy as np
import pytest

from adsformer.config import SamplingConfig, SplitConfig
from adsformer.data.splits import DAY_S, TEST, TRAIN, VAL, SplitError, downsample_negatives, time_split


def test_days_split_last_day_is_test():
    ts = np.arange(0, 10 * DAY_S, 3600)
    s = time_split(ts, SplitConfig(mode="days", val_days=1, test_days=1))
    assert s.mode == "days"
    assert (ts[s.split == TEST] >= ts.max() + 1 - DAY_S).all()
    assert (
        ts[s.split == TRAIN].max()
        < ts[s.split == VAL].min()
        <= ts[s.split == VAL].max()
        < ts[s.split == TEST].min()
    )
    assert s.counts()["test"] == 24


def test_auto_falls_back_to_fraction_on_short_data():
    ts = np.arange(0, 2 * DAY_S, 60)
    s = time_split(ts, SplitConfig())
    assert s.mode == "fraction"
    frac = s.counts()
    assert abs(frac["test"] / ts.size - 0.1) < 0.01 and abs(frac["val"] / ts.size - 0.1) < 0.01


def test_same_timestamp_never_straddles_splits():
    ts = np.repeat(np.arange(100), 7)  # 7 impressions per request-time
    s = time_split(ts, SplitConfig(mode="fraction"))
    for t in np.unique(ts):
        assert len(set(s.split[ts == t].tolist())) == 1


def test_days_mode_rejects_too_short_span():
    with pytest.raises(SplitError, match="too short"):
        time_split(np.arange(0, DAY_S, 60), SplitConfig(mode="days"))


def test_downsampling_touches_only_training_negatives():
    rng = np.random.default_rng(0)
    labels = (rng.random(100_000) < 0.1).astype(np.int8)
    split = rng.integers(0, 3, 100_000).astype(np.int8)
    keep = downsample_negatives(labels, split, SamplingConfig(neg_keep_rate=0.5, seed=3))
    assert keep[labels == 1].all() and keep[split != TRAIN].all()
    rate = keep[(split == TRAIN) & (labels == 0)].mean()
    assert abs(rate - 0.5) < 0.01
    again = downsample_negatives(labels, split, SamplingConfig(neg_keep_rate=0.5, seed=3))
    assert (keep == again).all()


def test_daily_windows_leave_out_later_and_older_rows():
    ts = np.arange(0, 10 * DAY_S, 3600, dtype=np.int64)  # hourly over 10 days
    hi = int(ts.max())
    cfg = SplitConfig(mode="days", val_days=1, test_days=1, end_days_ago=2, train_days=3)
    s = time_split(ts, cfg)
    end = hi + 1 - 2 * DAY_S
    assert s.end == end and s.test_start == end - DAY_S and s.val_start == end - 2 * DAY_S
    assert s.train_start == s.val_start - 3 * DAY_S
    from adsformer.data.splits import UNUSED

    assert (s.split[ts >= end] == UNUSED).all() and (s.split[ts < s.train_start] == UNUSED).all()
    assert (s.split[(ts >= s.test_start) & (ts < end)] == TEST).all()
    assert (s.split[(ts >= s.train_start) & (ts < s.val_start)] == TRAIN).all()
    assert (s.split == TRAIN).sum() == 3 * 24 and (s.split == TEST).sum() == 24
    # every training row is earlier than every validation row, which is earlier than every test row
    assert (
        ts[s.split == TRAIN].max()
        < ts[s.split == VAL].min()
        <= ts[s.split == VAL].max()
        < ts[s.split == TEST].min()
    )
    with pytest.raises(SplitError, match=r"need split\.mode=days"):
        time_split(ts, SplitConfig(mode="fraction", end_days_ago=1))
    with pytest.raises(SplitError, match=r"ending 9 days before"):
        time_split(ts, SplitConfig(mode="days", end_days_ago=9))
