"""Feature logs: rotation by rows and by time, atomic files, reading back."""

from __future__ import annotations

import polars as pl
import pytest

from adsformer.serving.feature_log import FeatureLog, read_log


def _event(i):
    return {"user_id": "user:a", "ts": i, "action": "view", "listing_id": f"l{i}"}


def test_rotates_by_rows_and_reads_back(tmp_path):
    log = FeatureLog(tmp_path, rotate_rows=3, rotate_s=3600)
    for i in range(7):
        log.log("events", [_event(i)])
    files = log.flush()
    assert len(files) == 3  # 3 + 3 rows rotated, the last row on flush
    assert sorted(p.parent.name for p in files) == ["events"] * 3
    frame = read_log(tmp_path, "events")
    assert frame["ts"].to_list() == list(range(7)) and frame.schema["ts"] == pl.Int64
    assert not [
        p for p in (tmp_path / "events").iterdir() if not p.name.endswith(".parquet")
    ]  # no temp files
    log.close()


def test_rotates_by_time(tmp_path):
    now = [0.0]
    log = FeatureLog(tmp_path, rotate_rows=1000, rotate_s=10, clock=lambda: now[0])
    log.log("events", [_event(0)])
    now[0] = 11
    log.log("events", [_event(1)])  # the buffer is older than rotate_s: written now
    log.flush()
    assert len(list((tmp_path / "events").glob("*.parquet"))) == 1
    log.close()


def test_context_columns_and_sequences(tmp_path):
    log = FeatureLog(tmp_path)
    log.log(
        "impressions",
        [
            {
                "request_id": "r",
                "user_id": "user:a",
                "ts": 5,
                "listing_id": "l1",
                "position": 1,
                "c_device": "phone",
                "f_x": 1.5,
            }
        ],
    )
    log.log(
        "requests",
        [{"request_id": "r", "sequences": [{"pair": "listing:view", "ts": [4, 3], "ids": ["l2", "l3"]}]}],
    )
    log.close()
    imps = read_log(tmp_path, "impressions")
    assert imps["c_device"].to_list() == ["phone"] and imps["f_x"].to_list() == [1.5]
    reqs = read_log(tmp_path, "requests")
    assert reqs["sequences"][0][0]["ids"] == ["l2", "l3"]
    assert read_log(tmp_path, "events").height == 0


def test_unknown_table_and_bad_settings(tmp_path):
    with pytest.raises(ValueError, match="rotate_rows"):
        FeatureLog(tmp_path, rotate_rows=0)
    log = FeatureLog(tmp_path)
    with pytest.raises(ValueError, match="unknown feature-log table"):
        log.log("clicks", [])
    log.close()
