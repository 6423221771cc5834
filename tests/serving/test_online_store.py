"""The online store protocol, on a real Redis server and in process: window, cap, order, versions, TTL,
the event stream, and agreement with the offline sequence builder on random event streams."""

from __future__ import annotations

import numpy as np
import pytest

from adsformer.data.sequences import reference_sequences
from adsformer.serving.redis_store import RedisStore
from adsformer.serving.store import InMemoryStore, OnlineStore, SequenceItem, StoreSpec, StoreUnavailableError

PAIR = "listing:view"


@pytest.fixture(params=["memory", "redis"])
def make_store(request):
    servers = []

    def make(spec: StoreSpec) -> OnlineStore:
        if request.param == "memory":
            return InMemoryStore(spec)
        if not servers:
            from conftest import start_redis

            servers.append(start_redis())
        return RedisStore(servers[0].url, spec, prefix=f"t{len(servers)}", timeout_s=1.0)

    yield make
    for s in servers:
        s.stop()


def _items(pairs_ts_values):
    return [SequenceItem(p, ts, v) for p, ts, v in pairs_ts_values]


def test_window_cap_and_newest_first(make_store):
    store = make_store(StoreSpec(window_s=100, max_len=3, ttl_s=60))
    assert isinstance(store, OnlineStore)
    assert store.version("user:a") == 0
    v = store.append("user:a", _items([(PAIR, t, f"l{t}") for t in (10, 20, 30, 40)]), [])
    assert v == 1
    state = store.read("user:a", [PAIR, "shop:view"], now=45)
    assert state.version == 1
    assert state.sequences[PAIR] == [(40, "l40"), (30, "l30"), (20, "l20")]  # capped at 3, newest first
    assert state.sequences["shop:view"] == []
    # strictly before; the entries kept beyond max_len (extra_len) let a request at 40 still read 3
    assert store.read("user:a", [PAIR], now=40).sequences[PAIR] == [(30, "l30"), (20, "l20"), (10, "l10")]
    assert store.read("user:a", [PAIR], now=125).sequences[PAIR] == [(40, "l40"), (30, "l30")]  # [25, 125)
    assert store.read("user:b", [PAIR], now=45).sequences[PAIR] == []  # unknown users are fine


def test_cap_without_extra_entries(make_store):
    store = make_store(StoreSpec(window_s=100, max_len=3, ttl_s=60, extra_len=0))
    store.append("user:a", _items([(PAIR, t, f"l{t}") for t in (10, 20, 30, 40)]), [])
    assert store.read("user:a", [PAIR], now=40).sequences[PAIR] == [(30, "l30"), (20, "l20")]  # 10 dropped


def test_same_second_in_reverse_arrival_order_and_late_events_sorted(make_store):
    store = make_store(StoreSpec(window_s=100, max_len=10, ttl_s=60))
    store.append("user:a", _items([(PAIR, 50, "x"), (PAIR, 50, "y")]), [])
    store.append("user:a", _items([(PAIR, 50, "z"), (PAIR, 20, "late")]), [])
    seq = store.read("user:a", [PAIR], now=60).sequences[PAIR]
    assert seq == [(50, "z"), (50, "y"), (50, "x"), (20, "late")]
    assert store.version("user:a") == 2


def test_time_trim_on_write(make_store):
    store = make_store(StoreSpec(window_s=100, max_len=10, ttl_s=60))
    store.append("user:a", _items([(PAIR, 10, "old"), (PAIR, 150, "mid")]), [])
    store.append("user:a", _items([(PAIR, 200, "new")]), [])  # "old" (< 200 - 100) can never be read again
    if isinstance(store, RedisStore):
        assert store.client.zcard(store.sequence_key("user:a", PAIR)) == 2
    assert store.read("user:a", [PAIR], now=195).sequences[PAIR] == [(150, "mid")]


def test_values_with_colons_and_spaces_survive(make_store):
    store = make_store(StoreSpec(window_s=100, max_len=10, ttl_s=60))
    store.append("browser:b:1", _items([("query:search", 5, "red: mug  large")]), [])
    assert store.read("browser:b:1", ["query:search"], now=6).sequences["query:search"] == [
        (5, "red: mug  large")
    ]


def test_events_reach_the_stream_and_keys_get_a_ttl(make_store):
    store = make_store(StoreSpec(window_s=100, max_len=10, ttl_s=60))
    events = [{"ts": 5, "action": "view", "listing_id": "l1"}, {"ts": 6, "action": "search", "query": "mug"}]
    store.append("user:a", _items([(PAIR, 5, "l1")]), events)
    if isinstance(store, RedisStore):
        assert store.client.xlen(store.stream_key) == 2
        last = store.client.xrevrange(store.stream_key, count=1)[0][1]
        assert last == {"key": "user:a", "ts": "6", "action": "search", "query": "mug"}
        assert 0 < store.client.ttl(store.sequence_key("user:a", PAIR)) <= 60
        assert 0 < store.client.ttl(store.version_key("user:a")) <= 60
    else:
        assert [e["action"] for e in store.stream] == ["view", "search"]


def test_memory_store_expires_users_after_the_ttl():
    now = [1000.0]
    store = InMemoryStore(StoreSpec(window_s=100, max_len=10, ttl_s=60), clock=lambda: now[0])
    store.append("user:a", _items([(PAIR, 5, "l1")]), [])
    now[0] += 59
    assert store.version("user:a") == 1
    now[0] += 2
    assert store.version("user:a") == 0 and store.read("user:a", [PAIR], now=6).sequences[PAIR] == []


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_streams_match_the_offline_builder(make_store, seed):
    """Events arriving in random batches, out of time order, with ties: what the store serves at ``now``
    equals :func:`reference_sequences` over the same events in arrival order."""
    rng = np.random.default_rng(seed)
    window, cap = 300, 7
    store = make_store(StoreSpec(window_s=window, max_len=cap, ttl_s=600))
    ts = np.sort(rng.integers(0, 1000, 120))
    ts = ts + rng.integers(-20, 1, ts.size)  # some events arrive late (out of order)
    values = [f"l{v}" for v in rng.integers(0, 30, ts.size)]
    start = 0
    while start < ts.size:
        stop = start + int(rng.integers(1, 9))
        store.append(
            "user:a",
            _items([(PAIR, int(t), v) for t, v in zip(ts[start:stop], values[start:stop], strict=False)]),
            [],
        )
        start = stop
    now = int(ts.max()) + int(rng.integers(1, 50))
    codes = np.array([int(v[1:]) for v in values])
    (ref,) = reference_sequences(np.zeros(ts.size), ts, codes, [0], [now], window_s=window, max_len=cap)
    got = store.read("user:a", [PAIR], now=now).sequences[PAIR]
    assert [v for _, v in got] == [f"l{c}" for c in ref]


def test_unreachable_redis_fails_fast_as_store_unavailable():
    store = RedisStore("redis://127.0.0.1:1/0", StoreSpec(), timeout_s=0.05, retry_s=5.0, open_after=2)
    for _ in range(2):  # each failure is reported; the second opens the breaker
        with pytest.raises(StoreUnavailableError, match=r"redis at .*:1/0: "):
            store.version("user:a")
    with pytest.raises(StoreUnavailableError, match="retrying"):  # within retry_s: no new connection attempt
        store.read("user:a", [PAIR], now=10)
    with pytest.raises(StoreUnavailableError, match="retrying"):
        store.append("user:a", [SequenceItem(PAIR, 1, "l1")], [])
    assert store.ping() is False
