"""The HTTP API with the in-process store: routes, OpenAPI, schema errors naming the fields, the API key,
oversized batches, unknown ids, health and metrics."""

from __future__ import annotations

import warnings

import pytest

from adsformer.serving.app import create_app
from conftest import API_KEY

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's note on httpx
    from fastapi.testclient import TestClient

KEY = {"X-API-Key": API_KEY}
NOW = 10_000  # the server clock of these tests (events are accepted from a day before to 300 s after)


@pytest.fixture
def client(make_settings, make_service):
    settings = make_settings(max_events_per_batch=5, max_ads=20)
    service = make_service(max_events_per_batch=5, max_ads=20)
    service.clock = lambda: float(NOW)
    app = create_app(settings, service=service)
    with TestClient(app) as c:
        yield c


def _fields(response) -> set[str]:
    return {".".join(str(p) for p in e["loc"]) for e in response.json()["detail"]}


def test_openapi_lists_the_routes(client):
    spec = client.get("/openapi.json").json()
    assert {"/events", "/rank", "/healthz", "/metrics"} <= set(spec["paths"])
    assert {"EventsRequest", "RankRequest", "RankResponse"} <= set(spec["components"]["schemas"])
    assert "APIKeyHeader" in spec["components"]["securitySchemes"]


def test_events_then_rank(client, catalog):
    lid = catalog.ids[3]
    r = client.post(
        "/events",
        json={"user_id": "u_9", "events": [{"ts": NOW - 10, "action": "view", "listing_id": lid}]},
        headers=KEY,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == body["stored"] == 1 and body["duplicates"] == 0
    assert body["user_key"] == "user:u_9" and body["version"] == 1
    assert body["entries"] >= 3  # listing, shop, taxonomy (and colour) of a view
    query = catalog.listings["title"][3]
    r = client.post("/rank", json={"user_id": "u_9", "query": query, "n": 3})  # at the server clock
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["personalized"] and out["history_events"] >= 3 and len(out["ads"]) == 3
    for i, ad in enumerate(out["ads"], start=1):
        assert ad["position"] == i and 0 < ad["p_ctr"] < 1 and 0 < ad["p_pccvr"] < 1
        assert 0.01 <= ad["cpc"] <= ad["bid"] + 1e-12


def test_api_key_is_required_for_events(client):
    body = {"user_id": "u", "events": [{"ts": 1, "action": "view", "listing_id": "l_1"}]}
    assert client.post("/events", json=body).status_code == 401
    r = client.post("/events", json=body, headers={"X-API-Key": "wrong"})
    assert r.status_code == 401 and "X-API-Key" in r.json()["detail"]


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"user_id": "u", "events": [{"action": "view"}]}, {"body.events.0.ts"}),
        (
            {"user_id": "u", "events": [{"ts": "soon", "action": "View!"}]},
            {"body.events.0.ts", "body.events.0.action"},
        ),
        ({"user_id": "u", "events": []}, {"body.events"}),
        ({"user_id": "u", "browser_id": "b", "events": [{"ts": 1, "action": "view"}]}, {"body"}),
        ({"events": [{"ts": 1, "action": "view"}]}, {"body"}),
        (
            {"user_id": "u", "events": [{"ts": -1, "action": "view", "colour": "red"}]},
            {"body.events.0.ts", "body.events.0.colour"},
        ),
    ],
)
def test_malformed_events_name_the_fields(client, body, fields):
    r = client.post("/events", json=body, headers=KEY)
    assert r.status_code == 422
    assert _fields(r) == fields
    assert r.json()["message"].startswith("invalid request: ")


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"user_id": "u"}, {"body"}),  # neither query nor listing
        ({"query": "mug", "n": 0}, {"body.n"}),
        ({"query": "mug", "n": 21}, {"body.n"}),  # over max_ads
        ({"query": "mug", "context": {"device": "phone"}}, {"body.context.device.[key]"}),
        ({"query": "mug", "context": {"c_device": "phone"}}, {"body.context.c_device"}),  # no run reads it
        (
            {"query": "mug", "context": {"f_rating": "high", "c_color": 3}},
            {"body.context.f_rating", "body.context.c_color"},
        ),
        ({"query": "mug", "user_id": "u", "browser_id": "b"}, {"body"}),
        ({"query": 7, "ts": "now"}, {"body.query", "body.ts"}),
    ],
)
def test_malformed_rank_requests_name_the_fields(client, body, fields):
    r = client.post("/rank", json=body)
    assert r.status_code == 422, r.text
    assert _fields(r) == fields


