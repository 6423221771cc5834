"""A fuzz corpus against the HTTP routes: hundreds of generated bad inputs (hypothesis: valid bodies with a
field replaced by any JSON value -- NaN, Infinity and 500-digit numbers included --, fields added or
dropped, random JSON documents, byte strings, header values) plus a hand list of the cases a hostile review
found. Whatever comes in: never a 500, every 4xx names what is wrong (``loc`` down to the field for 422,
the header or the setting otherwise), and the memory unauthenticated requests can fill (the score cache,
the metrics' label sets) stays bounded."""

from __future__ import annotations

import json
import time
import warnings
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adsformer.serving.app import create_app
from adsformer.serving.build import build_service
from adsformer.serving.settings import ServingSettings
from conftest import API_KEY

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

KEY = {"X-API-Key": API_KEY}
JSON = {"content-type": "application/json"}
CACHE_ENTRIES, CACHE_BYTES = 64, 256 << 10


def fuzz(n: int) -> settings:
    return settings(
        max_examples=n,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


@pytest.fixture(scope="module")
def client(ctr_run, pccvr_run, sim_data, catalog):
    s = ServingSettings(
        run=ctr_run,
        pccvr_run=pccvr_run,
        catalog=sim_data,
        api_keys=[API_KEY],
        cache_ttl_s=60,
        cache_max_entries=CACHE_ENTRIES,
        cache_max_bytes=CACHE_BYTES,
        max_body_bytes=64 << 10,
        max_events_per_batch=20,
        max_ads=20,
    )
    app = create_app(s, service=build_service(s, catalog=catalog))
    with TestClient(app) as c:
        yield c
    # the bound on what junk can fill, after everything below
    service = app.state.service
    assert len(service.cache) <= CACHE_ENTRIES and service.cache.bytes <= CACHE_BYTES


def _json_text(value: Any) -> str:
    return json.dumps(value, allow_nan=True)  # NaN / Infinity tokens, as a careless client sends them


def check(response, *, route: str) -> None:
    """The properties every answer must have (see the module docstring)."""
    status = response.status_code
    assert status != 500 and status < 600, (route, status, response.text)
    if status == 503:
        assert "overloaded" in response.json()["detail"]
    if 400 <= status < 500 and status != 404 and status != 405:
        body = response.json()
        if status == 422:
            assert body["message"].startswith("invalid request: "), body
            assert body["detail"], body
            for error in body["detail"]:
                loc = error["loc"]
                assert loc and loc[0] in ("body", "query", "header"), error
                # a field (body.events.0.ts), a JSON position (body.17), or the body itself with the
                # message naming what is missing or inconsistent
                assert len(loc) >= 2 or error["msg"], error
        elif status == 401:
            assert "X-API-Key" in body["detail"]
        elif status == 413:
            assert "max_body_bytes" in body["detail"] or "max_events_per_batch" in body["detail"]
        else:
            raise AssertionError(f"unexpected {status} on {route}: {response.text}")


# -- strategies ---------------------------------------------------------------------------------------------
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**15, max_value=10**60),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e308, -0.0, 2**63, 2**64 + 1]),
    st.text(max_size=40),
    st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3),
    st.text(min_size=300, max_size=600),
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


def _event() -> dict[str, Any]:
    return {"ts": int(time.time()) - 5, "action": "view", "listing_id": "l_1", "event_id": "e-1"}


EVENT_FIELDS = ["ts", "action", "listing_id", "shop_id", "taxonomy_id", "query", "event_id", "colour"]
EVENTS_FIELDS = ["user_id", "browser_id", "events", "extra"]
RANK_FIELDS = ["query", "listing_id", "user_id", "browser_id", "n", "ts", "context", "cached"]
CONTEXT_KEYS = [
    "c_color",
    "f_rating",
    "f_review_count",
    "c_device",
    "device",
    "f_",
    "c_" + "x" * 70,
    "\ud800",
]


