"""Time-windowed, newest-first user action sequences for every impression, without leakage.

For an impression of user ``u`` at time ``t`` and one (entity, action) pair, the sequence holds the
entity ids of ``u``'s events of that action with ``t - window_s <= ts < t`` (strictly before: an event at
the impression's own second is excluded), newest first, at most ``M`` of them.

How it is vectorized: the pair's events are sorted once by the composite key ``(user, ts)``. All events of
one user inside a time interval are then a contiguous slice of that order, so each impression needs only
two ``searchsorted`` look-ups -- ``end`` (first event at or after ``t``) and ``start`` (first event at or
after ``t - window_s``) -- and its sequence is ``values[end-1], values[end-2], ...`` for
``length = min(end - start, M)`` items. A :class:`SequenceColumn` stores just ``(values, end, length)``:
8 bytes per impression instead of ``4 * M``; :meth:`SequenceColumn.padded` gathers the padded
``(N, M)`` block for any set of rows (a batch) with one fancy-index.

Events at the same second keep their input order; "newest first" then reads them in reverse input order.

Letters: N impressions, E events of the pair, M max sequence length.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PAD = 0
PAD_CHUNK = 1 << 18  # rows padded per step: caps temporaries at ~2^18 * M * 17 bytes


def in_window(ts: int, now: int, window_s: int) -> bool:
    """Whether an event at ``ts`` feeds a request at ``now``: ``now - window_s <= ts < now`` (strictly
    before: an event at the request's own second never counts). The one statement of the rule for single
    events: the reference sequences here, the online store and the online features read through it."""
    return now - window_s <= ts < now


@dataclass(frozen=True)
class SequenceColumn:
    """The sequences of one (entity, action) pair for N impressions.

    ``values`` (E,) int32: the pair's event ids (already vocabulary-encoded), sorted by (user, ts).
    ``end`` (N,) int64: one past the newest event of the sequence in ``values``.
    ``length`` (N,) int32: number of events in the sequence, 0..M.
    """

    values: np.ndarray
    end: np.ndarray
    length: np.ndarray
    max_len: int

    def __len__(self) -> int:
        return int(self.end.shape[0])

    def padded(
        self, rows: np.ndarray | slice | None = None, *, trim: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Padded ids ``(n, M)`` int32 (newest at position 0, then older; 0 = padding) and lengths ``(n,)``.

        With ``trim`` the width is the longest sequence among the rows (at least 1) instead of ``M``: the
        same sequences with less padding, which every consumer masks anyway.
        """
        end = self.end if rows is None else self.end[rows]
        length = self.length if rows is None else self.length[rows]
        M = self.max_len
        if trim:
            M = max(1, int(length.max())) if length.size else 1
        n = end.shape[0]
        ids = np.zeros((n, M), dtype=np.int32)
        if self.values.shape[0] == 0 or n == 0:
            return ids, length.astype(np.int32, copy=False)
        offsets = np.arange(M, dtype=np.int64)
        for lo in range(0, n, PAD_CHUNK):  # bounded temporaries for millions of rows
            hi = min(n, lo + PAD_CHUNK)
            valid = offsets[None, :] < length[lo:hi, None]  # (c, M)
            idx = np.where(valid, end[lo:hi, None] - 1 - offsets[None, :], 0)  # (c, M)
            np.copyto(ids[lo:hi], self.values[idx], where=valid)
        return ids, length.astype(np.int32, copy=False)

    @classmethod
    def from_lists(cls, offsets: np.ndarray, flat: np.ndarray, max_len: int) -> SequenceColumn:
        """From list-shaped sequences: row ``i`` is ``flat[offsets[i]:offsets[i + 1]]``, newest first (as a
        feature store or the Spark job writes them). Each row is mirrored so its newest id sits just before
        ``end``, as :meth:`padded` reads it."""
        offsets = np.asarray(offsets, dtype=np.int64) if len(offsets) else np.zeros(1, np.int64)
        flat = np.asarray(flat, dtype=np.int32)[offsets[0] : offsets[-1]]  # a sliced list array: rebase
        offsets = offsets - offsets[0]
        lengths = np.diff(offsets)  # (N,)
        row = np.repeat(np.arange(lengths.size), lengths)  # (total,)
        mirror = offsets[row] + offsets[row + 1] - 1 - np.arange(flat.size)  # reverse inside each row
        return cls(flat[mirror], offsets[1:].copy(), np.minimum(lengths, max_len).astype(np.int32), max_len)

    def take(self, rows: np.ndarray) -> SequenceColumn:
        """The same sequences for a subset of impressions (``values`` is shared, not copied)."""
        return SequenceColumn(self.values, self.end[rows], self.length[rows], self.max_len)

    def map_values(self, lut: np.ndarray) -> SequenceColumn:
        """Re-encode ids through a look-up table (e.g. codes -> vocabulary indices)."""
        return SequenceColumn(lut[self.values].astype(np.int32), self.end, self.length, self.max_len)


@dataclass(frozen=True)
class EventIndex:
    """One pair's events sorted by (user, ts), ready to answer window queries for many impressions."""

    keys: np.ndarray  # (E,) int64 composite (user << 32 | ts - t0), ascending
    values: np.ndarray  # (E,) int32 ids in the same order
    t0: int  # time origin of the composite key

    @classmethod
    def build(cls, user: np.ndarray, ts: np.ndarray, values: np.ndarray, t0: int) -> EventIndex:
        """``user`` (E,) non-negative int codes, ``ts`` (E,) int64 seconds, ``values`` (E,) int ids."""
        keys = _composite(user, ts, t0)
        order = np.argsort(keys, kind="stable")
        return cls(keys[order], np.ascontiguousarray(values[order], dtype=np.int32), t0)

    def sequences(self, user: np.ndarray, ts: np.ndarray, window_s: int, max_len: int) -> SequenceColumn:
        """Sequences for impressions ``(user, ts)``: events in ``[ts - window_s, ts)``, newest first."""
        end = np.searchsorted(self.keys, _composite(user, ts, self.t0), side="left")
        start = np.searchsorted(self.keys, _composite(user, ts - window_s, self.t0), side="left")
        length = np.minimum(end - start, max_len).astype(np.int32)
        return SequenceColumn(self.values, end.astype(np.int64), length, max_len)


def _composite(user: np.ndarray, ts: np.ndarray, t0: int) -> np.ndarray:
    rel = np.asarray(ts, dtype=np.int64) - t0
    if rel.size and (rel.min() < 0 or rel.max() >= 1 << 32):
        raise ValueError("timestamps out of range for the sequence index (t0 must precede every ts - window)")
    return (np.asarray(user, dtype=np.int64) << 32) | rel


def time_origin(*ts_arrays: np.ndarray, window_s: int) -> int:
    """A time origin early enough for every ``ts - window_s`` of the given arrays."""
    mins = [int(a.min()) for a in ts_arrays if a.size]
    return (min(mins) if mins else 0) - int(window_s) - 1


def build_sequences(
    event_user: np.ndarray,
    event_ts: np.ndarray,
    event_values: np.ndarray,
    imp_user: np.ndarray,
    imp_ts: np.ndarray,
    *,
    window_s: int = 3600,
    max_len: int = 50,
) -> SequenceColumn:
    """One-shot helper: sequences of the given events for the given impressions."""
    if window_s < 0 or max_len < 1:
        raise ValueError(f"need window_s >= 0 and max_len >= 1, got {window_s}, {max_len}")
    t0 = time_origin(np.asarray(event_ts), np.asarray(imp_ts), window_s=window_s)
    index = EventIndex.build(event_user, event_ts, event_values, t0)
    return index.sequences(imp_user, imp_ts, window_s, max_len)


def reference_sequences(
    event_user, event_ts, event_values, imp_user, imp_ts, *, window_s: int, max_len: int
) -> list[list[int]]:
    """Plain-Python reference (slow; for tests): the same semantics, one impression at a time."""
    by_user: dict[int, list[tuple[int, int, int]]] = {}
    for i, (u, t, v) in enumerate(zip(event_user, event_ts, event_values, strict=True)):
        by_user.setdefault(int(u), []).append((int(t), i, int(v)))
    out = []
    for u, t in zip(imp_user, imp_ts, strict=True):
        events = [e for e in by_user.get(int(u), []) if in_window(e[0], t, window_s)]
        events.sort(key=lambda e: (e[0], e[1]), reverse=True)
        out.append([v for _, _, v in events[:max_len]])
    return out
