"""Benchmark: online serving latency.

    python benchmarks/serving.py --run RUN_DIR [--pccvr-run RUN_DIR] --data DATA_DIR [--index INDEX_DIR]
        [--candidates 600] [--repeats 200] [--threads 1] [--rate 50] [--duration 60] [--aof] [--skip-http]

Two parts, on a trained run and the dataset it was trained on (the catalog):

1. **Scoring 600 candidates for one user, in process** (torch threads ``--threads``): the fast one-user path
   (:class:`adsformer.models.fast.FastScorer`) against the plain batched forward (the user's sequences
   repeated for every candidate, as ``Predictor`` and evaluation score), alternated in the same process on
   the same inputs, for three users: a new user (empty sequences), the busiest real window of the dataset,
   and a synthetic full window (``max_len`` events in every sequence). Both paths' outputs are checked equal
   (1e-5). Then the whole in-process ranking (retrieval, store, features, CTR + PCCVR, auction) for the
   busiest user. Prints p50 / p99 per path and the ratio of medians.
2. **HTTP load** (unless ``--skip-http``): a ``redis-server`` on a free loopback port, ``adsformer serve``
   (uvicorn) in a subprocess on it, and an open-loop load of ``--rate`` requests/s for ``--duration`` s
   (httpx, asyncio): 80% ``POST /rank`` (query + user), 20% ``POST /events`` (a few actions), over a pool
   of simulated users, the score cache off (``--cache-ttl 0``: every ranking scored). Prints client-side
   p50 / p99 per route, the service's own ranking time, errors and non-personalized (fallback) rankings.
   Redis keeps nothing on disk unless ``--aof`` (an append-only file fsynced every second, in a temporary
   directory: the README's production setting).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from adsformer.serving.build import build_service
from adsformer.serving.catalog import Catalog
from adsformer.serving.demo import pick_users
from adsformer.serving.memory import keep_freed_memory
from adsformer.serving.online_features import sequence_items
from adsformer.serving.outcome import RankQuery
from adsformer.serving.ranking import RankingService
from adsformer.serving.scoring import ServingModel
from adsformer.serving.settings import ServingSettings
from adsformer.serving.store import InMemoryStore, StoreSpec, UserState


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


def summary(xs_s: list[float]) -> dict[str, float]:
    ms = [x * 1e3 for x in xs_s]
    return {
        "p50_ms": statistics.median(ms),
        "p99_ms": pct(ms, 99),
        "mean_ms": statistics.fmean(ms),
        "n": len(ms),
    }


# ---------------------------------------------------------------------------------------------- part 1
def user_states(model: ServingModel, catalog: Catalog, data: Path, rng: random.Random) -> dict[str, tuple]:
    """(state, now) for: a new user, the dataset's busiest window, a synthetic full window."""
    now = 2_000_000_000
    out: dict[str, tuple] = {"new user (no history)": (UserState(0, {}), now)}
    (busy,) = pick_users(data, 1)
    store = InMemoryStore(StoreSpec(model.online.window_s, model.online.max_len))
    events = busy.events.to_dicts()
    busy_now = int(busy.events["ts"].max()) + 1
    store.append("busy", sequence_items(events, model.pairs, catalog), [], now=busy_now)
    state = store.read("busy", model.pairs, busy_now)
    out[f"busiest real window ({state.sequences.get('listing:view', []).__len__()} views)"] = (
        state,
        busy_now,
    )
    M = model.online.max_len
    full: dict[str, list[tuple[int, str]]] = {}
    for pair in model.pairs:
        entity = pair.split(":", 1)[0]
        column = {"listing": "listing_id", "shop": "shop_id", "taxonomy": "taxonomy_id"}.get(entity, entity)
        if column in catalog.listings.columns:
            values = catalog.listings[column].drop_nulls().cast(pl.String).to_list()
        else:  # queries
            values = [f"query {i}" for i in range(M)]
        full[pair] = [(now - 1 - i, rng.choice(values)) for i in range(M)]
    out[f"full window ({M} events per pair)"] = (UserState(1, full), now)
    return out


def bench_scoring(
    model: ServingModel, catalog: Catalog, data: Path, n_cand: int, repeats: int, seed: int
) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    ids = rng.sample(catalog.ids, min(n_cand, len(catalog)))
    bids = catalog.bids[[catalog.row[i] for i in ids]]
    rows = []
    for name, (state, now) in user_states(model, catalog, data, rng).items():
        feats = model.features(ids, query="handmade gift", state=state, now=now, bids=bids)
        fast_z, plain_z = model.logits(feats, fast=True), model.logits(feats, fast=False)
        max_diff = float((fast_z - plain_z).abs().max())
        assert max_diff < 1e-4, f"fast path differs from the plain forward by {max_diff}"
        for _ in range(5):  # warm up both
            model.logits(feats, fast=True), model.logits(feats, fast=False)
        times: dict[str, list[float]] = {"fast": [], "plain": []}
        for _ in range(repeats):  # alternate, so both see the same machine state
            for path, fast in (("fast", True), ("plain", False)):
                t = time.perf_counter()
                model.logits(feats, fast=fast)
                times[path].append(time.perf_counter() - t)
        f, p = summary(times["fast"]), summary(times["plain"])
        lengths = {k: int(v[0]) for k, v in feats.seq_len.items()}
        rows.append(
            {
                "user": name,
                "candidates": len(ids),
                "listing_view_len": lengths.get("listing:view", 0),
                "fast": f,
                "plain": p,
                "speedup_p50": p["p50_ms"] / f["p50_ms"],
                "max_abs_logit_diff": max_diff,
            }
        )
        print(
            f"  {name:<42} fast p50 {f['p50_ms']:7.2f} ms p99 {f['p99_ms']:7.2f} | plain p50 {p['p50_ms']:7.2f} ms "
            f"p99 {p['p99_ms']:7.2f} | speedup {p['p50_ms'] / f['p50_ms']:.2f}x (max |diff| {max_diff:.1e})",
            flush=True,
        )
    return rows


