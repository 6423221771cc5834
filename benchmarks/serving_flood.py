"""Benchmark: the ranking service's memory and answers under a flood of hostile requests.

    python benchmarks/serving_flood.py --run CTR_RUN [--pccvr-run PCCVR_RUN] --data DATA_DIR \\
        [--duration 60] [--processes 1] [--concurrency 32] [--out flood.json]

Starts a ``redis-server`` (append-only file, fsync every second, in a temporary directory) and ``adsformer
serve`` (uvicorn) on it, each in its own process, and floods the service for ``--duration`` seconds from
``--processes`` other processes, each keeping ``--concurrency`` requests in flight (httpx, asyncio). Each
request is one of (equal shares):

* ``no_key_max_body``: ``POST /events`` without an API key, a JSON body just under ``max_body_bytes`` (401);
* ``bad_key``: ``POST /events`` with a random key of up to 4 KiB, some bytes outside ASCII (401);
* ``oversized``: a body over ``max_body_bytes``, announced by ``Content-Length`` (413);
* ``oversized_chunked``: the same streamed without a length, so the limit is hit while reading (413);
* ``hostile_json``: NaN, 1e999, integers of 400 digits, nesting 100,000 deep, invalid UTF-8 (422);
* ``max_context``: ``POST /rank`` for a random user with the most context features allowed, every name and
  value at its longest (422: no served run reads them);
* ``rank_random_user``: a valid ``POST /rank`` for a random user or browser (an id of 256 characters), a
  random query of up to 512 characters (200, or 503 when the scoring queue sheds it);
* ``events_random_user``: a valid ``POST /events`` with the key: a random user, 1-50 events with random
  ids (200: they fill Redis, not the server);
* ``junk_path``: a random path (404 / 405).

Prints the server's resident memory (``VmRSS``) before the flood (after a warm-up), every 10 s during it,
its maximum, and after it (``--settle`` seconds later); the status codes per kind of request (client side)
and per route (the server's ``/metrics``); and exits non-zero if any request got a 500 or the service
does not answer a normal ranking afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import string
import threading
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import httpx

import loopback

KINDS = (
    "no_key_max_body",
    "bad_key",
    "oversized",
    "oversized_chunked",
    "hostile_json",
    "max_context",
    "rank_random_user",
    "events_random_user",
    "junk_path",
)
API_KEY = "flood-bench-key"
MAX_CONTEXT = 16  # adsformer.serving.schemas.MAX_CONTEXT


# ------------------------------------------------------------------------------------------- processes
def rss_mib(pid: int) -> float:
    """Resident memory of process ``pid`` in MiB (Linux ``/proc``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


# ---------------------------------------------------------------------------------------------- requests
def _text(rng: random.Random, n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(rng.choices(alphabet, k=n))


_MAX_BODIES: dict[int, bytes] = {}


def _max_body(rng: random.Random, limit: int) -> bytes:
    """A valid events body of just under ``limit`` bytes (made once per process: the flooder's time goes
    into sending it, not building it)."""
    if limit not in _MAX_BODIES:
        event = {"ts": int(time.time()), "action": "view", "listing_id": _text(rng, 256)}
        one = len(json.dumps(event)) + 2
        events = [event] * max(1, (limit - 400) // one)
        _MAX_BODIES[limit] = json.dumps({"user_id": _text(rng, 256), "events": events}).encode()
    return _MAX_BODIES[limit]


def _hostile_json(rng: random.Random) -> bytes:
    choice = rng.randrange(5)
    if choice == 0:
        return b'{"query": "mug", "n": NaN}'
    if choice == 1:
        return b'{"query": "mug", "context": {"f_x": 1e999}}'
    if choice == 2:
        return b'{"query": "mug", "ts": ' + b"9" * 400 + b"}"
    if choice == 3:
        return b"[" * 100_000 + b"]" * 100_000
    return b'{"query": "\xff\xfe mug"}'


def build(kind: str, rng: random.Random, base: str, limit: int) -> dict[str, Any]:
    """The arguments of one ``httpx.AsyncClient.request`` call of ``kind``."""
    json_h = {"content-type": "application/json"}
    if kind == "no_key_max_body":
        return {
            "method": "POST",
            "url": f"{base}/events",
            "content": _max_body(rng, limit),
            "headers": json_h,
        }
    if kind == "bad_key":
        key = _text(rng, rng.randint(1, 4096), string.printable[:94] + "\u00e9\u00ff").encode("latin-1")
        body = {"user_id": "u", "events": [{"ts": int(time.time()), "action": "view"}]}
        return {"method": "POST", "url": f"{base}/events", "json": body, "headers": {"X-API-Key": key}}
    if kind == "oversized":
        body = b"x" * (limit + 1 + rng.randrange(1024))
        return {"method": "POST", "url": f"{base}/rank", "content": body, "headers": json_h}
    if kind == "oversized_chunked":

        async def chunks():
            for _ in range(limit // 65536 + 4):
                yield b"y" * 65536

        return {"method": "POST", "url": f"{base}/events", "content": chunks(), "headers": json_h}
    if kind == "hostile_json":
        return {"method": "POST", "url": f"{base}/rank", "content": _hostile_json(rng), "headers": json_h}
    if kind == "max_context":
        context: dict[str, Any] = {
            f"{'cf'[i % 2]}_{_text(rng, 62)}": _text(rng, 256) if i % 2 == 0 else rng.uniform(-1e300, 1e300)
            for i in range(MAX_CONTEXT)
        }
        body = {
            "user_id": _text(rng, 256),
            "query": _text(rng, 512, string.ascii_lowercase + " "),
            "context": context,
        }
        return {"method": "POST", "url": f"{base}/rank", "json": body}
    if kind == "rank_random_user":
        who = "user_id" if rng.random() < 0.5 else "browser_id"
        query = _text(rng, rng.randint(1, 512), string.ascii_lowercase + " ")
        body = {who: _text(rng, 256), "query": query, "n": rng.randint(1, 50)}
        return {"method": "POST", "url": f"{base}/rank", "json": body}
    if kind == "events_random_user":
        now = int(time.time())
        events = [
            {
                "ts": now - rng.randrange(600),
                "action": "view",
                "listing_id": _text(rng, 12),
                "event_id": _text(rng, 32),
            }
            for _ in range(rng.randint(1, 50))
        ]
        body = {"user_id": _text(rng, 256), "events": events}
        return {"method": "POST", "url": f"{base}/events", "json": body, "headers": {"X-API-Key": API_KEY}}
    if kind == "junk_path":
        path = "/" + "/".join(_text(rng, rng.randint(1, 40)) for _ in range(rng.randint(1, 6)))
        return {"method": rng.choice(["GET", "POST", "PUT", "DELETE"]), "url": base + path}
    raise ValueError(kind)


async def _flood(base: str, seconds: float, concurrency: int, limit: int, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    counts: Counter[str] = Counter()
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(client: httpx.AsyncClient) -> None:
        while time.monotonic() < deadline:
            kind = rng.choice(KINDS)
            try:
                r = await client.request(**build(kind, rng, base, limit))
                counts[f"{kind} {r.status_code}"] += 1
            except httpx.HTTPError as exc:  # e.g. the server answered 413 and closed before the body ended
                counts[f"{kind} {type(exc).__name__}"] += 1

    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return dict(counts)


def flood(base: str, seconds: float, concurrency: int, limit: int, seed: int) -> dict[str, int]:
    """One flooding process: status counts ``"KIND STATUS"`` (or the transport error's name)."""
    return asyncio.run(_flood(base, seconds, concurrency, limit, seed))


# ------------------------------------------------------------------------------------------------ main
class RssSampler:
    """Samples a process's RSS every ``every_s`` seconds in a thread."""

    def __init__(self, pid: int, every_s: float = 0.25) -> None:
        self.pid, self.every_s = pid, every_s
        self.samples: list[tuple[float, float]] = []  # (seconds since start, MiB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._start = time.monotonic()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic() - self._start, rss_mib(self.pid)))
            self._stop.wait(self.every_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def server_statuses(base: str) -> dict[str, float]:
    """``route status`` -> count, from the service's /metrics."""
    out: dict[str, float] = {}
    for line in httpx.get(f"{base}/metrics", timeout=10).text.splitlines():
        if line.startswith("adsformer_http_requests_total{"):
            labels, value = line.rsplit(" ", 1)
            route = labels.split('route="')[1].split('"')[0]
            status = labels.split('status="')[1].split('"')[0]
            out[f"{route} {status}"] = float(value)
    return out


def warm_up(base: str) -> None:
    """A few normal requests, so the models and first allocations are in memory before 'before'."""
    now = int(time.time())
    for i in range(20):
        events = [{"ts": now - 5, "action": "view", "listing_id": f"l_{i}"}]
        httpx.post(
            f"{base}/events", json={"user_id": f"w{i}", "events": events}, headers={"X-API-Key": API_KEY}
        )
        httpx.post(f"{base}/rank", json={"user_id": f"w{i}", "query": "mug", "n": 10}, timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="CTR run directory")
    ap.add_argument("--pccvr-run", type=Path, default=None)
    ap.add_argument("--data", type=Path, required=True, help="the dataset the run was trained on (catalog)")
    ap.add_argument("--duration", type=float, default=60.0, help="flood seconds")
    ap.add_argument("--processes", type=int, default=1, help="flooding processes")
    ap.add_argument("--concurrency", type=int, default=32, help="requests in flight per flooding process")
    ap.add_argument("--max-body", type=int, default=1 << 20, help="the server's max_body_bytes")
    ap.add_argument("--settle", type=float, default=5.0, help="seconds after the flood before 'after'")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = ap.parse_args()

    serve_args = ["--threads", "1", *(["--pccvr-run", str(args.pccvr_run)] if args.pccvr_run else [])]
    env = {"OMP_NUM_THREADS": "1", "ADSFORMER_MAX_BODY_BYTES": str(args.max_body)}
    with loopback.service(args.run, args.data, api_key=API_KEY, serve_args=serve_args, env=env) as svc:
        server, redis_proc, base = svc.server, svc.redis, svc.base
        warm_up(base)
        time.sleep(2)
        before = rss_mib(server.pid)
        redis_before = rss_mib(redis_proc.pid)
        print(
            f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; server RSS before "
            f"the flood {before:.1f} MiB (redis {redis_before:.1f} MiB)",
            flush=True,
        )
        ctx = get_context("spawn")
        with RssSampler(server.pid) as rss, ProcessPoolExecutor(args.processes, mp_context=ctx) as pool:
            t0 = time.monotonic()
            jobs = [
                pool.submit(flood, base, args.duration, args.concurrency, args.max_body, seed)
                for seed in range(args.processes)
            ]
            counts: Counter[str] = Counter()
            for job in jobs:
                counts.update(job.result())
            flood_s = time.monotonic() - t0
        during = [mib for t, mib in rss.samples]
        time.sleep(args.settle)
        after = rss_mib(server.pid)
        redis_after = rss_mib(redis_proc.pid)
        check = httpx.post(f"{base}/rank", json={"user_id": "w1", "query": "mug", "n": 10}, timeout=30)
        statuses = server_statuses(base)

    total = sum(counts.values())
    print(
        f"flood: {total} requests in {flood_s:.1f} s ({total / flood_s:.0f}/s) from {args.processes} "
        f"process(es) x {args.concurrency} in flight; load average {os.getloadavg()[0]:.2f}"
    )
    windows: dict[int, float] = {}
    for t, mib in rss.samples:
        windows[int(t // 10)] = max(mib, windows.get(int(t // 10), 0.0))
    print(
        "server RSS, max of each 10 s of the flood (MiB): "
        + ", ".join(f"{w * 10}-{w * 10 + 10} s {mib:.1f}" for w, mib in sorted(windows.items()))
    )
    print(
        f"server RSS: before {before:.1f} MiB, max during {max(during):.1f} MiB, after ({args.settle:g} s) "
        f"{after:.1f} MiB; redis RSS {redis_before:.1f} -> {redis_after:.1f} MiB"
    )
    print("client-side answers (kind status: count):")
    for key in sorted(counts):
        print(f"  {key:<40} {counts[key]}")
    print("server-side answers (/metrics, route status: count):")
    for key in sorted(statuses):
        print(f"  {key:<40} {statuses[key]:.0f}")
    n500 = sum(v for k, v in counts.items() if k.endswith(" 500")) + sum(
        v for k, v in statuses.items() if k.endswith(" 500")
    )
    healthy = check.status_code == 200 and check.json()["personalized"]
    print(f"500s: {n500:.0f}; a normal ranking afterwards: {check.status_code}, personalized {healthy}")
    if args.out:
        result = {
            "duration_s": flood_s,
            "requests": total,
            "rss_mib": {"before": before, "max_during": max(during), "after": after, "samples": rss.samples},
            "redis_rss_mib": {"before": redis_before, "after": redis_after},
            "client": dict(counts),
            "server": statuses,
            "n500": n500,
        }
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")
    if n500 or not healthy:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
