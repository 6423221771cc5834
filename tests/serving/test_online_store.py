"""The online store protocol, on a real Redis server and in process: window, cap, order, versions, TTL,
the event stream, and agreement with the offline sequence builder on random event streams."""

from __future__ import annotations

import time

import numpy as np
import pytest

from adsformer.data.sequences import reference_sequences
from adsformer.serving.redis_store import RedisStore
from adsformer.serving.store import (
    InMemoryStore,
    OnlineStore,
    SequenceItem,
    StoreSpec,
    StoreUnavailableError,
    VersionStamp,
)

PAIR = "listing:view"


@pytest.fixture(params=["memory", "redis"])
def make_store(request, tmp_path):
    servers = []

    def make(spec: StoreSpec) -> OnlineStore:
        if request.param == "memory":
            return InMemoryStore(spec)
        if not servers:
            from conftest import start_redis

            servers.append(start_redis(tmp_path))
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
    v = store.append("user:a", _items([(PAIR, t, f"l{t}") for t in (10, 20, 30, 40)]), [], now=41)
    assert v.version == 1 and v.entries == 4 and v.duplicates == ()
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
    store.append("user:a", _items([(PAIR, t, f"l{t}") for t in (10, 20, 30, 40)]), [], now=41)
    assert store.read("user:a", [PAIR], now=40).sequences[PAIR] == [(30, "l30"), (20, "l20")]  # 10 dropped


def test_same_second_in_reverse_arrival_order_and_late_events_sorted(make_store):
    store = make_store(StoreSpec(window_s=100, max_len=10, ttl_s=60))
    store.append("user:a", _items([(PAIR, 50, "x"), (PAIR, 50, "y")]), [], now=51)
    store.append("user:a", _items([(PAIR, 50, "z"), (PAIR, 20, "late")]), [], now=51)
    seq = store.read("user:a", [PAIR], now=60).sequences[PAIR]
    assert seq == [(50, "z"), (50, "y"), (50, "x"), (20, "late")]
    assert store.version("user:a") == 2


def test_time_trim_on_write(make_store):
    store = make_store(StoreSpec(window_s=100, max_len=10, ttl_s=60))
    store.append("user:a", _items([(PAIR, 10, "old"), (PAIR, 150, "mid")]), [], now=150)
    # at server time 200, "old" (< 200 - 100) can never be read again
    store.append("user:a", _items([(PAIR, 200, "new")]), [], now=200)
    if isinstance(store, RedisStore):
        assert store.client.zcard(store.sequence_key("user:a", PAIR)) == 2
    assert store.read("user:a", [PAIR], now=195).sequences[PAIR] == [(150, "mid")]


def test_values_with_colons_and_spaces_survive(make_store):
    store = make_store(StoreSpec(window_s=100, max_len=10, ttl_s=60))
    store.append("browser:b:1", _items([("query:search", 5, "red: mug  large")]), [], now=6)
    assert store.read("browser:b:1", ["query:search"], now=6).sequences["query:search"] == [
        (5, "red: mug  large")
    ]