def bench_rank(service: RankingService, data: Path, repeats: int) -> dict[str, Any]:
    (user,) = pick_users(data, 1)
    key = f"user:{user.user_id}"
    events = user.events.to_dicts()
    now = int(user.events["ts"].max()) + 1
    service.clock = lambda: float(now)  # the dataset's time is the server clock here
    service.ingest(key, events)
    q = RankQuery(query=user.query, user_key=key, n=10, ts=now)
    for _ in range(5):
        service.rank(q)
    times, stages = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        out = service.rank(q)
        times.append(time.perf_counter() - t)
        stages.append(out.timings_ms)
    res = summary(times) | {
        "candidates": out.candidates,
        "stage_p50_ms": {k: statistics.median(s[k] for s in stages) for k in stages[0]},
    }
    print(
        f"  whole ranking in process ({out.candidates} candidates, CTR"
        f"{' + PCCVR' if service.pccvr else ''}): p50 {res['p50_ms']:.2f} ms p99 {res['p99_ms']:.2f} ms; "
        f"stages p50 {json.dumps({k: round(v, 2) for k, v in res['stage_p50_ms'].items()})}",
        flush=True,
    )
    return res


# ---------------------------------------------------------------------------------------------- part 2
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stdout.read().decode() if proc.stdout else ''}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)


async def load(base: str, rate: float, duration: float, users: list[Any], key: str) -> dict[str, Any]:
    import httpx

    rng = random.Random(0)
    lat: dict[str, list[float]] = {"/rank": [], "/events": []}
    errors: list[str] = []
    fallbacks: list[str] = []  # rankings answered without the user's sequences (200, personalized: false)
    server_ms: list[float] = []  # the service's own time for each ranking (timings_ms.total)
    cached: list[bool] = []
    n_candidates: list[int] = []

    async def one(client: httpx.AsyncClient, i: int) -> None:
        user = users[i % len(users)]
        who = {"browser_id": user.user_id} if user.user_id.startswith("b_") else {"user_id": user.user_id}
        if rng.random() < 0.2:
            rows = user.events.to_dicts()
            j = rng.randrange(len(rows))
            events = [
                {k: v for k, v in r.items() if k in ("action", "listing_id", "query") and v is not None}
                | {"ts": int(time.time()) - 1}
                for r in rows[j : j + 3]
            ]
            path, body, headers = "/events", {**who, "events": events}, {"X-API-Key": key}
        else:
            path, body, headers = "/rank", {**who, "query": user.query, "n": 10}, {}
        t = time.perf_counter()
        try:
            r = await client.post(base + path, json=body, headers=headers)
            if r.status_code != 200:
                errors.append(f"{path} {r.status_code} {r.text[:200]}")
            elif path == "/rank":
                out = r.json()
                server_ms.append(out["timings_ms"]["total"] / 1e3)
                cached.append(bool(out["cached"]))
                n_candidates.append(int(out["candidates"]))
                if not out["personalized"]:
                    fallbacks.append(str(out["fallback_reason"]))
        except httpx.HTTPError as exc:
            errors.append(f"{path} {type(exc).__name__}: {exc}")
        lat[path].append(time.perf_counter() - t)

    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=10, limits=limits) as client:
        start = time.perf_counter()
        tasks = []
        n = int(rate * duration)
        for i in range(n):
            delay = start + i / rate - time.perf_counter()  # open loop: a fixed schedule
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(client, i)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    return {
        "requests": n,
        "seconds": elapsed,
        "achieved_rate": n / elapsed,
        "errors": len(errors),
        "error_examples": errors[:5],
        "rank_fallbacks": len(fallbacks),
        "fallback_reasons": sorted(set(fallbacks)),
        "all": summary(lat["/rank"] + lat["/events"]),
        "/rank": summary(lat["/rank"]),
        "/events": summary(lat["/events"]) if lat["/events"] else None,
        "rank_server_side": summary(server_ms) if server_ms else None,
        "rank_cached": int(sum(cached)),
        "rank_candidates_mean": statistics.fmean(n_candidates) if n_candidates else 0.0,
    }


