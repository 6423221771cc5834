"""The online store of users' short-term sequences: the :class:`OnlineStore` protocol and :class:`InMemoryStore`.

A user key (``user:ID`` for logged-in users, ``browser:ID`` for logged-out browsers) owns one sequence per
(entity, action) pair, e.g. ``listing:view`` or ``query:search``. Each sequence holds ``(ts, value)``
entries ordered by ``(ts, arrival)``, read newest first -- events at the same second in reverse arrival
order, exactly as :mod:`adsformer.data.sequences` orders events of equal time by their input order.

Writes happen at the **server's** clock ``now`` (never an event's own time, so one event dated in the future
cannot push the others out): each touched sequence is trimmed by time (entries older than ``now -
window_s`` can never enter a future window) and by length, separately before and after ``now``: the newest
``max_len + extra_len`` entries dated before ``now`` stay, and at most as many dated at or after it (a
client's clock ahead of the server's, events of this very second). A write also sets a TTL on the user's
keys and bumps the user's **version** (a counter), which the score cache uses to bypass entries computed
before the user's sequences changed. The write that creates a user's keys also gives them a new **epoch**
(a random token): when the keys vanish (their TTL, a Redis restart without persistence, a flush) the
counter starts again at 0, but under another epoch, so the pair (:class:`VersionStamp`) never names two
different states of a user's sequences. Reads return the entries with ``now - window_s <= ts < now``, newest
first, at most ``max_len`` per pair: the windows of :mod:`adsformer.data.sequences` for a request at
``now`` (exact while no more than ``max_len + extra_len`` entries of a pair were at or after a write's
``now``).

**Idempotent writes**: an event may carry an ``event_id`` (a client's key for it). The store remembers the
ids of each user's stored events for ``dedupe_ttl_s`` (at most ``dedupe_max_ids`` per user, the oldest
forgotten first); an event whose id it remembers -- a retried batch, or the same id twice in one batch -- is
skipped, with its entries, in the same atomic step. A batch of nothing but duplicates changes nothing (not
even the version). Events without an id are always stored.

:class:`~adsformer.serving.redis_store.RedisStore` (Redis, production) and :class:`InMemoryStore` (one
process, the demo without Redis) implement the same protocol and are tested against the same cases.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from adsformer.data.sequences import in_window

#: The latest time (Unix seconds) a store accepts: before the year 2286, exact as a Redis score (a double);
#: larger values are rejected before they reach the store (in milliseconds, a time is about 1000x larger).
MAX_TS = 10_000_000_000


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
    dedupe_ttl_s: int = 86_400  # how long a stored event's event_id is remembered
    dedupe_max_ids: int = 10_000  # event_ids remembered per user

    def __post_init__(self) -> None:
        if min(self.window_s, self.max_len, self.ttl_s, self.dedupe_ttl_s, self.dedupe_max_ids) < 1 or (
            self.extra_len < 0
        ):
            raise ValueError(
                "store spec needs window_s, max_len, ttl_s, dedupe_ttl_s, dedupe_max_ids >= 1 and "
                f"extra_len >= 0, got {self}"
            )

    @property
    def keep(self) -> int:
        """Entries kept per (user, pair)."""
        return self.max_len + self.extra_len


@dataclass(frozen=True)
class SequenceItem:
    """One entry to append: ``value`` (a raw id or query text) of ``pair`` at ``ts``; ``event`` is the index
    of the event (in the same append) it comes from, -1 for none (then it is stored whatever the events)."""

    pair: str
    ts: int
    value: str
    event: int = -1


@dataclass(frozen=True)
class Appended:
    """What an append stored: the user's version after it, the events and entries stored, and the indices
    of the events skipped as duplicates (an ``event_id`` already stored)."""

    version: int
    events: int
    entries: int
    duplicates: tuple[int, ...] = ()


@dataclass(frozen=True)
class VersionStamp:
    """Names one state of a user's sequences (the score cache keys on it): ``version`` counts the writes that
    stored something since the user's keys were created, ``epoch`` names that creation ("" while the user
    has no keys). Equal stamps of a user mean equal sequences, across expiries and store restarts."""

    epoch: str
    version: int


@dataclass(frozen=True)
class UserState:
    """A user's version and sequences: pair -> [(ts, value), ...] newest first (pairs asked for only), and
    the epoch of the user's keys (see :class:`VersionStamp`)."""

    version: int
    sequences: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    epoch: str = ""

    @property
    def n_events(self) -> int:
        return sum(len(v) for v in self.sequences.values())

    @property
    def stamp(self) -> VersionStamp:
        return VersionStamp(self.epoch, self.version)


def new_epoch() -> str:
    """A fresh epoch token (64 random bits, hex)."""
    return secrets.token_hex(8)


def check_now(now: int) -> None:
    if not 0 <= now <= MAX_TS:
        raise ValueError(f"now {now} is outside [0, {MAX_TS}]")


def check_append(items: Sequence[SequenceItem], events: Sequence[dict[str, Any]], now: int) -> None:
    """Raise ``ValueError`` unless every time is an integer in ``[0, MAX_TS]`` and every item's event
    index names one of ``events`` (or is -1): what a store is asked to do never fails inside the store."""
    check_now(now)
    for item in items:
        if not isinstance(item.ts, int) or not 0 <= item.ts <= MAX_TS:
            raise ValueError(f"entry time {item.ts!r} is not an integer in [0, {MAX_TS}]")
        if not -1 <= item.event < len(events):
            raise ValueError(f"entry of event {item.event} in a batch of {len(events)} events")
    for event in events:
        event_id = event.get("event_id")
        if event_id is not None and not (isinstance(event_id, str) and 0 < len(event_id) <= 256):
            raise ValueError(f"event_id {event_id!r} is not a string of 1 to 256 characters")


