"""Serving under load: ``adsformer serve --workers N`` (processes sharing Redis and their metrics), one store
round trip per ranking with the cache off, the loaded objects frozen out of the garbage collector."""

from __future__ import annotations

import gc
import os
import re
import subprocess
import sys
import time

import httpx
import pytest
from typer.testing import CliRunner

from adsformer.cli import app as cli_app
from adsformer.errors import UserError
from adsformer.serving.feature_log import FeatureLog
from adsformer.serving.memory import freeze_loaded_objects
from adsformer.serving.outcome import RankQuery
from adsformer.serving.store import InMemoryStore
from adsformer.serving.workers import check_workers
from conftest import _free_port


class CountingStore(InMemoryStore):
    """The in-process store, counting the calls that would each be a Redis round trip."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[str] = []

    def stamp(self, key):
        self.calls.append("stamp")
        return super().stamp(key)

    def read(self, key, pairs, now):
        self.calls.append("read")
        return super().read(key, pairs, now)


def _service_with_counting_store(make_service, cache_ttl_s: float):
    service = make_service(cache_ttl_s=cache_ttl_s)
    store = CountingStore(service.store.spec)
    service.store = store
    return service, store


def test_one_store_round_trip_per_ranking_with_the_cache_off(make_service, catalog):
    service, store = _service_with_counting_store(make_service, 0)
    now = int(time.time())
    listing = catalog.ids[0]
    service.ingest("user:u1", [{"ts": now - 5, "action": "view", "listing_id": listing}])
    out = service.rank(RankQuery(listing_id=listing, user_key="user:u1", n=3, ts=now))
    assert store.calls == ["read"]
    assert out.personalized and out.version == 1 and out.history_events > 0


def test_with_the_cache_on_the_stamp_comes_first_and_a_hit_reads_nothing_more(make_service, catalog):
    service, store = _service_with_counting_store(make_service, 60)
    now = int(time.time())
    listing = catalog.ids[0]
    service.ingest("user:u1", [{"ts": now - 5, "action": "view", "listing_id": listing}])
    q = RankQuery(listing_id=listing, user_key="user:u1", n=3, ts=now)
    first, second = service.rank(q), service.rank(q)
    assert store.calls == ["stamp", "read", "stamp"]
    assert not first.cached and second.cached and second.version == first.version == 1


def test_frozen_objects_leave_the_collectors_generations():
    kept = [object()]  # a tracked container made before the freeze
    try:
        frozen = freeze_loaded_objects()
        # not an equality: a frozen object freed since (another thread, a weakref callback) leaves the count,
        # and objects another test left frozen in this worker process are in it too
        assert frozen > 0 and gc.get_freeze_count() > 0
        assert not any(o is kept for o in gc.get_objects())
        fresh = [object()]
        assert any(o is fresh for o in gc.get_objects())
    finally:
        gc.unfreeze()
    assert any(o is kept for o in gc.get_objects())


def test_more_than_one_worker_needs_redis(make_settings):
    with pytest.raises(UserError, match=r"--workers 2 needs --redis-url") as err:
        check_workers(2, make_settings())
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match=r"--workers 0: give 1 or more"):
        check_workers(0, make_settings(redis_url="redis://127.0.0.1:6379/0"))
    check_workers(1, make_settings())
    check_workers(4, make_settings(redis_url="redis://127.0.0.1:6379/0"))


def test_serve_refuses_workers_without_redis_before_loading(tmp_path):
    res = CliRunner().invoke(cli_app, ["serve", "--run", str(tmp_path / "no-run"), "--workers", "3"])
    assert res.exit_code == 1
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --workers 3 needs --redis-url"), res.output


def test_feature_log_files_carry_the_process_id(tmp_path):
    log = FeatureLog(tmp_path)
    log.log("events", [{"user_id": "user:u", "ts": 1, "action": "view", "listing_id": "l_1"}])
    (path,) = log.flush()
    log.close()
    assert re.fullmatch(rf"part-\d{{8}}T\d{{6}}-{os.getpid()}-000001\.parquet", path.name)


def _metric(text: str, name: str, labels: str = "") -> float:
    """The value of one series in a /metrics text (0 when absent)."""
    series = f"{name}{{{labels}}}" if labels else name
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


@pytest.mark.slow
def test_workers_share_redis_and_metrics(ctr_run, sim_data, catalog, redis_server):
    port = _free_port()
    cmd = [sys.executable, "-m", "adsformer.cli", "serve", "--run", str(ctr_run), "--catalog", str(sim_data)]
    cmd += ["--redis-url", redis_server.url, "--port", str(port), "--api-key", "k", "--workers", "2"]
    cmd += ["--cache-ttl", "0"]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:  # both workers up: their start times are two series of the summed metrics
            try:
                text = httpx.get(f"{base}/metrics", timeout=1).text
                if len(re.findall(r'^adsformer_process_start_time_seconds\{pid="\d+"\}', text, re.M)) == 2:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"workers did not start: {proc.stdout.read().decode() if proc.stdout else ''}"
                )
            time.sleep(0.3)
        before = httpx.get(f"{base}/metrics").text
        listing = catalog.ids[0]
        events = [{"ts": int(time.time()) - 5, "action": "view", "listing_id": listing}]
        r = httpx.post(f"{base}/events", json={"user_id": "u", "events": events}, headers={"X-API-Key": "k"})
        assert r.status_code == 200 and r.json()["version"] == 1
        n = 40  # a new connection each: the kernel hands them to either worker
        for _ in range(n):
            r = httpx.post(f"{base}/rank", json={"user_id": "u", "listing_id": listing, "n": 3})
            assert r.status_code == 200 and r.json()["personalized"] and r.json()["history_events"] > 0
        after = httpx.get(f"{base}/metrics").text
        counted = _metric(after, "adsformer_http_requests_total", 'route="/rank",status="200"')
        assert counted - _metric(before, "adsformer_http_requests_total", 'route="/rank",status="200"') == n
        assert _metric(after, "adsformer_events_total") == 1  # one summed series, not one per worker
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode == 0


def test_app_from_env_prepares_the_process_and_freezes_what_it_loaded(monkeypatch, ctr_run, sim_data):
    import torch
    from fastapi.testclient import TestClient

    from adsformer.serving.app import app_from_env

    threads = torch.get_num_threads()
    monkeypatch.setenv("ADSFORMER_RUN", str(ctr_run))
    monkeypatch.setenv("ADSFORMER_CATALOG", str(sim_data))
    monkeypatch.setenv("ADSFORMER_TORCH_THREADS", "1")
    gc.unfreeze()
    try:
        torch.set_num_threads(2)
        app = app_from_env()
        assert torch.get_num_threads() == 1 and gc.get_freeze_count() > 0
        with TestClient(app) as client:
            assert client.get("/healthz").json()["ctr_run"] == ctr_run.name
    finally:
        gc.unfreeze()
        torch.set_num_threads(threads)