def bench_http(args: argparse.Namespace) -> dict[str, Any]:
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("redis-server not found: install it or pass --skip-http")
    rport, sport = free_port(), free_port()
    aof_dir = tempfile.TemporaryDirectory()
    persistence = ["--appendonly", "yes", "--appendfsync", "everysec"] if args.aof else ["--appendonly", "no"]
    redis_proc = subprocess.Popen(
        [exe, "--port", str(rport), "--bind", "127.0.0.1", "--dir", aof_dir.name, "--save", "", *persistence],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    cmd = [
        sys.executable,
        "-m",
        "adsformer.cli",
        "serve",
        "--run",
        str(args.run),
        "--catalog",
        str(args.data),
    ]
    cmd += ["--redis-url", f"redis://127.0.0.1:{rport}/0", "--port", str(sport), "--api-key", "bench"]
    cmd += ["--threads", str(args.threads), "--cache-ttl", str(args.cache_ttl)]
    if args.pccvr_run:
        cmd += ["--pccvr-run", str(args.pccvr_run)]
    if args.index:
        cmd += ["--index", str(args.index)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{sport}"
    try:
        wait_http(base + "/healthz", server)
        users = pick_users(args.data, 40)
        asyncio.run(load(base, 5, 2, users, "bench"))  # warm-up
        res = asyncio.run(load(base, args.rate, args.duration, users, "bench"))
    finally:
        server.terminate()
        server.wait(timeout=30)
        redis_proc.terminate()
        redis_proc.wait(timeout=30)
        aof_dir.cleanup()
    print(
        f"  HTTP load: {res['requests']} requests at {res['achieved_rate']:.1f}/s for {res['seconds']:.1f} s, "
        f"errors {res['errors']}, non-personalized rankings {res['rank_fallbacks']} {res['fallback_reasons']}\n"
        f"    all     p50 {res['all']['p50_ms']:.2f} ms p99 {res['all']['p99_ms']:.2f} ms\n"
        f"    /rank   p50 {res['/rank']['p50_ms']:.2f} ms p99 {res['/rank']['p99_ms']:.2f} ms (n={res['/rank']['n']})",
        flush=True,
    )
    if res["rank_server_side"]:
        sv = res["rank_server_side"]
        print(
            f"    /rank inside the service p50 {sv['p50_ms']:.2f} ms p99 {sv['p99_ms']:.2f} ms "
            f"({res['rank_cached']} answered from the cache; {res['rank_candidates_mean']:.0f} candidates on average)",
            flush=True,
        )
    if res["/events"]:
        ev = res["/events"]
        print(f"    /events p50 {ev['p50_ms']:.2f} ms p99 {ev['p99_ms']:.2f} ms (n={ev['n']})", flush=True)
    for e in res["error_examples"]:
        print(f"    error: {e}")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="CTR run directory")
    ap.add_argument("--pccvr-run", type=Path, default=None)
    ap.add_argument("--data", type=Path, required=True, help="the dataset the run was trained on (catalog)")
    ap.add_argument("--index", type=Path, default=None, help="retrieval index (default: catalog matching)")
    ap.add_argument("--candidates", type=int, default=600)
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 or 2)")
    ap.add_argument("--rate", type=float, default=50.0, help="HTTP requests per second")
    ap.add_argument("--duration", type=float, default=60.0, help="HTTP load seconds")
    ap.add_argument(
        "--cache-ttl", type=float, default=0.0, help="the server's score cache TTL (0: every request scored)"
    )
    ap.add_argument("--aof", action="store_true", help="Redis with an append-only file (fsync every second)")
    ap.add_argument("--skip-http", action="store_true")
    ap.add_argument("--skip-scoring", action="store_true", help="only the HTTP load test")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    kept = keep_freed_memory()  # as `adsformer serve` does
    catalog = Catalog.load(args.data)
    ctr = ServingModel.load(args.run, catalog)
    print(
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; torch threads {args.threads}; "
        f"malloc keeps freed memory: {kept}"
    )
    results: dict[str, Any] = {"threads": args.threads, "load_average": os.getloadavg()}
    if not args.skip_scoring:
        print(
            f"1. scoring {args.candidates} candidates for one user ({args.run.name}, {args.repeats} repeats each):"
        )
        results["scoring"] = bench_scoring(ctr, catalog, args.data, args.candidates, args.repeats, seed=0)
        settings = ServingSettings(
            run=args.run, pccvr_run=args.pccvr_run, catalog=args.data, index=args.index, cache_ttl_s=0
        )
        service = build_service(settings, catalog=catalog)
        results["rank_in_process"] = bench_rank(service, args.data, args.repeats)
    if not args.skip_http:
        print(
            f"2. HTTP load test ({args.rate:g} requests/s for {args.duration:g} s; redis-server "
            f"{'with AOF (everysec)' if args.aof else 'without persistence'} + uvicorn; score cache TTL "
            f"{args.cache_ttl:g} s):"
        )
        results["http"] = bench_http(args)
    results["load_average_end"] = os.getloadavg()
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
