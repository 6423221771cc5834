"""The online store of users' short-term sequences: the :class:`OnlineStore` protocol and :class:`InMemoryStore`.

A user key (``user:ID`` for logged-in users, ``browser:ID`` for logged-out browsers) owns one sequence per
(entity, action) pair, e.g. ``listing:view`` or ``query:search``. Each sequence holds ``(ts, value)``
entries ordered by ``(ts, arrival)``, read newest first -- events at the same second in reverse arrival
order, exactly as :mod:`adsformer.data.sequences` orders events of equal time by their input order.

Writes trim each touched sequence by time (entries older than the newest entry minus ``window_s`` can never
enter a future window) and by length (the newest ``max_len + extra_len`` stay: events at or after a
request's second must not push out what it reads), and set a TTL on the user's keys.
Every write also bumps the user's **version** (a counter), which the score cache uses to bypass entries
computed before the user's sequences changed. Reads return the entries with ``now - window_s <= ts <
now``, newest first, at most ``max_len`` per pair: the windows of :mod:`adsformer.data.sequences` for a
request at ``now`` (exact while fewer than ``extra_len`` entries of a pair are at or after ``now``).

:class:`~adsformer.serving.redis_store.RedisStore` (Redis, production) and :class:`InMemoryStore` (one
process, the demo without Redis) implement the same protocol and are tested against the same cases.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


class StoreUnavailableError(RuntimeError):
    """The online store cannot be reached (ranking falls back to non-personalized scores)."""


@dataclass(frozen=True)
class StoreSpec:
    """What the store keeps: the longest window and length any served model reads, the keys' TTL."""

    window_s: int = 3600
    max_len: int = 50
    ttl_s: int = 7200  # a user's keys expire this long after their last write
    stream_maxlen: int = 1_000_000  # events kept in the event stream (approximately, for Redis)
    # entries kept beyond max_len, so that events at or after a request's time (the same second, a client
    # clock ahead) do not push out the max_len entries the request reads
    extra_len: int = 16

    def __post_init__(self) -> None:
        if self.window_s < 1 or self.max_len < 1 or self.ttl_s < 1 or self.extra_len < 0:
            raise ValueError(f"store spec needs window_s, max_len, ttl_s >= 1 and extra_len >= 0, got {self}")

    @property
    def keep(self) -> int:
        """Entries kept per (user, pair)."""
        return self.max_len + self.extra_len


@dataclass(frozen=True)
class SequenceItem:
    """One entry to append: ``value`` (a raw id or query text) of ``pair`` at ``ts``."""

    pair: str
    ts: int
    value: str


@dataclass(frozen=True)
class UserState:
    """A user's version and sequences: pair -> [(ts, value), ...] newest first (pairs asked for only)."""

    version: int
    sequences: dict[str, list[tuple[int, str]]] = field(default_factory=dict)

    @property
    def n_events(self) -> int:
        return sum(len(v) for v in self.sequences.values())


@runtime_checkable
class OnlineStore(Protocol):
    spec: StoreSpec
    kind: str

    def append(self, key: str, items: Sequence[SequenceItem], events: Sequence[dict[str, Any]]) -> int:
        """Append ``items`` (in arrival order) to ``key``'s sequences and ``events`` to the event stream;
        trim, refresh the TTL, bump and return the new version."""
        ...

    def version(self, key: str) -> int:
        """The user's version (0 for a user never seen or expired)."""
        ...

    def read(self, key: str, pairs: Sequence[str], now: int) -> UserState:
        """The user's version and sequences of ``pairs`` for a request at ``now``."""
        ...

    def ping(self) -> bool: ...

    def close(self) -> None: ...


class InMemoryStore:
    """The protocol in one process (a lock, dicts, lazy TTL expiry); the event stream is a bounded deque."""

    kind = "memory"

    def __init__(self, spec: StoreSpec | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self.spec = spec or StoreSpec()
        self._clock = clock
        self._lock = threading.Lock()
        self._seqs: dict[str, dict[str, list[tuple[int, int, str]]]] = {}  # key -> pair -> (ts, seq, value)
        self._versions: dict[str, int] = {}
        self._expires: dict[str, float] = {}
        self._arrivals = 0
        self.stream: deque[dict[str, Any]] = deque(maxlen=self.spec.stream_maxlen)

    def append(self, key: str, items: Sequence[SequenceItem], events: Sequence[dict[str, Any]]) -> int:
        with self._lock:
            self._expire(key)
            seqs = self._seqs.setdefault(key, {})
            touched = set()
            for item in items:
                self._arrivals += 1
                seqs.setdefault(item.pair, []).append((int(item.ts), self._arrivals, item.value))
                touched.add(item.pair)
            for pair in touched:
                entries = sorted(seqs[pair])  # (ts, arrival) ascending
                newest = entries[-1][0]
                entries = [e for e in entries if e[0] >= newest - self.spec.window_s]
                seqs[pair] = entries[-self.spec.keep :]
            self._versions[key] = self._versions.get(key, 0) + 1
            self._expires[key] = self._clock() + self.spec.ttl_s
            self.stream.extend({"key": key, **e} for e in events)
            return self._versions[key]

    def version(self, key: str) -> int:
        with self._lock:
            self._expire(key)
            return self._versions.get(key, 0)

    def read(self, key: str, pairs: Sequence[str], now: int) -> UserState:
        with self._lock:
            self._expire(key)
            seqs = self._seqs.get(key, {})
            out = {}
            for pair in pairs:
                window = [
                    (ts, v)
                    for ts, _, v in reversed(seqs.get(pair, []))
                    if now - self.spec.window_s <= ts < now
                ]
                out[pair] = window[: self.spec.max_len]
            return UserState(self._versions.get(key, 0), out)

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        return None

    def _expire(self, key: str) -> None:
        if key in self._expires and self._expires[key] <= self._clock():
            self._seqs.pop(key, None)
            self._versions.pop(key, None)
            self._expires.pop(key, None)
