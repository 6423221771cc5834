"""The service on a real Redis server: events in -> sequences out (window and cap), the score cache (TTL,
bypass on new events), and the fallback when Redis stops mid-test (never a 500)."""

from __future__ import annotations

import warnings

import pytest

from adsformer.serving.app import create_app
from adsformer.serving.cache import ScoreCache
from conftest import API_KEY

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

KEY = {"X-API-Key": API_KEY}


@pytest.fixture
def app_on_redis(make_settings, make_service, redis_server):
    def make(**overrides):
        settings = make_settings(redis_url=redis_server.url, redis_retry_s=0.0, **overrides)
        return create_app(
            settings, service=make_service(redis_url=redis_server.url, redis_retry_s=0.0, **overrides)
        )

    return make


def _views(ids, start):
    return [{"ts": start + i, "action": "view", "listing_id": lid} for i, lid in enumerate(ids)]


def test_events_in_sequences_out_window_and_cap(app_on_redis, catalog):
    app = app_on_redis()
    service = app.state.service
    cap, window = service.ctr.online.max_len, service.ctr.online.window_s
    ids = catalog.ids[: cap + 5]
    t0 = 10_000_000
    service.clock = lambda: float(t0 + len(ids))  # the server clock, just after the events
    old = [{"ts": t0 - window - 50, "action": "view", "listing_id": catalog.ids[-1]}]
    with TestClient(app) as client:
        assert (
            client.post(
                "/events", json={"user_id": "u1", "events": old + _views(ids, t0)}, headers=KEY
            ).status_code
            == 200
        )
        state = service.store.read("user:u1", ["listing:view"], now=t0 + len(ids))
        got = [v for _, v in state.sequences["listing:view"]]
        assert got == list(reversed(ids))[:cap]  # newest first, capped, the old event out of the window
        assert service.store.client.zcard(service.store.sequence_key("user:u1", "listing:view")) == min(
            len(ids), service.store.spec.keep
        )
        r = client.post("/rank", json={"user_id": "u1", "query": "mug", "ts": t0 + len(ids)}).json()
        assert r["personalized"] and r["version"] == 1
        assert r["history_events"] >= cap
        later = client.post(
            "/rank", json={"user_id": "u1", "query": "mug", "ts": t0 + len(ids) + window + 1}
        ).json()
        assert later["history_events"] == 0  # the window moved past every event


def test_cache_ttl_and_bypass_on_new_events(app_on_redis, catalog):
    app = app_on_redis()
    service = app.state.service
    now = [0.0]
    service.cache = ScoreCache(ttl_s=5.0, clock=lambda: now[0])
    service.clock = lambda: 5_000_000.0
    ask = {"user_id": "u2", "query": "mug", "n": 5, "ts": 5_000_000}
    with TestClient(app) as client:
        first = client.post("/rank", json=ask).json()
        second = client.post("/rank", json=ask).json()
        assert not first["cached"] and second["cached"]
        assert second["ads"] == first["ads"] and second["request_id"] != first["request_id"]
        other = client.post("/rank", json={**ask, "query": "ring"}).json()
        assert not other["cached"]  # keyed by the query too
        client.post(
            "/events", json={"user_id": "u2", "events": _views(catalog.ids[:3], 4_999_990)}, headers=KEY
        )
        bypass = client.post("/rank", json=ask).json()
        assert not bypass["cached"] and bypass["version"] == 1 and bypass["history_events"] > 0
        assert client.post("/rank", json=ask).json()["cached"]
        now[0] += 5.1  # past the TTL
        assert not client.post("/rank", json=ask).json()["cached"]
    text = service.metrics.render().decode()
    assert 'adsformer_score_cache_total{result="hit"} 2.0' in text


def test_redis_stopped_mid_test_falls_back_to_non_personalized(app_on_redis, redis_server, catalog):
    app = app_on_redis(cache_ttl_s=30)
    app.state.service.clock = lambda: 7_000_000.0
    ask = {"user_id": "u3", "query": catalog.listings["title"][0], "n": 5, "ts": 7_000_000}
    with TestClient(app) as client:
        client.post(
            "/events", json={"user_id": "u3", "events": _views(catalog.ids[:4], 6_999_990)}, headers=KEY
        )
        live = client.post("/rank", json=ask).json()
        assert live["personalized"] and live["history_events"] > 0
        redis_server.stop()
        down = client.post("/rank", json=ask)
        assert down.status_code == 200
        body = down.json()
        assert body["personalized"] is False and body["fallback_reason"] == "online store unavailable"
        assert body["history_events"] == 0 and not body["cached"] and len(body["ads"]) > 0
        r = client.post(
            "/events", json={"user_id": "u3", "events": _views(catalog.ids[:1], 7_000_001)}, headers=KEY
        )
        assert r.status_code == 503 and "online store unavailable" in r.json()["detail"]
        health = client.get("/healthz").json()
        assert health["status"] == "degraded" and health["store_ok"] is False
        anonymous = client.post("/rank", json={"query": ask["query"]})
        assert anonymous.status_code == 200
    text = app.state.service.metrics.render().decode()
    assert 'adsformer_rank_fallbacks_total{reason="online store unavailable"} 1.0' in text
    assert 'route="/rank",status="500"' not in text
