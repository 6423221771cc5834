"""The service against hostile or careless clients (issue 18): body limits, numbers JSON should not carry,
malformed keys, time skew, idempotent retries, a Redis that is away or frozen, and what a response may say.
"""

from __future__ import annotations

import json
import os
import signal
import time
import warnings

import pytest

from adsformer.serving.app import create_app
from conftest import API_KEY

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

KEY = {"X-API-Key": API_KEY}


@pytest.fixture
def make_client(make_settings, make_service):
    clients = []

    def make(**overrides):
        app = create_app(make_settings(**overrides), service=make_service(**overrides))
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)


def _fields(response) -> set[str]:
    return {".".join(str(p) for p in e["loc"]) for e in response.json()["detail"]}


def _metric(client, route: str, status: int) -> float:
    prefix = f'adsformer_http_requests_total{{route="{route}",status="{status}"}} '
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(prefix):
            return float(line.split()[-1])
    return 0.0


def _views(ids, start):
    return [{"ts": start + i, "action": "view", "listing_id": lid} for i, lid in enumerate(ids)]


def test_bodies_over_the_limit_get_413_and_are_counted(make_client):
    client = make_client(max_body_bytes=2048)
    big = {"query": "mug", "context": {"c_color": "x" * 200}, "pad": "y" * 4000}
    r = client.post("/rank", json=big)
    assert r.status_code == 413 and "max_body_bytes" in r.json()["detail"]
    chunks = (b'{"query": "' + b"m" * 1000 + b'"}' for _ in range(3))  # no Content-Length: streamed
    r = client.post("/rank", content=chunks, headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert client.post("/rank", json={"query": "mug"}).status_code == 200
    assert _metric(client, "/rank", 413) == 2.0 and _metric(client, "/rank", 200) == 1.0


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('{"query": "mug", "n": NaN}', "body.n"),
        ('{"query": "mug", "ts": Infinity}', "body.ts"),
        ('{"query": "mug", "context": {"f_rating": -Infinity}}', "body.context.f_rating"),
        ('{"query": "mug", "context": {"f_rating": 1e400}}', "body.context.f_rating"),
        ('{"query": "mug", "n": ' + "9" * 500 + "}", "body.n"),
        ('{"query": "mug", "ts": 1' + "0" * 5000 + "}", "body.ts"),  # over Python's int-parsing limit
        ('{"user_id": "u", "events": [{"ts": NaN, "action": "view"}]}', "body.events.0.ts"),
        ('{"user_id": "u", "events": [{"ts": 1e400, "action": "view"}]}', "body.events.0.ts"),
    ],
)
def test_nan_infinity_and_huge_numbers_get_422_naming_the_field(make_client, text, field):
    client = make_client()
    path = "/events" if "events" in text else "/rank"
    r = client.post(path, content=text, headers={**KEY, "content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert field in _fields(r) and r.json()["message"].startswith("invalid request: ")


@pytest.mark.parametrize(
    "body",
    [b"[" * 100_000 + b"]" * 100_000, b'{"query": "\xff\xfe"}', b'{"query": "mug"', b""],
)
def test_unparsable_bodies_are_422_not_500(make_client, body):
    client = make_client(max_body_bytes=1 << 20)
    r = client.post("/rank", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"][0] == "body"


@pytest.mark.parametrize(
    "key", ["clé".encode(), "\u2603".encode(), b"\xff\xfe", b"x" * 4000, API_KEY.encode() + b"\x80"]
)
def test_malformed_api_keys_get_401(make_client, key):
    client = make_client()
    body = {"user_id": "u", "events": [{"ts": int(time.time()), "action": "view"}]}
    r = client.post("/events", json=body, headers={"X-API-Key": key})
    assert r.status_code == 401 and "X-API-Key" in r.json()["detail"]


def test_a_500_is_clean_and_counted(make_client):
    client = make_client()

    def broken(query):
        raise RuntimeError("secret internals at /srv/adsformer/runs")

    client.app.state.service.rank = broken
    r = client.post("/rank", json={"query": "mug"})
    assert r.status_code == 500 and r.json() == {"detail": "internal server error"}
    assert _metric(client, "/rank", 500) == 1.0
    client.get("/no/such/path")
    assert _metric(client, "<unmatched>", 404) == 1.0


def test_store_unavailable_answers_say_nothing_internal(make_client, catalog):
    url = "redis://:hunter2@127.0.0.1:1/0"
    client = make_client(redis_url=url, redis_timeout_s=0.05, redis_write_timeout_s=0.05)
    events = _views(catalog.ids[:2], int(time.time()) - 10)
    r = client.post("/events", json={"user_id": "u", "events": events}, headers=KEY)
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert "retry" in r.json()["detail"]
    ranked = client.post("/rank", json={"user_id": "u", "query": "mug"})
    health = client.get("/healthz")
    for response in (r, ranked, health):
        for secret in ("hunter2", "127.0.0.1", "redis://", ":1/0", "f_"):
            assert secret not in response.text, (secret, response.text)


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_events_out_of_the_clock_skew_are_refused_and_never_wipe_history(
    make_client, catalog, request, store
):
    url = request.getfixturevalue("redis_server").url if store == "redis" else None
    client = make_client(redis_url=url, event_max_future_s=60, event_max_age_s=3600)
    now = int(time.time())
    who = {"user_id": "skewed"}
    r = client.post("/events", json={**who, "events": _views(catalog.ids[:20], now - 100)}, headers=KEY)
    assert r.status_code == 200
    before = client.post("/rank", json={**who, "query": "mug"}).json()["history_events"]
    assert before > 20  # listing, shop, taxonomy, colour entries of 20 views

    tomorrow = {"ts": now + 86_400, "action": "view", "listing_id": catalog.ids[30]}
    stale = {"ts": now - 7200, "action": "view", "listing_id": catalog.ids[31]}
    r = client.post("/events", json={**who, "events": [tomorrow, stale]}, headers=KEY)
    assert r.status_code == 422 and _fields(r) == {"body.events.0.ts", "body.events.1.ts"}
    assert "event_max_future_s" in r.json()["message"] and "event_max_age_s" in r.json()["message"]

    ahead = [{"ts": now + 5, "action": "view", "listing_id": lid} for lid in catalog.ids[100:170]]
    assert client.post("/events", json={**who, "events": ahead}, headers=KEY).status_code == 200
    after = client.post("/rank", json={**who, "query": "mug"}).json()
    assert after["history_events"] == before  # 70 events 5 s ahead pushed nothing out


def test_a_huge_ts_is_a_422_and_does_not_open_the_breaker(make_settings, make_service, redis_server, catalog):
    overrides = {"redis_url": redis_server.url, "redis_retry_s": 60.0}
    app = create_app(make_settings(**overrides), service=make_service(**overrides))
    with TestClient(app) as client:
        for ts in ("1" + "0" * 400, str(10**20), str(2**63), "-5"):
            body = '{"user_id": "u", "events": [{"ts": ' + ts + ', "action": "view"}]}'
            r = client.post("/events", content=body, headers={**KEY, "content-type": "application/json"})
            assert r.status_code == 422 and _fields(r) == {"body.events.0.ts"}, r.text
        r = client.post(
            "/events",
            content='{"user_id": "u", "events": [{"ts": 1e12, "action": "view"}]}',
            headers={**KEY, "content-type": "application/json"},
        )
        assert r.status_code == 422 and "milliseconds" in r.json()["message"]
        for _ in range(3):
            r = client.post("/rank", json={"user_id": "v", "query": "mug", "ts": 10**30})
            assert r.status_code == 422
        ok = client.post(
            "/events", json={"user_id": "w", "events": _views(catalog.ids[:1], int(time.time()))}, headers=KEY
        )
        assert ok.status_code == 200
        assert client.post("/rank", json={"user_id": "w", "query": "mug"}).json()["personalized"]
        assert client.get("/healthz").json()["store_ok"]
    assert "adsformer_store_errors_total{" not in app.state.service.metrics.render().decode()


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_a_retried_batch_with_event_ids_is_stored_once(make_client, catalog, request, store):
    url = request.getfixturevalue("redis_server").url if store == "redis" else None
    client = make_client(redis_url=url)
    now = int(time.time())
    events = [{**e, "event_id": f"evt-{i}"} for i, e in enumerate(_views(catalog.ids[:5], now - 20))]
    body = {"browser_id": "b-retry", "events": events}
    first = client.post("/events", json=body, headers=KEY).json()
    assert (first["accepted"], first["stored"], first["duplicates"], first["version"]) == (5, 5, 0, 1)
    history = client.post("/rank", json={"browser_id": "b-retry", "query": "mug"}).json()["history_events"]
    for _ in range(2):
        again = client.post("/events", json=body, headers=KEY).json()
        assert (again["accepted"], again["stored"], again["duplicates"]) == (5, 0, 5)
        assert again["entries"] == 0 and again["version"] == 1  # nothing changed: the cache stays valid
    more = {"browser_id": "b-retry", "events": [*events[3:], {**events[0], "event_id": "evt-new"}]}
    third = client.post("/events", json=more, headers=KEY).json()
    assert (third["stored"], third["duplicates"], third["version"]) == (1, 2, 2)
    ranked = client.post("/rank", json={"browser_id": "b-retry", "query": "mug"}).json()
    assert ranked["history_events"] == history + first["entries"] // 5
    service = client.app.state.service
    text = service.metrics.render().decode()
    assert "adsformer_events_total 6.0" in text and "adsformer_events_duplicate_total 12.0" in text
    if store == "redis":
        assert service.store.client.xlen(service.store.stream_key) == 6


def test_a_503_while_redis_is_frozen_then_a_retry_stores_the_batch_once(
    make_settings, make_service, redis_server, catalog
):
    """Redis frozen (SIGSTOP): the write times out (503) but Redis applies it when it resumes; the client's
    retry with the same event ids adds nothing."""
    overrides = {"redis_url": redis_server.url, "redis_write_timeout_s": 0.2, "redis_retry_s": 0.0}
    app = create_app(make_settings(**overrides), service=make_service(**overrides))
    now = int(time.time())
    events = [{**e, "event_id": f"f-{i}"} for i, e in enumerate(_views(catalog.ids[:4], now - 10))]
    body = {"user_id": "frozen", "events": events}
    with TestClient(app) as client:
        warm = {"user_id": "other", "events": _views(catalog.ids[:1], now)}  # the write connection is open
        assert client.post("/events", json=warm, headers=KEY).status_code == 200
        os.kill(redis_server.process.pid, signal.SIGSTOP)
        try:
            r = client.post("/events", json=body, headers=KEY)
        finally:
            os.kill(redis_server.process.pid, signal.SIGCONT)
        assert r.status_code == 503 and "may or may not" in r.json()["detail"]
        deadline = time.monotonic() + 2
        while True:  # the retry, as a client would, until the store answers
            retry = client.post("/events", json=body, headers=KEY)
            if retry.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert retry.status_code == 200, retry.text
        out = retry.json()
        assert (out["stored"], out["duplicates"]) == (0, 4)  # Redis ran the timed-out write on resuming
    store = app.state.service.store
    assert store.client.xlen(store.stream_key) == 1 + 4  # each event once, whichever attempt stored it
    assert store.client.zcard(store.sequence_key("user:frozen", "listing:view")) == 4


def test_unknown_routes_and_junk_keep_the_metrics_bounded(make_client):
    client = make_client()
    for i in range(30):
        client.post(f"/junk/{i}", content=b"x")
        client.get(f"/rank/{i}?q={i}")
    text = client.get("/metrics").text
    routes = {line.split('route="')[1].split('"')[0] for line in text.splitlines() if 'route="' in line}
    assert routes <= {"/rank", "/events", "/healthz", "/metrics", "<unmatched>"}


def test_json_error_bodies_never_echo_unsafe_input(make_client):
    client = make_client()
    text = json.dumps({"query": "mug", "\ud800bad": "x" * 10_000, "n": "\ud800"})
    r = client.post("/rank", content=text, headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert len(r.content) < 2000 and "x" * 200 not in r.text
