"""Feature logging: what serving received and used, as Parquet files training can be built from.

Three tables, each a folder of rotated, atomically written files ``DIR/TABLE/part-<utc>-<pid>-<seq>.parquet``
(the process id keeps the files of ``adsformer serve --workers N`` apart):

* ``events`` -- every accepted action, in the data contract's events columns (``user_id`` is the store key,
  ``user:ID`` or ``browser:ID``, so logged-in users and browsers never collide);
* ``impressions`` -- every ad served, in the contract's impressions columns (``request_id``, ``user_id``,
  ``ts``, ``listing_id``, ``position``, ``query``, ``bid``, context ``c_*`` / ``f_*``) plus what serving
  computed (``p_ctr``, ``p_pccvr``, ``value``, ``cpc``, ``personalized``, ``cached``, ``version``). Joined
  with a click log on (request_id, listing_id) it is a training set;
* ``requests`` -- one row per ranking request with the sequences the models actually read (per pair the
  ids and times, newest first), the candidate count, the flags and the latency: the audit trail.

The events and impressions of the log plus the catalog form a canonical dataset whose features, rebuilt
offline by :meth:`adsformer.run.predictor.Predictor.features`, equal the served ones (tested). Rows are buffered
and written by one background thread when a table holds ``rotate_rows`` rows or ``rotate_s`` seconds have
passed since its last file; :meth:`flush` writes everything now and waits. A file appears whole or not at
all (written under a temporary name, then renamed).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from adsformer.io import atomic_file
from adsformer.serving.outcome import RankOutcome, RankQuery

EVENTS_SCHEMA = {
    "user_id": pl.String,
    "ts": pl.Int64,
    "action": pl.String,
    "listing_id": pl.String,
    "shop_id": pl.String,
    "taxonomy_id": pl.String,
    "query": pl.String,
}
IMPRESSIONS_SCHEMA = {
    "request_id": pl.String,
    "user_id": pl.String,
    "ts": pl.Int64,
    "listing_id": pl.String,
    "position": pl.Int32,
    "query": pl.String,
    "bid": pl.Float64,
    "p_ctr": pl.Float64,
    "p_pccvr": pl.Float64,
    "value": pl.Float64,
    "cpc": pl.Float64,
    "personalized": pl.Boolean,
    "cached": pl.Boolean,
    "version": pl.Int64,
}
SEQUENCE_STRUCT = pl.Struct({"pair": pl.String, "ts": pl.List(pl.Int64), "ids": pl.List(pl.String)})
REQUESTS_SCHEMA = {
    "request_id": pl.String,
    "user_id": pl.String,
    "ts": pl.Int64,
    "query": pl.String,
    "context_listing_id": pl.String,
    "context": pl.String,  # JSON of the request's context features
    "n_candidates": pl.Int32,
    "n_ads": pl.Int32,
    "personalized": pl.Boolean,
    "fallback_reason": pl.String,
    "cached": pl.Boolean,
    "version": pl.Int64,
    "ctr_run": pl.String,
    "pccvr_run": pl.String,
    "latency_ms": pl.Float64,
    "sequences": pl.List(SEQUENCE_STRUCT),
}
SCHEMAS: dict[str, dict[str, Any]] = {
    "events": EVENTS_SCHEMA,
    "impressions": IMPRESSIONS_SCHEMA,
    "requests": REQUESTS_SCHEMA,
}


class FeatureLog:
    """Buffered, rotated Parquet logs of events, impressions and requests (see the module docstring)."""

    def __init__(
        self,
        directory: str | Path,
        *,
        rotate_rows: int = 10_000,
        rotate_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rotate_rows < 1 or rotate_s <= 0:
            raise ValueError(f"rotate_rows must be >= 1 and rotate_s > 0, got {rotate_rows}, {rotate_s}")
        self.directory = Path(directory)
        self.rotate_rows = rotate_rows
        self.rotate_s = rotate_s
        self._clock = clock
        self._lock = threading.Lock()
        self._rows: dict[str, list[dict[str, Any]]] = {t: [] for t in SCHEMAS}
        self._since: dict[str, float] = {t: clock() for t in SCHEMAS}
        self._seq = 0
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="feature-log")
        self._pending: list[Future[Path]] = []
        self.files: list[Path] = []

    def log(self, table: str, rows: list[dict[str, Any]]) -> None:
        """Buffer ``rows`` of ``table``; hand a full (or old) buffer to the writer thread."""
        if table not in SCHEMAS:
            raise ValueError(f"unknown feature-log table {table!r}; expected one of {sorted(SCHEMAS)}")
        with self._lock:
            self._rows[table].extend(rows)
            due = (
                len(self._rows[table]) >= self.rotate_rows
                or self._clock() - self._since[table] >= self.rotate_s
            )
            if due:
                self._submit(table)

    def flush(self) -> list[Path]:
        """Write every buffered row now; wait for all writes; return the files written so far."""
        with self._lock:
            for table in SCHEMAS:
                if self._rows[table]:
                    self._submit(table)
            pending, self._pending = self._pending, []
        for future in pending:
            future.result()
        return list(self.files)

    def close(self) -> None:
        self.flush()
        self._writer.shutdown(wait=True)

    def _submit(self, table: str) -> None:
        """Hand ``table``'s buffer to the writer (caller holds the lock)."""
        rows, self._rows[table] = self._rows[table], []
        self._since[table] = self._clock()
        if not rows:
            return
        self._seq += 1
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        path = self.directory / table / f"part-{stamp}-{os.getpid()}-{self._seq:06d}.parquet"
        self._pending = [f for f in self._pending if not f.done()]
        self._pending.append(self._writer.submit(self._write, table, rows, path))

    def _write(self, table: str, rows: list[dict[str, Any]], path: Path) -> Path:
        schema = SCHEMAS[table]
        extra = sorted({k for row in rows for k in row} - set(schema))  # context c_* / f_* columns
        full = {**schema, **{k: pl.Float64 if k.startswith("f_") else pl.String for k in extra}}
        frame = pl.DataFrame([{k: row.get(k) for k in full} for row in rows], schema=full, orient="row")
        with atomic_file(path) as tmp:
            frame.write_parquet(tmp)
        with self._lock:
            self.files.append(path)
        return path


