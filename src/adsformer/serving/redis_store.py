"""The online store on Redis: a Redis Stream of events plus one sorted set per (user, pair).

Layout (``P`` = the key prefix, ``K`` = the user key such as ``user:42``; ``{K}`` is a hash tag, so a
user's keys share a cluster slot):

* ``P:events`` -- a Redis Stream: every stored event (``XADD ... MAXLEN ~ stream_maxlen``), the log other
  consumers (training-data jobs, a second region) can read; as durable as the server's persistence
  settings make it (see docs/serving.md, Durability);
* ``P:{K}:v`` -- the user's version counter (``INCR`` on every write that stores something);
* ``P:{K}:e`` -- the user's epoch: a random token the client sends with every write, set by the write that
  creates the counter (and by any write that finds it missing), with the counter's TTL. The counter and the
  epoch vanish together (TTL, a restart without persistence, a flush), so a counter that starts again at
  0 comes with a new epoch: the score cache keys on both (:class:`~adsformer.serving.store.VersionStamp`);
* ``P:{K}:s:PAIR`` -- a sorted set per (entity, action) pair: score = event time, member =
  ``VERSION:INDEX:VALUE`` with zero-padded version and batch index, so entries of the same second sort by
  arrival (lexicographic order of members breaks score ties);
* ``P:{K}:ids`` -- the ``event_id`` s of the user's stored events (a sorted set scored by the server time
  they were stored; older than ``dedupe_ttl_s`` dropped, at most ``dedupe_max_ids``, the key's TTL
  ``dedupe_ttl_s``).

One Lua script applies a batch atomically (one round trip): skip the events whose ``event_id`` is in the
user's id set (and their entries), append the others to the stream and their ids to the set, bump the
version (a new epoch when the counter is new), add the members, trim each touched set against the server time ``now`` passed in (older than
``now - window``; the newest ``max_len + extra_len`` before ``now`` and as many at or after it, see
:mod:`adsformer.serving.store`), and refresh the TTLs. A read is one pipeline: the version and epoch
(``MGET``) and, per pair,
``ZREVRANGEBYSCORE key (now now-window LIMIT 0 max_len`` (newest first; ties in reverse arrival order).

Inputs are checked before they reach Redis (times are integers within ``[0, MAX_TS]``), so a client cannot
make a command fail. Faults: every Redis error becomes
:class:`~adsformer.serving.store.StoreUnavailableError` (its message names the server's host, port and db,
never a password; it is for logs, the HTTP layer does not show it). Reads (on the ranking path) use a short
socket timeout (``timeout_s``), writes a longer one (``write_timeout_s``): a slow read only costs
personalization, a lost write costs data. After ``open_after`` consecutive connection failures or timeouts
the store stays "down" for ``retry_s`` seconds and fails fast, so a dead Redis costs a request nothing but
the flag ``personalized: false``; any success closes it again. Errors Redis answers with (a command it
refuses) are reported the same way but do not count towards opening it: the server is there.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import redis

from adsformer.serving.store import (
    Appended,
    SequenceItem,
    StoreSpec,
    StoreUnavailableError,
    UserState,
    VersionStamp,
    check_append,
    check_now,
    new_epoch,
)

_APPEND = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local cap = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
local maxlen = ARGV[5]
local dedupe_ttl = tonumber(ARGV[6])
local dedupe_max = tonumber(ARGV[7])
local n_events = tonumber(ARGV[8])
local n_items = tonumber(ARGV[9])
local epoch = ARGV[10]
local ids = KEYS[3]
redis.call('ZREMRANGEBYSCORE', ids, '-inf', '(' .. (now - dedupe_ttl))
-- which events are duplicates (an id stored before, or twice in this batch)
local at = 11
local starts, dup, seen, duplicates = {}, {}, {}, {}
local fresh = 0
for e = 0, n_events - 1 do
  local id = ARGV[at]
  starts[e] = at
  if id ~= '' then
    if seen[id] or redis.call('ZSCORE', ids, id) then
      dup[e] = true
      duplicates[#duplicates + 1] = e
    else
      seen[id] = true
    end
  end
  if not dup[e] then fresh = fresh + 1 end
  at = at + 2 + tonumber(ARGV[at + 1]) * 2
end
local items_at = at
local kept = 0
for i = 0, n_items - 1 do
  local ev = tonumber(ARGV[items_at + 4 * i + 3])
  if ev < 0 or not dup[ev] then kept = kept + 1 end
end
if fresh == 0 and kept == 0 then
  return {tonumber(redis.call('GET', KEYS[1]) or '0'), 0, 0, duplicates}
end
for e = 0, n_events - 1 do
  if not dup[e] then
    local a = starts[e]
    local n_fields = tonumber(ARGV[a + 1])
    local fields = {}
    for f = 1, n_fields * 2 do fields[f] = ARGV[a + 1 + f] end
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', maxlen, '*', unpack(fields))
    if ARGV[a] ~= '' then redis.call('ZADD', ids, now, ARGV[a]) end
  end
end
redis.call('ZREMRANGEBYRANK', ids, 0, -(dedupe_max + 1))
redis.call('EXPIRE', ids, dedupe_ttl)
local version = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ttl)
if version == 1 then  -- a new counter: a new epoch, whatever the old key says
  redis.call('SET', KEYS[4], epoch, 'EX', ttl)
else
  redis.call('SET', KEYS[4], epoch, 'EX', ttl, 'NX')
  redis.call('EXPIRE', KEYS[4], ttl)
end
local touched = {}
local n = 0
for i = 0, n_items - 1 do
  local b = items_at + 4 * i
  local ev = tonumber(ARGV[b + 3])
  if ev < 0 or not dup[ev] then
    local k = tonumber(ARGV[b])
    redis.call('ZADD', KEYS[5 + k], ARGV[b + 1], string.format('%012d:%06d:', version, i) .. ARGV[b + 2])
    touched[k] = true
    n = n + 1
  end
end
for k, _ in pairs(touched) do
  local key = KEYS[5 + k]
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. (now - window))
  local before = redis.call('ZCOUNT', key, '-inf', '(' .. now)
  if before > cap then
    redis.call('ZREMRANGEBYRANK', key, 0, before - cap - 1)
    before = cap
  end
  local after = redis.call('ZCARD', key) - before
  if after > cap then
    redis.call('ZREMRANGEBYRANK', key, before, before + after - cap - 1)
  end
  redis.call('EXPIRE', key, ttl)
end
return {version, fresh, n, duplicates}
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
        self.url = url  # may hold a password: never put it in a message
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
        kw = self.client.connection_pool.connection_kwargs
        self.where = (
            f"redis at {kw.get('host', 'localhost')}:{kw.get('port', 6379)}/{kw.get('db', 0)}"
            if "path" not in kw
            else "redis on a unix socket"
        )

    # -- keys ------------------------------------------------------------------------------------------
    def version_key(self, key: str) -> str:
        return f"{self.prefix}:{{{key}}}:v"

    def epoch_key(self, key: str) -> str:
        return f"{self.prefix}:{{{key}}}:e"

    def sequence_key(self, key: str, pair: str) -> str:
        return f"{self.prefix}:{{{key}}}:s:{pair}"

    def ids_key(self, key: str) -> str:
        return f"{self.prefix}:{{{key}}}:ids"

    @property
    def stream_key(self) -> str:
        return f"{self.prefix}:events"

    # -- protocol --------------------------------------------------------------------------------------
    def append(
        self,
        key: str,
        items: Sequence[SequenceItem],
        events: Sequence[dict[str, Any]],
        *,
        now: int | None = None,
    ) -> Appended:
        now = int(time.time()) if now is None else int(now)
        check_append(items, events, now)
        pairs = sorted({item.pair for item in items})
        slot = {pair: i for i, pair in enumerate(pairs)}
        spec = self.spec
        args: list[Any] = [
            now,
            spec.window_s,
            spec.keep,
            spec.ttl_s,
            spec.stream_maxlen,
            spec.dedupe_ttl_s,
            spec.dedupe_max_ids,
            len(events),
            len(items),
            new_epoch(),
        ]
        for event in events:
            fields = [(k, str(v)) for k, v in {"key": key, **event}.items() if v is not None]
            event_id = event.get("event_id")
            args += ["" if event_id is None else str(event_id), len(fields)]
            for k, v in fields:
                args += [k, v]
        for item in items:
            args += [slot[item.pair], int(item.ts), item.value, int(item.event)]
        keys = [
            self.version_key(key),
            self.stream_key,
            self.ids_key(key),
            self.epoch_key(key),
            *(self.sequence_key(key, p) for p in pairs),
        ]
        version, stored, entries, duplicates = self._call(lambda: self._append(keys=keys, args=args))
        return Appended(int(version), int(stored), int(entries), tuple(int(i) for i in duplicates))

    def version(self, key: str) -> int:
        return self.stamp(key).version

    def stamp(self, key: str) -> VersionStamp:
        version, epoch = self._call(lambda: self.client.mget(self.version_key(key), self.epoch_key(key)))
        return VersionStamp(epoch or "", int(version) if version is not None else 0)

    def read(self, key: str, pairs: Sequence[str], now: int) -> UserState:
        check_now(int(now))

        def run() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            pipe.mget(self.version_key(key), self.epoch_key(key))
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

        (version, epoch), *seqs = self._call(run)
        out = {
            pair: [(int(score), member.split(":", 2)[2]) for member, score in entries]
            for pair, entries in zip(pairs, seqs, strict=True)
        }
        return UserState(int(version) if version is not None else 0, out, epoch or "")

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
            raise StoreUnavailableError(f"{self.where} is unavailable (retrying after {self.retry_s} s)")
        try:
            out = fn()
        except (redis.ConnectionError, redis.TimeoutError) as exc:  # the server is away or too slow
            self._failures += 1
            if self._failures >= self.open_after:
                self._down_until = time.monotonic() + self.retry_s
            raise StoreUnavailableError(f"{self.where}: {exc}") from exc
        except redis.RedisError as exc:  # the server answered with an error: it is there, keep trying it
            self._failures = 0
            raise StoreUnavailableError(f"{self.where} refused the command: {exc}") from exc
        self._failures = 0
        return out
