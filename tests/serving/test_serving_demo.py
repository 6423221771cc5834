"""The serving demo (in-process replay) and ``adsformer serve`` as a real HTTP server on Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest

from adsformer.serving.demo import replay
from conftest import _free_port


def test_replay_shows_ads_before_and_after(ctr_run, pccvr_run, sim_data, tmp_path):
    results = replay(
        ctr_run, sim_data, pccvr_run=pccvr_run, users=2, n_ads=4, feature_log_dir=tmp_path / "log"
    )
    assert len(results) == 2
    assert {r["user"][:2] for r in results} == {"u_", "b_"}  # a logged-in user and a browser
    for r in results:
        before, after = r["before"], r["after"]
        assert before["personalized"] and after["personalized"]
        assert before["history_events"] == 0 and after["history_events"] > 0
        assert len(after["ads"]) > 0 and after["version"] == 1
        # the sequences changed the scores of the same candidates
        p_before = {a["listing_id"]: a["p_ctr"] for a in before["ads"]}
        assert any(
            abs(p_before[a["listing_id"]] - a["p_ctr"]) > 1e-9
            for a in after["ads"]
            if a["listing_id"] in p_before
        )
    assert (tmp_path / "log" / "requests").is_dir()


@pytest.mark.slow
def test_serve_command_over_http_with_redis(ctr_run, sim_data, redis_server):
    port = _free_port()
    cmd = [sys.executable, "-m", "adsformer.cli", "serve", "--run", str(ctr_run), "--catalog", str(sim_data)]
    cmd += ["--redis-url", redis_server.url, "--port", str(port), "--api-key", "k"]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"server did not start: {proc.stdout.read().decode() if proc.stdout else ''}"
                )
            time.sleep(0.2)
        health = httpx.get(f"{base}/healthz").json()
        assert health["store"] == "redis" and health["store_ok"]
        events = [{"ts": int(time.time()) - 5, "action": "view", "listing_id": "l_1"}]
        r = httpx.post(f"{base}/events", json={"user_id": "u", "events": events}, headers={"X-API-Key": "k"})
        assert r.status_code == 200 and r.json()["version"] == 1
        r = httpx.post(f"{base}/rank", json={"user_id": "u", "listing_id": "l_1", "n": 3})
        assert r.status_code == 200 and r.json()["personalized"] and r.json()["history_events"] > 0
        assert "adsformer_http_requests_total" in httpx.get(f"{base}/metrics").text
    finally:
        proc.terminate()
        proc.wait(timeout=20)