@st.composite
def events_bodies(draw) -> str:
    body: dict[str, Any] = {"user_id": "fuzz", "events": [_event()]}
    how = draw(st.sampled_from(["event_field", "event_drop", "body_field", "body_drop", "many", "document"]))
    if how == "event_field":
        body["events"][0][draw(st.sampled_from(EVENT_FIELDS))] = draw(json_values)
    elif how == "event_drop":
        del body["events"][0][draw(st.sampled_from(["ts", "action"]))]
    elif how == "body_field":
        body[draw(st.sampled_from(EVENTS_FIELDS))] = draw(json_values)
    elif how == "body_drop":
        del body[draw(st.sampled_from(["user_id", "events"]))]
    elif how == "many":
        body["events"] = [
            {**_event(), "ts": draw(st.integers(-(10**12), 10**12)), "event_id": draw(st.text(max_size=5))}
            for _ in range(draw(st.integers(0, 30)))
        ]
    else:
        return _json_text(draw(json_values))
    return _json_text(body)


@st.composite
def rank_bodies(draw) -> str:
    body: dict[str, Any] = {"query": "zzqx fuzz", "n": 3}
    how = draw(st.sampled_from(["field", "context", "context_many", "drop", "document"]))
    if how == "field":
        body[draw(st.sampled_from(RANK_FIELDS))] = draw(json_values)
    elif how == "context":
        body["context"] = {draw(st.sampled_from(CONTEXT_KEYS)): draw(json_values)}
    elif how == "context_many":
        body["context"] = {f"c_{i}": "x" * draw(st.integers(0, 300)) for i in range(draw(st.integers(0, 40)))}
    elif how == "drop":
        body = {"n": 3}
    else:
        return _json_text(draw(json_values))
    return _json_text(body)


# -- generated inputs (90 + 90 + 45 distinct at least) ----------------------------------------------------
def test_fuzz_events(client):
    tried = []

    @fuzz(100)
    @given(text=events_bodies())
    def run(text):
        tried.append(text)
        check(client.post("/events", content=text, headers={**KEY, **JSON}), route="/events")

    run()
    assert len(set(tried)) >= 90


def test_fuzz_rank(client):
    tried = []

    @fuzz(100)
    @given(text=rank_bodies())
    def run(text):
        tried.append(text)
        check(client.post("/rank", content=text, headers=JSON), route="/rank")

    run()
    assert len(set(tried)) >= 90


def test_fuzz_headers_bytes_and_paths(client):
    tried = []

    @fuzz(50)
    @given(
        key=st.binary(min_size=1, max_size=64).filter(lambda b: not set(b) & set(b"\r\n\x00 \t")),
        raw=st.binary(max_size=200),
        path=st.sampled_from(["/events", "/rank", "/healthz", "/metrics", "/nope", "/events/x"]),
    )
    def run(key, raw, path):
        tried.append((key, raw, path))
        check(client.post(path, content=raw, headers={"X-API-Key": key, **JSON}), route=path)

    run()
    assert len(set(tried)) >= 45