def test_events_reach_the_stream_and_keys_get_a_ttl(make_store):
    store = make_store(StoreSpec(window_s=100, max_len=10, ttl_s=60))
    events = [{"ts": 5, "action": "view", "listing_id": "l1"}, {"ts": 6, "action": "search", "query": "mug"}]
    store.append("user:a", _items([(PAIR, 5, "l1")]), events, now=7)
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
    store.append("user:a", _items([(PAIR, 5, "l1")]), [], now=6)
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
    ts = ts + rng.integers(-20, 1, ts.size) + 20  # some events arrive late (out of order); all >= 0
    values = [f"l{v}" for v in rng.integers(0, 30, ts.size)]
    start = 0
    while start < ts.size:  # the server clock: a second after the latest event so far
        stop = start + int(rng.integers(1, 9))
        store.append(
            "user:a",
            _items([(PAIR, int(t), v) for t, v in zip(ts[start:stop], values[start:stop], strict=False)]),
            [],
            now=int(ts[:stop].max()) + 1,
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


def _event_items(pairs_ts_values_events):
    return [SequenceItem(p, ts, v, event=e) for p, ts, v, e in pairs_ts_values_events]


def test_retried_events_with_an_event_id_are_stored_once(make_store):
    store = make_store(StoreSpec(window_s=100, max_len=10, ttl_s=60, dedupe_ttl_s=50))
    events = [
        {"ts": 10, "action": "view", "listing_id": "l1", "event_id": "e1"},
        {"ts": 11, "action": "view", "listing_id": "l2", "event_id": "e2"},
        {"ts": 12, "action": "view", "listing_id": "l3"},  # no id: always stored
    ]
    items = _event_items([(PAIR, 10, "l1", 0), (PAIR, 11, "l2", 1), (PAIR, 12, "l3", 2)])
    first = store.append("user:a", items, events, now=20)
    assert (first.version, first.events, first.entries, first.duplicates) == (1, 3, 3, ())
    retry = store.append("user:a", items[:2], events[:2], now=21)  # the same batch again: nothing new
    assert (retry.version, retry.events, retry.entries, retry.duplicates) == (1, 0, 0, (0, 1))
    assert store.version("user:a") == 1
    overlap = store.append(
        "user:a",
        _event_items([(PAIR, 11, "l2", 0), (PAIR, 13, "l4", 1), (PAIR, 13, "l4", 2)]),
        [
            events[1],
            {**events[1], "ts": 13, "listing_id": "l4", "event_id": "e4"},
            {"ts": 13, "action": "view", "event_id": "e4"},
        ],
        now=22,
    )  # e2 again, e4 new, e4 twice in one batch
    assert (overlap.version, overlap.events, overlap.entries, overlap.duplicates) == (2, 1, 1, (0, 2))
    got = [v for _, v in store.read("user:a", [PAIR], now=30).sequences[PAIR]]
    assert got == ["l4", "l3", "l2", "l1"]
    if isinstance(store, RedisStore):
        assert store.client.xlen(store.stream_key) == 4
        assert store.client.zcard(store.ids_key("user:a")) == 3
        assert 0 < store.client.ttl(store.ids_key("user:a")) <= 50
    else:
        assert [e.get("event_id") for e in store.stream] == ["e1", "e2", None, "e4"]
    # ids are remembered for dedupe_ttl_s of server time, then the same id is a new event
    later = store.append("user:a", items[:1], events[:1], now=20 + 51)
    assert later.events == 1 and later.duplicates == ()


def test_remembered_ids_are_bounded_per_user(make_store):
    store = make_store(StoreSpec(window_s=100, max_len=10, ttl_s=60, dedupe_max_ids=3))
    for i in range(5):
        store.append("user:a", [], [{"ts": 10, "action": "view", "event_id": f"e{i}"}], now=20)
    assert store.append(
        "user:a", [], [{"ts": 10, "action": "view", "event_id": "e4"}], now=20
    ).duplicates == (0,)
    assert store.append("user:a", [], [{"ts": 10, "action": "view", "event_id": "e0"}], now=20).events == 1


def test_a_future_dated_event_does_not_wipe_history(make_store):
    """Trimming goes by the server clock: events dated ahead of it neither move the window nor push the
    others out through the length cap."""
    store = make_store(StoreSpec(window_s=100, max_len=5, ttl_s=600, extra_len=2))
    now = 1_000
    store.append("user:a", _items([(PAIR, now - 50 + i, f"l{i}") for i in range(5)]), [], now=now)
    store.append("user:a", _items([(PAIR, now + 86_400, "tomorrow")]), [], now=now)
    store.append("user:a", _items([(PAIR, now + 5, f"f{i}") for i in range(70)]), [], now=now)
    assert [v for _, v in store.read("user:a", [PAIR], now=now).sequences[PAIR]] == [
        f"l{i}" for i in (4, 3, 2, 1, 0)
    ]
    store.append("user:a", _items([(PAIR, now - 1, "real")]), [], now=now)  # later real events are kept
    assert store.read("user:a", [PAIR], now=now).sequences[PAIR][0] == (now - 1, "real")
    if isinstance(store, RedisStore):  # at most max_len + extra_len before and as many after the clock
        assert store.client.zcard(store.sequence_key("user:a", PAIR)) == 6 + 7


@pytest.mark.parametrize("ts", [-1, 10**400, 10**11, 2**63])
def test_times_out_of_range_never_reach_the_store(make_store, ts):
    store = make_store(StoreSpec(window_s=100, max_len=5, ttl_s=60))
    with pytest.raises(ValueError, match="not an integer in"):
        store.append("user:a", _items([(PAIR, ts, "x")]), [], now=10)
    with pytest.raises(ValueError, match="outside"):
        store.read("user:a", [PAIR], now=ts)
    assert store.version("user:a") == 0


def test_refused_commands_do_not_open_the_breaker(redis_server):
    store = RedisStore(redis_server.url, StoreSpec(), timeout_s=1.0, retry_s=60.0, open_after=1)
    for _ in range(5):
        with pytest.raises(StoreUnavailableError, match="refused the command"):
            store._call(lambda: store.client.execute_command("NO.SUCH.COMMAND"))
    assert store.version("user:a") == 0  # the breaker is closed: the store is asked, and answers


def test_store_errors_never_show_the_password():
    store = RedisStore("redis://:hunter2@127.0.0.1:1/0", StoreSpec(), timeout_s=0.05, open_after=1)
    with pytest.raises(StoreUnavailableError) as err:
        store.version("user:a")
    assert "hunter2" not in str(err.value) and "127.0.0.1:1/0" in str(err.value)


def _vanish(store: OnlineStore, key: str, clock: list[float]) -> None:
    """Make ``key``'s keys vanish as expiry does: on Redis, expire them now; in process, move the clock."""
    if isinstance(store, RedisStore):
        for k in store.client.keys(f"{store.prefix}:{{{key}}}:*"):
            store.client.pexpire(k, 1)
        time.sleep(0.01)
    else:
        clock[0] += store.spec.ttl_s + 1


@pytest.mark.parametrize("store_kind", ["memory", "redis"])
def test_a_counter_that_starts_again_comes_with_a_new_epoch(store_kind, tmp_path):
    """Versions count writes; the epoch names the keys' lifetime: after the keys vanish (TTL here; a restart
    without persistence is the same for the store) the counter is back at 1 but the stamp differs."""
    clock = [1000.0]
    spec = StoreSpec(window_s=100, max_len=10, ttl_s=60)
    server = None
    if store_kind == "redis":
        from conftest import start_redis

        server = start_redis(tmp_path)
        store: OnlineStore = RedisStore(server.url, spec, timeout_s=1.0)
    else:
        store = InMemoryStore(spec, clock=lambda: clock[0])
    try:
        assert store.stamp("user:a") == VersionStamp("", 0)
        event = {"ts": 5, "action": "view", "event_id": "e1"}
        store.append("user:a", _event_items([(PAIR, 5, "l1", 0)]), [event], now=6)
        first = store.stamp("user:a")
        assert first.version == 1 and len(first.epoch) == 16
        store.append("user:a", _items([(PAIR, 6, "l2")]), [], now=7)
        second = store.stamp("user:a")
        assert second == VersionStamp(first.epoch, 2) == store.read("user:a", [PAIR], now=8).stamp
        store.append("user:a", _event_items([(PAIR, 5, "l1", 0)]), [event], now=8)  # a duplicate: no write
        assert store.stamp("user:a") == second
        assert store.stamp("user:b") == VersionStamp("", 0)  # epochs are per user

        _vanish(store, "user:a", clock)
        assert store.stamp("user:a") == VersionStamp("", 0)
        store.append("user:a", _items([(PAIR, 9, "l3")]), [], now=10)
        third = store.stamp("user:a")
        assert third.version == 1 and third.epoch not in ("", first.epoch)
        assert store.read("user:a", [PAIR], now=11).sequences[PAIR] == [(9, "l3")]
    finally:
        if server is not None:
            server.stop()


def test_a_counter_without_an_epoch_gets_one_on_its_next_write(redis_server):
    """Keys written before epochs existed (a counter alone): the next write sets an epoch, keeps counting."""
    store = RedisStore(redis_server.url, StoreSpec(window_s=100, max_len=10, ttl_s=60), timeout_s=1.0)
    store.append("user:a", _items([(PAIR, 5, "l1")]), [], now=6)
    store.client.delete(store.epoch_key("user:a"))
    assert store.stamp("user:a") == VersionStamp("", 1)
    store.append("user:a", _items([(PAIR, 6, "l2")]), [], now=7)
    stamp = store.stamp("user:a")
    assert stamp.version == 2 and stamp.epoch != ""
    assert 0 < store.client.ttl(store.epoch_key("user:a")) <= 60
    store.append("user:a", _items([(PAIR, 7, "l3")]), [], now=8)
    assert store.stamp("user:a") == VersionStamp(stamp.epoch, 3)  # kept while the counter lives
