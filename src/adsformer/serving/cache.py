"""A short-lived cache of ranking results: :class:`ScoreCache`.

Keys hold the user (or browser) key, the user's store **version stamp** (the version counter and the epoch
of the user's keys, :class:`~adsformer.serving.store.VersionStamp`), and everything else the result depends
on (query, context listing, number of ads, context features). A write to the user's sequences bumps the
version, so the next request misses and is scored afresh: the cache is bypassed exactly when the user's
sequences changed -- also when the counter started again from 0 (the keys expired, Redis restarted
without persistence), since that comes with a new epoch. Entries also expire after ``ttl_s`` seconds, which bounds how stale a ranking can be
when time alone moves a window or budgets change.

Memory is bounded whatever the requests: at most ``max_entries`` entries and ``max_bytes`` (an estimate of
the keys' and results' sizes, :func:`approx_bytes`); least recently used entries are dropped beyond either,
and expired entries are dropped on every write (not only when looked up again). Thread-safe.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from typing import Any


def approx_bytes(obj: Any, _depth: int = 0) -> int:
    """Approximate memory of ``obj`` and what it holds (tuples, lists, dicts, dataclasses, scalars)."""
    size = sys.getsizeof(obj)
    if _depth > 6:
        return size
    if isinstance(obj, (tuple, list, set, frozenset)):
        return size + sum(approx_bytes(x, _depth + 1) for x in obj)
    if isinstance(obj, dict):
        return size + sum(approx_bytes(k, _depth + 1) + approx_bytes(v, _depth + 1) for k, v in obj.items())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return size + sum(approx_bytes(getattr(obj, f.name), _depth + 1) for f in dataclasses.fields(obj))
    return size


class ScoreCache:
    """TTL + LRU cache bounded in entries and bytes; ``ttl_s <= 0`` disables it (every lookup misses,
    nothing is stored)."""

    def __init__(
        self,
        ttl_s: float = 5.0,
        max_entries: int = 10_000,
        max_bytes: int = 64 << 20,
        *,
        clock: Callable[[], float] = time.monotonic,
        size_of: Callable[[Any], int] = approx_bytes,
    ) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ValueError(f"max_entries and max_bytes must be >= 1, got {max_entries}, {max_bytes}")
        self.ttl_s = float(ttl_s)
        self.max_entries = int(max_entries)
        self.max_bytes = int(max_bytes)
        self._clock = clock
        self._size_of = size_of
        self._lock = threading.Lock()
        self._data: OrderedDict[Hashable, tuple[float, Any, int]] = OrderedDict()  # LRU order
        self._expiry: deque[tuple[float, Hashable]] = deque()  # insertion order = expiry order (one TTL)
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.ttl_s > 0

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            entry = self._data.get(key)
            if entry is None or entry[0] <= self._clock():
                if entry is not None:
                    self._drop(key)
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return entry[1]

    def put(self, key: Hashable, value: Any) -> None:
        if not self.enabled:
            return
        size = self._size_of(key) + self._size_of(value)
        if size > self.max_bytes:
            return
        with self._lock:
            now = self._clock()
            self._evict_expired(now)
            if key in self._data:
                self._drop(key)
            expires = now + self.ttl_s
            self._data[key] = (expires, value, size)
            self._expiry.append((expires, key))
            self.bytes += size
            while len(self._data) > self.max_entries or self.bytes > self.max_bytes:
                self._drop(next(iter(self._data)))
            if len(self._expiry) > 2 * self.max_entries:  # records of entries dropped early: rebuild
                self._expiry = deque(sorted(((e[0], k) for k, e in self._data.items()), key=lambda r: r[0]))

    def _evict_expired(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] <= now:
            expires, key = self._expiry.popleft()
            entry = self._data.get(key)
            if entry is not None and entry[0] == expires:
                self._drop(key)

    def _drop(self, key: Hashable) -> None:
        _, _, size = self._data.pop(key)
        self.bytes -= size

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._expiry.clear()
            self.bytes = 0
