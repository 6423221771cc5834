"""Benchmark: online serving latency.

    python benchmarks/serving.py --run RUN_DIR [--pccvr-run RUN_DIR] --data DATA_DIR [--index INDEX_DIR]
        [--candidates 600] [--repeats 200] [--threads 1] [--rate 50] [--duration 60] [--aof] [--skip-http]
        [--variant LABEL=SERVE_ARGS ...] [--variant-src LABEL=SRC_DIR ...] [--http-repeats 3]

Two parts, on a trained run and the dataset it was trained on (the catalog):

1. **Scoring 600 candidates for one user, in process** (torch threads ``--threads``): the fast one-user path
   (:class:`adsformer.models.fast.FastScorer`) against the plain batched forward (the user's sequences
   repeated for every candidate, as ``Predictor`` and evaluation score), alternated in the same process on
   the same inputs, for three users: a new user (empty sequences), the busiest real window of the dataset,
   and a synthetic full window (``max_len`` events in every sequence). Both paths' outputs are checked equal
   (1e-5). Then the whole in-process ranking (retrieval, store, features, CTR + PCCVR, auction) for the
   busiest user. Prints p50 / p99 per path and the ratio of medians.
2. **HTTP load** (unless ``--skip-http``): per run a fresh ``redis-server`` on a free loopback port,
   ``adsformer serve`` (uvicorn) in a subprocess on it, and an open-loop load of ``--rate`` requests/s for
   ``--duration`` s (httpx, asyncio) from a process of its own: 80% ``POST /rank`` (query + user), 20%
   ``POST /events`` (a few actions), over a pool of simulated users, the score cache off (``--cache-ttl 0``:
   every ranking scored). Prints client-side p50 / p95 / p99 of ``/rank``, the service's own view from
   ``/metrics`` (its HTTP latency and the mean / p99 of each ranking stage: retrieve, store, features,
   queue, score, auction; estimated from the histograms' buckets over the measured load only), the
   server's CPU time per request (its processes and workers, from /proc), errors, and the machine's load
   average at the start and end. Several server configurations (``--variant``, e.g. ``--workers 1`` and
   ``--workers 2``; ``--variant-src`` runs one from another source tree, such as the previous commit's)
   are loaded in turn, ``--http-repeats`` rounds with the order alternated, and summarized as medians over
   the rounds and the median of per-round ratios to the first variant: on a shared machine only
   back-to-back ratios mean much. Redis keeps nothing on disk unless ``--aof`` (an append-only file
   fsynced every second, in a temporary directory: the README's production setting).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

import loopback
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
        "p95_ms": pct(ms, 95),
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
# ---------------------------------------------------------------------------------------------- part 2
@dataclass(frozen=True)
class Variant:
    """One server configuration of the HTTP load test: extra ``adsformer serve`` arguments, and the source
    tree it runs from (None: this one; else a directory holding another version's ``adsformer`` package,
    e.g. ``git archive BASE src | tar -x -C DIR`` then ``DIR/src``)."""

    label: str
    serve_args: tuple[str, ...] = ()
    src: Path | None = None


def parse_variants(specs: list[str], sources: list[str]) -> list[Variant]:
    """``--variant LABEL=ARGS`` (ARGS split on spaces) and ``--variant-src LABEL=DIR``."""
    src: dict[str, Path] = {}
    for spec in sources:
        label, _, directory = spec.partition("=")
        src[label] = Path(directory)
    out = []
    for spec in specs or ["serve="]:
        label, _, args = spec.partition("=")
        out.append(Variant(label, tuple(args.split()), src.get(label)))
    unknown = set(src) - {v.label for v in out}
    if unknown:
        raise SystemExit(f"--variant-src for unknown variants {sorted(unknown)}")
    return out


async def load(base: str, rate: float, duration: float, users: list[Any], key: str) -> dict[str, Any]:
    """An open-loop load: request i is sent at ``i / rate`` s whatever the answers before it."""
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


def load_process(base: str, rate: float, duration: float, data: Path, key: str) -> dict[str, Any]:
    """The load generator, run in a process of its own (nothing else of the benchmark competes with its
    event loop), with the service's /metrics scraped before and after it."""
    users = pick_users(data, 40)
    before = scrape(base)
    load_before = os.getloadavg()[0]
    res = asyncio.run(load(base, rate, duration, users, key))
    res["service"] = service_timings(before, scrape(base))
    res["load_average"] = {"start": load_before, "end": os.getloadavg()[0]}
    return res


