"""The service while its Redis server crashes, restarts and freezes (real ``redis-server`` processes).

A client posts single-event batches, each with an ``event_id``, retries every non-2xx answer with the same
batch (as docs/serving.md tells clients to) and asks ``/rank`` between posts, while another thread kills
(SIGKILL) and restarts, or freezes (SIGSTOP) and resumes, the server. Nothing may answer 500, ``/rank``
always answers (non-personalized while the store is away), every event acknowledged with a 2xx is in the
store afterwards exactly once (the AOF survives the crash; retries of events Redis did apply are skipped as
duplicates), and events are acknowledged again within 2 s of Redis being back.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from adsformer.serving.app import create_app
from conftest import API_KEY, RedisServer, start_redis

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

KEY = {"X-API-Key": API_KEY}
USERS = 40
RECOVERY_S = 2.0  # events are acknowledged again this soon after Redis is back


@pytest.fixture
def app_on(make_settings, make_service):
    """The app on ``server`` with the default breaker (``redis_retry_s`` 1 s) unless overridden."""

    def make(server: RedisServer, **overrides):
        overrides = {"redis_url": server.url, **overrides}
        return create_app(make_settings(**overrides), service=make_service(**overrides))

    return make


@dataclass
class Traffic:
    """What the client saw: statuses by route, the event ids acknowledged (id -> user), when each 2xx of
    ``/events`` arrived (monotonic seconds), how many batches needed a retry, ``/rank`` answers' latency
    and whether they were personalized."""

    statuses: Counter = field(default_factory=Counter)
    acked: dict[str, str] = field(default_factory=dict)
    acked_at: list[float] = field(default_factory=list)
    retried: int = 0
    rank_seconds: list[float] = field(default_factory=list)
    personalized: list[bool] = field(default_factory=list)


def _rank(client: TestClient, user: str, seen: Traffic) -> None:
    t = time.perf_counter()
    r = client.post("/rank", json={"user_id": user, "query": "mug", "n": 5})
    seen.rank_seconds.append(time.perf_counter() - t)
    seen.statuses["/rank", r.status_code] += 1
    if r.status_code == 200:
        seen.personalized.append(r.json()["personalized"])


def drive(client: TestClient, listing_ids: list[str], done: Callable[[], bool], give_up_s: float) -> Traffic:
    """Post one event per batch (users in turn), each retried until a 2xx, with a ranking after every
    answer, until ``done()``; a batch unacknowledged for ``give_up_s``, or any answer but 200 and 503,
    ends the drive."""
    seen = Traffic()
    i = 0
    while not done():
        user = f"u{i % USERS}"
        event = {
            "ts": int(time.time()) - 1,
            "action": "view",
            "listing_id": listing_ids[i % len(listing_ids)],
            "event_id": f"ev-{i}",
        }
        body = {"user_id": user, "events": [event]}
        first_try, attempts = time.monotonic(), 0
        while True:  # the client's retry loop: the same batch until a 2xx
            attempts += 1
            r = client.post("/events", json=body, headers=KEY)
            seen.statuses["/events", r.status_code] += 1
            _rank(client, user, seen)
            if r.status_code == 200:
                seen.acked[event["event_id"]] = user
                seen.acked_at.append(time.monotonic())
                seen.retried += attempts > 1
                break
            if r.status_code != 503 or time.monotonic() - first_try > give_up_s:
                return seen
            time.sleep(0.02)
        i += 1
    return seen


def stored_event_ids(app) -> Counter:
    """How many times each event_id is in the store's event stream."""
    store = app.state.service.store
    return Counter(fields.get("event_id") for _, fields in store.client.xrange(store.stream_key))