# -- the hand list ------------------------------------------------------------------------------------------
NOW = int(time.time())
HAND: list[tuple[str, str, dict[str, Any], int, set[str]]] = [
    # (route, body, extra headers, expected status, fields the 422 must name)
    (
        "/events",
        '{"user_id": "u", "events": [{"ts": NaN, "action": "view"}]}',
        KEY,
        422,
        {"body.events.0.ts"},
    ),
    (
        "/events",
        '{"user_id": "u", "events": [{"ts": 1' + "0" * 400 + ', "action": "view"}]}',
        KEY,
        422,
        {"body.events.0.ts"},
    ),
    (
        "/events",
        f'{{"user_id": "u", "events": [{{"ts": {NOW + 86_400}, "action": "view"}}]}}',
        KEY,
        422,
        {"body.events.0.ts"},
    ),
    (
        "/events",
        f'{{"user_id": "u", "events": [{{"ts": {NOW * 1000}, "action": "view"}}]}}',
        KEY,
        422,
        {"body.events.0.ts"},
    ),
    (
        "/events",
        f'{{"user_id": "u", "events": [{{"ts": {NOW}, "action": "wishlist"}}]}}',
        KEY,
        422,
        {"body.events.0.action"},
    ),
    (
        "/events",
        f'{{"user_id": "u", "events": [{{"ts": {NOW}, "action": "view", "event_id": "a b"}}]}}',
        KEY,
        422,
        {"body.events.0.event_id"},
    ),
    (
        "/events",
        f'{{"user_id": "u", "events": [{{"ts": {NOW}, "action": "view"}}]}}',
        {"X-API-Key": "clé".encode()},
        401,
        set(),
    ),
    (
        "/events",
        '{"user_id": "u", "events": [' + ",".join([f'{{"ts": {NOW}, "action": "view"}}'] * 21) + "]}",
        KEY,
        413,
        set(),
    ),
    (
        "/events",
        '{"user_id": "u", "events": [{"ts": '
        + str(NOW)
        + ', "action": "view", "query": "'
        + "q" * 70_000
        + '"}]}',
        KEY,
        413,
        set(),
    ),
    ("/rank", '{"query": "mug", "n": Infinity}', {}, 422, {"body.n"}),
    ("/rank", '{"query": "mug", "n": 21}', {}, 422, {"body.n"}),
    ("/rank", '{"query": "mug", "ts": -Infinity}', {}, 422, {"body.ts"}),
    ("/rank", '{"query": "mug", "context": {"f_rating": NaN}}', {}, 422, {"body.context.f_rating"}),
    ("/rank", '{"query": "mug", "context": {"c_color": true}}', {}, 422, {"body.context.c_color"}),
    ("/rank", '{"query": "mug", "context": {"c_color": 7}}', {}, 422, {"body.context.c_color"}),
    ("/rank", '{"query": "mug", "context": {"f_rating": "7"}}', {}, 422, {"body.context.f_rating"}),
    ("/rank", '{"query": "mug", "context": {"c_unknown": "x"}}', {}, 422, {"body.context.c_unknown"}),
    (
        "/rank",
        '{"query": "mug", "context": {"c_color": "' + "x" * 300 + '"}}',
        {},
        422,
        {"body.context.c_color"},
    ),
    (
        "/rank",
        '{"query": "mug", "context": {' + ",".join(f'"c_{i}": "x"' for i in range(17)) + "}}",
        {},
        422,
        {"body.context"},
    ),
    (
        "/rank",
        '{"query": "mug", "context": ' + '{"c_x": ' * 5 + "1" + "}" * 5 + "}",
        {},
        422,
        {"body.context.c_x"},
    ),
    ("/rank", '{"query": "' + "m" * 600 + '"}', {}, 422, {"body.query"}),
    ("/rank", '{"query": "\\ud800"}', {}, 422, {"body.query"}),
    ("/rank", '{"query": "mug", "user_id": ""}', {}, 422, {"body.user_id"}),
    ("/rank", '{"query": "mug", "pad": "' + "p" * 70_000 + '"}', {}, 413, set()),
    ("/rank", "[" * 20_000 + "]" * 20_000, {}, 422, {"body.0"}),
    ("/rank", '{"query": "mug"', {}, 422, set()),
    ("/rank", "", {}, 422, {"body"}),
    ("/healthz", "", {}, 200, set()),
]


@pytest.mark.parametrize(("route", "text", "headers", "status", "fields"), HAND, ids=range(len(HAND)))
def test_hand_list(client, route, text, headers, status, fields):
    method = client.get if route == "/healthz" else client.post
    kwargs = {} if route == "/healthz" else {"content": text.encode()}
    r = method(route, headers={**JSON, **headers}, **kwargs)
    check(r, route=route)
    assert r.status_code == status, r.text
    if fields:
        assert fields <= {".".join(str(p) for p in e["loc"]) for e in r.json()["detail"]}, r.text


def test_unauthenticated_junk_fills_nothing_beyond_its_bounds(client):
    """Hundreds of anonymous rankings, each a new cache key (a new context, query, n): the cache stays
    within its entries and bytes, the metrics within a fixed label set."""
    cache = client.app.state.service.cache
    for i in range(150):
        body = {
            "query": f"zzqx nothing {i} " + "w" * 400,
            "n": 1 + i % 20,
            "context": {"c_color": f"{i:0>250}"},
        }
        check(client.post("/rank", json=body), route="/rank")
        assert len(cache) <= CACHE_ENTRIES and cache.bytes <= CACHE_BYTES
    assert len(cache) > CACHE_ENTRIES // 2  # it was filled, and bounded
    routes = {
        line.split('route="')[1].split('"')[0]
        for line in client.get("/metrics").text.splitlines()
        if line.startswith("adsformer_http_requests_total{")
    }
    assert routes <= {"/rank", "/events", "/healthz", "/metrics", "<unmatched>"}