def served_rows(
    q: RankQuery,
    now: int,
    out: RankOutcome,
    sequences: Mapping[str, list[tuple[int, str]]] | None,
    runs: tuple[str, str | None],
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The ``impressions`` rows (one per ad served) and the ``requests`` row of one ranking."""
    context = dict(q.context)
    impressions = [
        {
            "request_id": out.request_id,
            "user_id": q.user_key,
            "ts": now,
            "listing_id": ad.listing_id,
            "position": ad.position,
            "query": q.query,
            "bid": ad.bid,
            "p_ctr": ad.p_ctr,
            "p_pccvr": ad.p_pccvr,
            "value": ad.value,
            "cpc": ad.cpc,
            "personalized": out.personalized,
            "cached": out.cached,
            "version": out.version,
            **context,
        }
        for ad in out.ads
    ]
    request = {
        "request_id": out.request_id,
        "user_id": q.user_key,
        "ts": now,
        "query": q.query,
        "context_listing_id": q.listing_id,
        "context": json.dumps(context, sort_keys=True, default=str),
        "n_candidates": out.candidates,
        "n_ads": len(out.ads),
        "personalized": out.personalized,
        "fallback_reason": out.fallback_reason,
        "cached": out.cached,
        "version": out.version,
        "ctr_run": runs[0],
        "pccvr_run": runs[1],
        "latency_ms": out.timings_ms.get("total"),
        "sequences": [
            {"pair": pair, "ts": [ts for ts, _ in entries], "ids": [v for _, v in entries]}
            for pair, entries in (sequences or {}).items()
            if entries
        ],
    }
    return impressions, request


def read_log(directory: str | Path, table: str) -> pl.DataFrame:
    """All files of one logged table, concatenated (empty frame with the table's schema when none)."""
    files = sorted((Path(directory) / table).glob("*.parquet"))
    if not files:
        return pl.DataFrame(schema=SCHEMAS[table])
    return pl.concat([pl.read_parquet(f) for f in files], how="diagonal_relaxed")