def check_traffic(app, seen: Traffic, back_at: float) -> None:
    """No 500 anywhere; /rank always 200; every acknowledged event stored exactly once in the stream and
    in its user's sequence (up to the entries a sequence keeps); events acknowledged again within RECOVERY_S
    of ``back_at``."""
    assert {status for (route, status) in seen.statuses if route == "/rank"} == {200}, seen.statuses
    assert {status for (route, status) in seen.statuses if route == "/events"} == {200, 503}, seen.statuses
    assert max(seen.rank_seconds) < 2.0  # a fallback ranking does not wait for the store
    assert False in seen.personalized and seen.personalized[-1] is True  # the fault was seen, and ended
    in_stream = stored_event_ids(app)
    assert set(in_stream) == set(seen.acked), "every acknowledged event stored (and no other)"
    assert max(in_stream.values()) == 1, "no event stored twice"
    store = app.state.service.store
    keep = store.spec.keep  # entries kept per sequence
    for user, n in Counter(seen.acked.values()).items():
        assert store.client.zcard(store.sequence_key(f"user:{user}", "listing:view")) == min(n, keep)
    recovered = min(t for t in seen.acked_at if t >= back_at) - back_at
    assert recovered < RECOVERY_S, f"events acknowledged again {recovered:.2f} s after Redis was back"
    text = app.state.service.metrics.render().decode()
    assert 'status="500"' not in text


def run_with_fault(app, catalog, fault: Callable[[], float], after_s: float = 2.5) -> tuple[Traffic, float]:
    """Drive traffic while ``fault`` (in a thread) breaks the store and returns when it was back; keep
    driving ``after_s`` beyond that. Returns the traffic and the time the store was back."""
    back: list[float] = []
    errors: list[BaseException] = []

    def chaos() -> None:
        try:
            back.append(fault())
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)
            back.append(time.monotonic())

    thread = threading.Thread(target=chaos, daemon=True)
    with TestClient(app) as client:
        thread.start()
        seen = drive(
            client,
            catalog.ids[:50],
            done=lambda: bool(back) and time.monotonic() > back[0] + after_s,
            give_up_s=10.0,
        )
    thread.join(timeout=30)
    assert not errors, errors
    assert back, "the fault thread did not finish"
    return seen, back[0]


def test_redis_killed_and_restarted_on_its_aof_loses_no_acknowledged_event(app_on, redis_server, catalog):
    app = app_on(redis_server)

    def crash() -> float:
        time.sleep(0.5)
        redis_server.kill()
        time.sleep(1.0)
        redis_server.start()  # same port and directory: it loads the append-only file
        return time.monotonic()

    seen, back_at = run_with_fault(app, catalog, crash)
    check_traffic(app, seen, back_at)
    assert seen.statuses["/events", 503] > 0


def test_redis_frozen_then_resumed_stores_each_retried_event_once(app_on, redis_server, catalog):
    app = app_on(redis_server)

    def freeze() -> float:
        time.sleep(0.5)
        os.kill(redis_server.pid, signal.SIGSTOP)
        try:
            time.sleep(2.5)
        finally:
            os.kill(redis_server.pid, signal.SIGCONT)
        return time.monotonic()

    seen, back_at = run_with_fault(app, catalog, freeze)
    check_traffic(app, seen, back_at)
    assert seen.retried > 0  # some batch was answered 503 and then stored by its retry (once)


def test_a_restart_without_persistence_never_serves_the_old_cached_ranking(app_on, catalog):
    """The version counter starts again at 1 on an empty Redis; the cached ranking of the user's old
    history (the same version number) must not be served for the new one."""
    server = start_redis(None)  # keeps nothing across a restart
    try:
        app = app_on(server, cache_ttl_s=60, redis_retry_s=0.0)
        now = int(time.time())
        ask = {"user_id": "u", "query": "mug", "n": 5}
        views = [
            {"ts": now - 10 + i, "action": "view", "listing_id": lid} for i, lid in enumerate(catalog.ids)
        ]
        with TestClient(app) as client:
            r = client.post("/events", json={"user_id": "u", "events": views[:6]}, headers=KEY)
            assert r.status_code == 200 and r.json()["version"] == 1
            before = client.post("/rank", json=ask).json()
            assert not before["cached"] and client.post("/rank", json=ask).json()["cached"]

            server.kill()
            server.start()  # the same port, no data
            r = client.post("/events", json={"user_id": "u", "events": views[6:8]}, headers=KEY)
            assert r.status_code == 200 and r.json()["version"] == 1  # the counter started again
            after = client.post("/rank", json=ask).json()
        assert after["personalized"] and not after["cached"]
        assert after["version"] == before["version"] == 1
        assert 0 < after["history_events"] < before["history_events"]  # scored on the new history
    finally:
        server.stop()
