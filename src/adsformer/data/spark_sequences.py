"""The windowed sequence builder on Apache Spark: the same sequences as :mod:`adsformer.data.sequences`.

For each impression ``(imp, user, ts)`` and each (entity, action) pair, the ids of the user's events of
that pair with ``ts - window_s <= event ts < ts``, newest first, at most ``max_len``; events at the same
second are read in reverse input order (``ord``), exactly as the local engine reads them. In Spark terms:

1. join the impressions with the events on ``user`` and the time window (a range condition);
2. group by ``(imp, pair)`` and collect ``struct(ts, ord, value)``; ``sort_array`` descending orders by
   ``ts`` then ``ord``, newest first; ``slice`` keeps the first ``max_len`` and ``transform`` the ids.

:func:`sequences_frame` is the Spark job itself (DataFrames in, a DataFrame out: it runs on a cluster over
Parquet just as in local mode). :func:`spark_sequence_columns` is the glue the feature job uses
(``adsformer features --engine spark``): numpy inputs are written to Parquet, Spark reads them and writes
its result as Parquet, which is read back into :class:`SequenceColumn` objects.

pyspark is an optional extra (``pip install -e ".[spark]"``) and needs a Java runtime (17 or later).

Letters: N impressions, E events, M max sequence length.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from adsformer.config import ConfigError
from adsformer.data.sequences import SequenceColumn

INSTALL_HINT = (
    'pip install -e ".[spark]" and a Java runtime >= 17 (e.g. apt-get install openjdk-17-jre-headless)'
)


def spark_available() -> str | None:
    """None when pyspark and java are both present, else what is missing."""
    if importlib.util.find_spec("pyspark") is None:
        return "pyspark is not installed"
    if shutil.which("java") is None:
        return "no java executable on PATH"
    return None


def local_session(threads: int = 1, app: str = "adsformer-sequences") -> Any:
    """A local-mode SparkSession with ``threads`` cores, no UI, few shuffle partitions."""
    missing = spark_available()
    if missing:
        raise ConfigError(f"the Spark engine needs pyspark and java: {missing}; {INSTALL_HINT}")
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master(f"local[{threads}]")
        .appName(app)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", str(max(2, threads)))
        .config("spark.driver.memory", "1g")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    return session


def sequences_frame(events: Any, impressions: Any, window_s: int, max_len: int) -> Any:
    """The Spark job. ``events``: (user long, ts long, ord long, pair string, value int);
    ``impressions``: (imp long, user long, ts long) -> (imp, pair, ids array<int> newest first).

    Impressions without any event in the window get no row (their sequences are empty)."""
    from pyspark.sql import functions as F

    if window_s < 0 or max_len < 1:
        raise ValueError(f"need window_s >= 0 and max_len >= 1, got {window_s}, {max_len}")
    i, e = impressions.alias("i"), events.alias("e")
    joined = i.join(
        e,
        (F.col("i.user") == F.col("e.user"))
        & (F.col("e.ts") < F.col("i.ts"))
        & (F.col("e.ts") >= F.col("i.ts") - F.lit(int(window_s))),
    )
    grouped = joined.groupBy(F.col("i.imp").alias("imp"), F.col("e.pair").alias("pair")).agg(
        F.sort_array(F.collect_list(F.struct("e.ts", "e.ord", "e.value")), asc=False).alias("events")
    )
    newest = F.slice(F.col("events"), 1, int(max_len))
    return grouped.select("imp", "pair", F.transform(newest, lambda x: x["value"]).alias("ids"))


def spark_sequence_columns(
    pair_events: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    imp_user: np.ndarray,
    imp_ts: np.ndarray,
    *,
    window_s: int,
    max_len: int,
    spark: Any = None,
    threads: int = 1,
) -> dict[str, SequenceColumn]:
    """Sequences of every pair for the impressions, computed by Spark.

    ``pair_events[pair] = (user (E,), ts (E,), values (E,))`` in input order (the order ``ord`` ties break
    on); ``imp_user``, ``imp_ts`` (N,). Returns one :class:`SequenceColumn` per pair, in impression order.
    """
    session = spark or local_session(threads)
    n = int(np.asarray(imp_user).shape[0])
    with tempfile.TemporaryDirectory(prefix="adsformer-spark-") as tmp:
        root = Path(tmp)
        parts = [
            pa.table(
                {
                    "user": pa.array(np.asarray(u, np.int64)),
                    "ts": pa.array(np.asarray(t, np.int64)),
                    "ord": pa.array(np.arange(len(u), dtype=np.int64)),
                    "pair": pa.array([pair] * len(u), pa.string()),
                    "value": pa.array(np.asarray(v, np.int32)),
                }
            )
            for pair, (u, t, v) in pair_events.items()
        ]
        if parts:
            pq.write_table(pa.concat_tables(parts), root / "events.parquet")
        imps = {"imp": np.arange(n, dtype=np.int64), "user": np.asarray(imp_user, np.int64)}
        imps["ts"] = np.asarray(imp_ts, np.int64)
        pq.write_table(pa.table(imps), root / "impressions.parquet")
        out = root / "sequences"
        if parts:
            events = session.read.parquet(str(root / "events.parquet"))
            impressions = session.read.parquet(str(root / "impressions.parquet"))
            sequences_frame(events, impressions, window_s, max_len).write.parquet(str(out))
            result = pq.read_table(out)
        else:
            result = pa.table({"imp": pa.array([], pa.int64()), "pair": pa.array([], pa.string())})
    return {pair: _column(result, pair, n, max_len) for pair in pair_events}


def _column(result: pa.Table, pair: str, n: int, max_len: int) -> SequenceColumn:
    """One pair's rows of the Spark result as a :class:`SequenceColumn` over all N impressions."""
    rows = result.filter(pc.equal(result["pair"], pair)) if result.num_rows else result
    lengths = np.zeros(n, np.int64)
    if rows.num_rows == 0:
        return SequenceColumn.from_lists(np.zeros(n + 1, np.int64), np.zeros(0, np.int32), max_len)
    order = np.argsort(rows["imp"].to_numpy(), kind="stable")
    rows = rows.take(order)
    imp = rows["imp"].to_numpy()
    ids = rows["ids"].combine_chunks()
    counts = np.diff(ids.offsets.to_numpy())
    lengths[imp] = counts
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    flat = ids.values.to_numpy(zero_copy_only=False)[ids.offsets[0].as_py() : ids.offsets[-1].as_py()]
    return SequenceColumn.from_lists(offsets, flat, max_len)