@runtime_checkable
class OnlineStore(Protocol):
    spec: StoreSpec
    kind: str

    def append(
        self,
        key: str,
        items: Sequence[SequenceItem],
        events: Sequence[dict[str, Any]],
        *,
        now: int | None = None,
    ) -> Appended:
        """Append ``items`` (in arrival order) to ``key``'s sequences and ``events`` to the event stream,
        skipping events whose ``event_id`` is already stored (and their items); trim against ``now`` (the
        server clock; default the store's clock), refresh the TTLs, bump the version. Atomic."""
        ...

    def version(self, key: str) -> int:
        """The user's version (0 for a user never seen or expired)."""
        ...

    def stamp(self, key: str) -> VersionStamp:
        """The user's epoch and version, in one look-up."""
        ...

    def read(self, key: str, pairs: Sequence[str], now: int) -> UserState:
        """The user's version, epoch and sequences of ``pairs`` for a request at ``now``."""
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
        self._epochs: dict[str, str] = {}  # key -> epoch of its current keys (set with its first version)
        self._expires: dict[str, float] = {}
        self._ids: dict[str, dict[str, int]] = {}  # key -> event_id -> when stored (insertion order)
        self._arrivals = 0
        self._appends = 0
        self._latest = 0  # the latest write's now (the clock of the remembered event_ids)
        self.stream: deque[dict[str, Any]] = deque(maxlen=self.spec.stream_maxlen)

    def append(
        self,
        key: str,
        items: Sequence[SequenceItem],
        events: Sequence[dict[str, Any]],
        *,
        now: int | None = None,
    ) -> Appended:
        now = int(self._clock()) if now is None else int(now)
        check_append(items, events, now)
        with self._lock:
            self._appends += 1
            self._latest = max(self._latest, now)
            if self._appends % 1024 == 0:
                self._sweep()
            self._expire(key)
            ids = self._ids.setdefault(key, {})
            for old in [i for i, t in ids.items() if t < now - self.spec.dedupe_ttl_s]:
                del ids[old]
            fresh, duplicates = [], []
            for i, event in enumerate(events):
                event_id = event.get("event_id")
                if event_id is not None and str(event_id) in ids:
                    duplicates.append(i)
                    continue
                if event_id is not None:
                    ids[str(event_id)] = now
                fresh.append(event)
            while len(ids) > self.spec.dedupe_max_ids:
                del ids[next(iter(ids))]
            if not ids:
                self._ids.pop(key, None)
            skip = set(duplicates)
            kept = [item for item in items if item.event not in skip]
            if not fresh and not kept:
                return Appended(self._versions.get(key, 0), 0, 0, tuple(duplicates))
            seqs = self._seqs.setdefault(key, {})
            touched = set()
            for item in kept:
                self._arrivals += 1
                seqs.setdefault(item.pair, []).append((int(item.ts), self._arrivals, item.value))
                touched.add(item.pair)
            keep = self.spec.keep
            for pair in touched:
                entries = sorted(e for e in seqs[pair] if e[0] >= now - self.spec.window_s)  # (ts, arrival)
                before = [e for e in entries if e[0] < now][-keep:]
                after = [e for e in entries if e[0] >= now][-keep:]
                seqs[pair] = before + after
            if key not in self._versions:  # the write that creates the user's keys: a new epoch
                self._epochs[key] = new_epoch()
            self._versions[key] = self._versions.get(key, 0) + 1
            self._expires[key] = self._clock() + self.spec.ttl_s
            self.stream.extend({"key": key, **e} for e in fresh)
            return Appended(self._versions[key], len(fresh), len(kept), tuple(duplicates))

    def version(self, key: str) -> int:
        return self.stamp(key).version

    def stamp(self, key: str) -> VersionStamp:
        with self._lock:
            self._expire(key)
            return VersionStamp(self._epochs.get(key, ""), self._versions.get(key, 0))

    def read(self, key: str, pairs: Sequence[str], now: int) -> UserState:
        check_now(now)
        with self._lock:
            self._expire(key)
            seqs = self._seqs.get(key, {})
            out = {}
            for pair in pairs:
                window = [
                    (ts, v)
                    for ts, _, v in reversed(seqs.get(pair, []))
                    if in_window(ts, now, self.spec.window_s)
                ]
                out[pair] = window[: self.spec.max_len]
            return UserState(self._versions.get(key, 0), out, self._epochs.get(key, ""))

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        return None

    def _sweep(self) -> None:
        """Drop every expired user and forgotten event_id (lazy expiry alone keeps users never seen again)."""
        for key in [k for k, t in self._expires.items() if t <= self._clock()]:
            self._expire(key)
        horizon = self._latest - self.spec.dedupe_ttl_s
        for key in [k for k, ids in self._ids.items() if max(ids.values(), default=horizon - 1) < horizon]:
            del self._ids[key]

    def _expire(self, key: str) -> None:
        if key in self._expires and self._expires[key] <= self._clock():
            self._seqs.pop(key, None)
            self._versions.pop(key, None)
            self._epochs.pop(key, None)
            self._expires.pop(key, None)