def test_oversized_batches_are_rejected_with_a_clear_message(client):
    events = [{"ts": i, "action": "view", "listing_id": "l_1"} for i in range(6)]
    r = client.post("/events", json={"user_id": "u", "events": events}, headers=KEY)
    assert r.status_code == 413
    assert "6 events exceeds the limit of 5" in r.json()["detail"]


def test_unknown_ids_are_fine_unknown_actions_are_not(client):
    wish = [{"ts": 101, "action": "wishlist", "listing_id": "l_1"}]  # an action word nobody declared
    r = client.post("/events", json={"browser_id": "b", "events": wish}, headers=KEY)
    assert r.status_code == 422 and _fields(r) == {"body.events.0.action"}
    assert "allowed: cart_add, favorite, purchase, search, view" in r.json()["message"]
    events = [
        {"ts": 100, "action": "view", "listing_id": "never-seen"},
        {"ts": 101, "action": "favorite", "listing_id": "never-seen-either"},
        {"ts": 102, "action": "search", "query": "zzz qqq"},
    ]
    r = client.post("/events", json={"browser_id": "new-browser", "events": events}, headers=KEY)
    assert r.status_code == 200 and r.json()["user_key"] == "browser:new-browser"
    for body in (
        {"browser_id": "new-browser", "query": "mug", "ts": 110},  # a ranking as of an earlier time
        {"user_id": "nobody", "listing_id": "no-such-listing"},
        {"query": "words that match nothing"},
    ):
        r = client.post("/rank", json=body)
        assert r.status_code == 200, r.text
    assert r.json()["ads"] == [] and r.json()["personalized"] is False  # anonymous: not personalized


def test_listing_to_listing_excludes_the_page_listing(client, catalog):
    lid = catalog.ids[0]
    out = client.post("/rank", json={"listing_id": lid, "n": 20}).json()
    assert out["candidates"] > 0 and lid not in {a["listing_id"] for a in out["ads"]}


def test_health_and_metrics(client):
    h = client.get("/healthz").json()
    assert h["status"] == "ok" and h["store"] == "memory" and h["listings"] > 0
    client.post("/rank", json={"query": "mug"})
    text = client.get("/metrics").text
    assert 'adsformer_http_requests_total{route="/rank",status="200"} 1.0' in text
    assert "adsformer_rank_stage_seconds_bucket" in text and 'stage="score"' in text
    assert 'adsformer_rank_fallbacks_total{reason="no user or browser id"} 1.0' in text


def test_concurrent_rankings_agree(make_service, catalog):
    """Requests from many threads (uvicorn's pool) queue for the models and get the same answers."""
    from concurrent.futures import ThreadPoolExecutor

    from adsformer.serving.outcome import RankQuery

    service = make_service(scoring_concurrency=2)
    q = RankQuery(query=catalog.listings["title"][5], user_key="user:x", n=5, ts=10_000)
    with ThreadPoolExecutor(8) as pool:
        outs = list(pool.map(lambda _: service.rank(q), range(16)))
    first = [(a.listing_id, a.p_ctr) for a in outs[0].ads]
    assert first and all([(a.listing_id, a.p_ctr) for a in o.ads] == first for o in outs)
    assert all("queue" in o.timings_ms for o in outs)


def test_overload_is_shed_with_503(make_settings, make_service, catalog):
    service = make_service(scoring_wait_s=0.05)
    app = create_app(make_settings(), service=service)
    assert service._scoring.acquire()  # another request holds the only scoring slot
    try:
        with TestClient(app) as client:
            r = client.post("/rank", json={"query": catalog.listings["title"][1]})
            assert (
                r.status_code == 503
                and r.headers["retry-after"] == "1"
                and "overloaded" in r.json()["detail"]
            )
    finally:
        service._scoring.release()
    assert "adsformer_rank_shed_total 1.0" in service.metrics.render().decode()
