"""The online store on Redis: a Redis Stream of events plus one sorted set per (user, pair).

Layout (``P`` = the key prefix, ``K`` = the user key such as ``user:42``; ``{K}`` is a hash tag, so a
user's keys share a cluster slot):

* ``P:events`` -- a Redis Stream: every accepted event (``XADD ... MAXLEN ~ stream_maxlen``), the durable
  log other consumers (training-data jobs, a second region) can read;
* ``P:{K}:v`` -- the user's version counter (``INCR`` on every write; the score cache keys on it);
* ``P:{K}:s:PAIR`` -- a sorted set per (entity, action) pair: score = event time, member =
  ``VERSION:INDEX:VALUE`` with zero-padded version and batch index, so entries of the same second sort by
  arrival (lexicographic order of members breaks score ties).

One Lua script applies a batch atomically (one round trip): append the stream entries, bump the version,
add the members, trim each touched set by time (older than its newest entry minus the window) and length
(the newest ``max_len + extra_len``), and refresh the TTLs. A read is one pipeline: the version and, per pair,
``ZREVRANGEBYSCORE key (now now-window LIMIT 0 max_len`` (newest first; ties in reverse arrival order).

Faults: every Redis error becomes :class:`~adsformer.serving.store.StoreUnavailableError`. Reads (on the
ranking path) use a short socket timeout (``timeout_s``), writes a longer one (``write_timeout_s``): a slow
read only costs personalization, a lost write costs data. After ``open_after`` consecutive failures the
store stays "down" for ``retry_s`` seconds and fails fast, so a dead Redis costs a request nothing but the
flag ``personalized: false``; any success closes it again.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import redis

from adsformer.serving.store import SequenceItem, StoreSpec, StoreUnavailableError, UserState

_APPEND = """
local window = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local maxlen = ARGV[4]
local n_items = tonumber(ARGV[5])
local n_events = tonumber(ARGV[6])
local at = 7
for e = 1, n_events do
  local n_fields = tonumber(ARGV[at])
  local fields = {}
  for f = 1, n_fields * 2 do fields[f] = ARGV[at + f] end
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', maxlen, '*', unpack(fields))
  at = at + 1 + n_fields * 2
end
local version = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ttl)
local touched = {}
for i = 0, n_items - 1 do
  local k = tonumber(ARGV[at + 3 * i])
  local ts = ARGV[at + 3 * i + 1]
  local value = ARGV[at + 3 * i + 2]
  redis.call('ZADD', KEYS[3 + k], ts, string.format('%012d:%06d:', version, i) .. value)
  touched[k] = true
end
for k, _ in pairs(touched) do
  local key = KEYS[3 + k]
  local newest = redis.call('ZREVRANGE', key, 0, 0, 'WITHSCORES')
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. (tonumber(newest[2]) - window))
  redis.call('ZREMRANGEBYRANK', key, 0, -(cap + 1))
  redis.call('EXPIRE', key, ttl)
end
return version
"""


class RedisStore:
    """:class:`~adsformer.serving.store.OnlineStore` on a Redis server (see the module docstring)."""

    kind = "redis"

    def __init__(
        self,
        url: str,
        spec: StoreSpec | None = None,
        *,
        prefix: str = "adsformer",
        timeout_s: float = 0.1,
        write_timeout_s: float = 1.0,
        retry_s: float = 1.0,
        open_after: int = 3,
    ) -> None:
        self.spec = spec or StoreSpec()
        self.url = url
        self.prefix = prefix
        self.retry_s = retry_s
        self.open_after = max(1, open_after)
        self.client = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, decode_responses=True
        )
        self.writer = redis.Redis.from_url(
            url, socket_timeout=write_timeout_s, socket_connect_timeout=write_timeout_s, decode_responses=True
        )
        self._append = self.writer.register_script(_APPEND)
        self._down_until = 0.0
        self._failures = 0

    # -- keys ------------------------------------------------------------------------------------------
    def version_key(self, key: str) -> str:
        return f"{self.prefix}:{{{key}}}:v"

    def sequence_key(self, key: str, pair: str) -> str:
        return f"{self.prefix}:{{{key}}}:s:{pair}"

    @property
    def stream_key(self) -> str:
        return f"{self.prefix}:events"

    # -- protocol --------------------------------------------------------------------------------------
    def append(self, key: str, items: Sequence[SequenceItem], events: Sequence[dict[str, Any]]) -> int:
        pairs = sorted({item.pair for item in items})
        slot = {pair: i for i, pair in enumerate(pairs)}
        args: list[Any] = [
            self.spec.window_s,
            self.spec.keep,
            self.spec.ttl_s,
            self.spec.stream_maxlen,
            len(items),
            len(events),
        ]
        for event in events:
            fields = [(k, str(v)) for k, v in {"key": key, **event}.items() if v is not None]
            args.append(len(fields))
            for k, v in fields:
                args += [k, v]
        for item in items:
            args += [slot[item.pair], int(item.ts), item.value]
        keys = [self.version_key(key), self.stream_key, *(self.sequence_key(key, p) for p in pairs)]
        return int(self._call(lambda: self._append(keys=keys, args=args)))

    def version(self, key: str) -> int:
        value = self._call(lambda: self.client.get(self.version_key(key)))
        return int(value) if value is not None else 0

    def read(self, key: str, pairs: Sequence[str], now: int) -> UserState:
        def run() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            pipe.get(self.version_key(key))
            for pair in pairs:
                pipe.zrevrangebyscore(
                    self.sequence_key(key, pair),
                    f"({int(now)}",
                    int(now) - self.spec.window_s,
                    start=0,
                    num=self.spec.max_len,
                    withscores=True,
                )
            return pipe.execute()

        version, *seqs = self._call(run)
        out = {
            pair: [(int(score), member.split(":", 2)[2]) for member, score in entries]
            for pair, entries in zip(pairs, seqs, strict=True)
        }
        return UserState(int(version) if version is not None else 0, out)

    def ping(self) -> bool:
        try:
            ok = bool(self.client.ping())
        except redis.RedisError:
            return False
        if ok:
            self._down_until, self._failures = 0.0, 0
        return ok

    def close(self) -> None:
        self.client.close()
        self.writer.close()

    def _call(self, fn: Any) -> Any:
        if time.monotonic() < self._down_until:
            raise StoreUnavailableError(
                f"redis at {self.url} is unavailable (retrying after {self.retry_s} s)"
            )
        try:
            out = fn()
        except redis.RedisError as exc:
            self._failures += 1
            if self._failures >= self.open_after:
                self._down_until = time.monotonic() + self.retry_s
            raise StoreUnavailableError(f"redis at {self.url}: {exc}") from exc
        self._failures = 0
        return out
