"""The Spark sequence job against the local engine on the same input (skips without pyspark or java)."""

from __future__ import annotations

import numpy as np
import pytest

from adsformer.config import DataConfig
from adsformer.data.features import build_features
from adsformer.data.sequences import build_sequences
from adsformer.data.spark_sequences import spark_available
from adsformer.simulator import SimulatorConfig, generate

pytestmark = [
    pytest.mark.skipif(spark_available() is not None, reason=f"Spark engine: {spark_available()}"),
    pytest.mark.slow,  # a JVM starts (~10-30 s on two busy cores)
    pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning"),
]


@pytest.fixture(scope="module")
def spark():
    from adsformer.data.spark_sequences import local_session

    session = local_session(threads=1)
    yield session
    session.stop()


def test_spark_matches_local_on_random_events_with_ties(spark):
    from adsformer.data.spark_sequences import spark_sequence_columns

    rng = np.random.default_rng(7)
    E, N, window, M = 3000, 800, 300, 6
    pairs = {}
    for name in ("listing:view", "shop:favorite"):
        user = rng.integers(0, 40, E)
        ts = rng.integers(0, 2000, E) // 5 * 5  # many events share a second: tie order matters
        pairs[name] = (user, ts, rng.integers(1, 500, E).astype(np.int32))
    imp_user, imp_ts = rng.integers(0, 45, N), rng.integers(0, 2400, N)  # some users have no events
    got = spark_sequence_columns(pairs, imp_user, imp_ts, window_s=window, max_len=M, spark=spark)
    for name, (u, t, v) in pairs.items():
        want = build_sequences(u, t, v, imp_user, imp_ts, window_s=window, max_len=M)
        ids_w, len_w = want.padded()
        ids_g, len_g = got[name].padded()
        np.testing.assert_array_equal(len_g, len_w)
        np.testing.assert_array_equal(ids_g, ids_w)
        assert (len_w > 0).mean() > 0.3 and (len_w == M).any() and (len_w == 0).any()


def test_build_features_spark_engine_equals_local(spark):
    ds, _ = generate(SimulatorConfig.preset("tiny").with_overrides(images=False))
    cfg = DataConfig()
    local = build_features(ds, cfg)
    remote = build_features(ds, cfg, engine="spark")
    assert list(remote.sequences) == list(local.sequences) and len(local.sequences) > 5
    for name, column in local.sequences.items():
        ids_l, len_l = column.padded()
        ids_s, len_s = remote.sequences[name].padded()
        np.testing.assert_array_equal(len_s, len_l, err_msg=name)
        np.testing.assert_array_equal(ids_s, ids_l, err_msg=name)
    assert sum(int(c.length.sum()) for c in local.sequences.values()) > 100
