"""A short-lived cache of ranking results: :class:`ScoreCache`.

Keys hold the user (or browser) key, the user's store **version**, and everything else the result depends
on (query, context listing, number of ads, context features). A write to the user's sequences bumps the
version, so the next request misses and is scored afresh: the cache is bypassed exactly when the user's
sequences changed. Entries also expire after ``ttl_s`` seconds, which bounds how stale a ranking can be
when time alone moves a window or budgets change. Least recently used entries are dropped beyond
``max_entries``. Thread-safe.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any


class ScoreCache:
    """TTL + LRU cache; ``ttl_s <= 0`` disables it (every lookup misses, nothing is stored)."""

    def __init__(
        self, ttl_s: float = 5.0, max_entries: int = 10_000, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        self.ttl_s = float(ttl_s)
        self.max_entries = int(max_entries)
        self._clock = clock
        self._lock = threading.Lock()
        self._data: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
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
                    del self._data[key]
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return entry[1]

    def put(self, key: Hashable, value: Any) -> None:
        if not self.enabled:
            return
        with self._lock:
            self._data[key] = (self._clock() + self.ttl_s, value)
            self._data.move_to_end(key)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