def warm_up(base: str, data: Path, key: str) -> None:
    asyncio.run(load(base, 5, 2, pick_users(data, 40), key))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` and all its descendants (the workers), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}  # pid -> (parent, cpu s)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:  # ended meanwhile
            continue
        stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    tree, total, grew = {pid}, 0.0, True
    while grew:
        grew = False
        for p, (parent, _) in stats.items():
            if parent in tree and p not in tree:
                tree.add(p)
                grew = True
    for p in tree:
        total += stats.get(p, (0, 0.0))[1]
    return total


# the service's own view, from /metrics (the difference of two scrapes: the measured load alone)
Histo = dict[str, Any]


def scrape(base: str) -> dict[str, Any]:
    """Counters and histograms of ``/metrics``: ``{"counters": {name{labels}: value}, "histograms":
    {name{labels}: {"buckets": [(le, cumulative count)], "sum", "count"}}}``."""
    import httpx

    counters: dict[str, float] = {}
    hist: dict[str, Histo] = {}
    for line in httpx.get(base + "/metrics", timeout=10).text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, _, value = line.rpartition(" ")
        name, _, labels = name_labels.partition("{")
        labels = labels.rstrip("}")
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and name.endswith(("_seconds" + suffix, "_candidates" + suffix)):
                base_name = name[: -len(suffix)]
                kept = ",".join(p for p in labels.split(",") if p and not p.startswith("le="))
                h = hist.setdefault(f"{base_name}{{{kept}}}", {"buckets": [], "sum": 0.0, "count": 0.0})
                if suffix == "_bucket":
                    le = next(p for p in labels.split(",") if p.startswith("le=")).split("=")[1].strip('"')
                    h["buckets"].append((float(le), float(value)))
                else:
                    h[suffix[1:]] = float(value)
                break
        else:
            if name.endswith("_total"):
                counters[name_labels] = float(value)
    return {"counters": counters, "histograms": hist}


def histogram_quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """Prometheus' estimate: linear within the bucket holding the q-th observation (cumulative counts)."""
    total = buckets[-1][1] if buckets else 0.0
    if total <= 0:
        return float("nan")
    rank, lower, below = q * total, 0.0, 0.0
    for le, cumulative in buckets:
        if cumulative >= rank:
            if le == float("inf"):
                return lower
            inside = cumulative - below
            return lower + (le - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = le, cumulative
    return lower


def service_timings(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Per ranking stage and for the HTTP routes: mean, and p50 / p99 estimated from the buckets (ms),
    of what happened between the scrapes; plus the responses counted by route and status."""
    out: dict[str, Any] = {"responses": {}}
    for key, value in after["counters"].items():
        if key.startswith("adsformer_http_requests_total"):
            delta = value - before["counters"].get(key, 0.0)
            if delta:
                out["responses"][key.partition("{")[2].rstrip("}")] = int(delta)
    for key, h in after["histograms"].items():
        if not key.startswith(("adsformer_rank_stage_seconds", "adsformer_http_request_seconds")):
            continue
        b = before["histograms"].get(key, {"buckets": [], "sum": 0.0, "count": 0.0})
        old = dict(b["buckets"])
        buckets = [(le, c - old.get(le, 0.0)) for le, c in h["buckets"]]
        count = h["count"] - b["count"]
        if count <= 0:
            continue
        label = key.partition("{")[2].rstrip("}").split("=")[1].strip('"')
        group = "stages" if key.startswith("adsformer_rank_stage") else "http"
        out.setdefault(group, {})[label] = {
            "n": int(count),
            "mean_ms": (h["sum"] - b["sum"]) / count * 1e3,
            "p50_ms": histogram_quantile(buckets, 0.5) * 1e3,
            "p99_ms": histogram_quantile(buckets, 0.99) * 1e3,
        }
    return out


def serve_args(args: argparse.Namespace, variant: Variant) -> list[str]:
    """The benchmark's ``adsformer serve`` options, then the variant's."""
    out = ["--threads", str(args.threads), "--cache-ttl", str(args.cache_ttl)]
    if args.pccvr_run:
        out += ["--pccvr-run", str(args.pccvr_run)]
    if args.index:
        out += ["--index", str(args.index)]
    return out + list(variant.serve_args)


def run_variant(args: argparse.Namespace, variant: Variant) -> dict[str, Any]:
    """A fresh redis-server and ``adsformer serve`` (the variant's), the load from its own process."""
    env = {"OMP_NUM_THREADS": str(args.threads)}
    if variant.src is not None:
        env["PYTHONPATH"] = str(variant.src.resolve())
    service = loopback.service(
        args.run,
        args.data,
        api_key="bench",
        serve_args=serve_args(args, variant),
        env=env,
        aof=args.aof,
        missing="install it or pass --skip-http",
    )
    with service as svc, ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        pool.submit(warm_up, svc.base, args.data, "bench").result()
        cpu = cpu_seconds(svc.server.pid)
        res = pool.submit(load_process, svc.base, args.rate, args.duration, args.data, "bench").result()
        res["server_cpu_ms_per_request"] = (cpu_seconds(svc.server.pid) - cpu) * 1e3 / res["requests"]
        return res


def print_run(label: str, res: dict[str, Any]) -> None:
    rk, la = res["/rank"], res["load_average"]
    sv = res["service"]
    http = sv.get("http", {}).get("/rank", {})
    stages = " ".join(f"{k} {v['mean_ms']:.1f}/{v['p99_ms']:.0f}" for k, v in sv.get("stages", {}).items())
    print(
        f"  [{label}] {res['requests']} requests at {res['achieved_rate']:.1f}/s, errors {res['errors']}, "
        f"load average {la['start']:.2f} -> {la['end']:.2f}; server CPU {res['server_cpu_ms_per_request']:.1f} ms "
        "a request\n"
        f"    /rank client p50 {rk['p50_ms']:.1f} p95 {rk['p95_ms']:.1f} p99 {rk['p99_ms']:.1f} ms (n={rk['n']}); "
        f"service (/metrics) p50 ~{http.get('p50_ms', float('nan')):.1f} p99 ~{http.get('p99_ms', float('nan')):.1f} ms; "
        f"{res['rank_candidates_mean']:.0f} candidates\n"
        f"    stages mean/p99 ms: {stages}",
        flush=True,
    )
    for e in res["error_examples"]:
        print(f"    error: {e}")


def aggregate(variants: list[Variant], rounds: list[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """Medians over the rounds per variant, and the median of per-round ratios to the first variant."""
    first = variants[0].label
    out: dict[str, Any] = {}
    for v in variants:
        runs = [r[v.label] for r in rounds]
        row = {
            f"rank_{q}_ms": statistics.median(r["/rank"][f"{q}_ms"] for r in runs)
            for q in ("p50", "p95", "p99")
        }
        row["achieved_rate"] = statistics.median(r["achieved_rate"] for r in runs)
        row["errors"] = sum(r["errors"] for r in runs)
        row["load_average"] = statistics.median(r["load_average"]["start"] for r in runs)
        row["server_cpu_ms_per_request"] = statistics.median(r["server_cpu_ms_per_request"] for r in runs)
        if v.label != first:
            for q in ("p50", "p99"):
                row[f"{q}_ratio_to_{first}"] = statistics.median(
                    r[v.label]["/rank"][f"{q}_ms"] / r[first]["/rank"][f"{q}_ms"] for r in rounds
                )
        out[v.label] = row
    return out


def bench_http(args: argparse.Namespace) -> dict[str, Any]:
    variants = parse_variants(args.variant, args.variant_src)
    rounds: list[dict[str, dict[str, Any]]] = []
    for i in range(args.http_repeats):
        order = variants if i % 2 == 0 else variants[::-1]  # alternate who goes first
        print(f"  round {i + 1}/{args.http_repeats}:", flush=True)
        results = {}
        for v in order:
            results[v.label] = run_variant(args, v)
            print_run(v.label, results[v.label])
        rounds.append(results)
    agg = aggregate(variants, rounds)
    print(f"  medians over {len(rounds)} round(s):", flush=True)
    for label, row in agg.items():
        ratios = ", ".join(f"{k} {v:.2f}" for k, v in row.items() if "ratio" in k)
        print(
            f"    [{label}] /rank p50 {row['rank_p50_ms']:.1f} p95 {row['rank_p95_ms']:.1f} p99 "
            f"{row['rank_p99_ms']:.1f} ms at {row['achieved_rate']:.1f}/s, errors {row['errors']}, server CPU "
            f"{row['server_cpu_ms_per_request']:.1f} ms a request, load average {row['load_average']:.2f}"
            f"{'; ' + ratios if ratios else ''}",
            flush=True,
        )
    return {"variants": [v.label for v in variants], "rounds": rounds, "medians": agg}


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
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        help="LABEL=SERVE_ARGS: a server configuration to load (repeatable; alternated per round), e.g. "
        "'one=--workers 1' 'two=--workers 2'",
    )
    ap.add_argument(
        "--variant-src",
        action="append",
        default=[],
        help="LABEL=DIR: run that variant's server from another source tree (DIR on PYTHONPATH)",
    )
    ap.add_argument("--http-repeats", type=int, default=1, help="rounds of every variant")
    ap.add_argument("--aof", action="store_true", help="Redis with an append-only file (fsync every second)")
    ap.add_argument("--skip-http", action="store_true")
    ap.add_argument("--skip-scoring", action="store_true", help="only the HTTP load test")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    kept = keep_freed_memory()  # as `adsformer serve` does
    print(
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; torch threads {args.threads}; "
        f"malloc keeps freed memory: {kept}"
    )
    results: dict[str, Any] = {"threads": args.threads, "load_average": os.getloadavg()}
    if not args.skip_scoring:
        catalog = Catalog.load(args.data)
        ctr = ServingModel.load(args.run, catalog)
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
            f"{args.cache_ttl:g} s; the load from a process of its own; service stage times from /metrics):"
        )
        results["http"] = bench_http(args)
    results["load_average_end"] = os.getloadavg()
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
