"""Benchmark: windowed sequence building for millions of simulated impressions.

    python benchmarks/sequences.py [--scale large] [--impressions 5000000] [--pandas-sample 100000]

Measures, in one process on the same simulated data:

* ours -- :class:`adsformer.data.sequences.EventIndex` (sort once + two ``searchsorted`` per impression)
  building the ``listing:view`` sequences of every impression, then padding them all to ``(N, M)``;
* the peer -- a straightforward pandas implementation (merge impressions with the user's events, filter
  the window, sort newest first, ``groupby().head(M)``), run on a random sample of the impressions because
  on all of them it would take hours; its outputs are checked equal to ours on that sample.

Prints impressions/s for both and their ratio (medians over ``--repeats`` runs), the peak memory of our
build (tracemalloc: numpy allocations) and the process's peak RSS, and the full ``build_features`` time
(every (entity, action) pair, vocabularies, splits).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
import tracemalloc

import numpy as np
import pandas as pd
import polars as pl

from adsformer.config import DataConfig
from adsformer.data.features import build_features, enrich_events, user_codes
from adsformer.data.sequences import EventIndex, time_origin
from adsformer.data.vocab import Vocabulary
from adsformer.simulator import SimulatorConfig, generate


def pandas_reference(
    events: pd.DataFrame, imps: pd.DataFrame, window_s: int, max_len: int, chunk: int = 5_000
) -> list[list[int]]:
    """events: user, ts, value, order; imps: imp, user, ts. The obvious merge / filter / sort / head."""
    out: dict[int, list[int]] = {}
    for start in range(0, len(imps), chunk):
        part = imps.iloc[start : start + chunk]
        m = part.merge(events, on="user", suffixes=("", "_ev"))
        m = m[(m["ts_ev"] < m["ts"]) & (m["ts_ev"] >= m["ts"] - window_s)]
        m = m.sort_values(["imp", "ts_ev", "order"], ascending=[True, False, False])
        m = m.groupby("imp", sort=False).head(max_len)
        out.update(m.groupby("imp", sort=False)["value"].agg(list).to_dict())
    return [out.get(i, []) for i in imps["imp"]]


def max_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", default="large")
    ap.add_argument(
        "--impressions", type=int, default=5_000_000, help="use the first N impressions (0 = all)"
    )
    ap.add_argument("--pandas-sample", type=int, default=50_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--window-s", type=int, default=3600)
    ap.add_argument("--max-len", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    t = time.perf_counter()
    cfg = SimulatorConfig.preset(args.scale).with_overrides(seed=args.seed, images=False)
    ds, _truth = generate(cfg)
    if args.impressions and ds.impressions.height > args.impressions:
        ds.impressions = ds.impressions.head(args.impressions)
    print(
        f"simulated {ds.impressions.height:,} impressions, {ds.events.height:,} events, "
        f"{ds.listings.height:,} listings in {time.perf_counter() - t:.1f} s"
    )

    # The listing:view pair, as build_features prepares it (ids as ints: the listing-id code).
    events = enrich_events(ds.events, ds.listings).filter(pl.col("action") == "view")
    ev_user, imp_user = user_codes(events["user_id"], ds.impressions["user_id"])
    ev_ts = events["ts"].to_numpy()
    imp_ts = ds.impressions["ts"].to_numpy()
    values = Vocabulary.fit("listing", [events["listing_id"]], top_k=10**9).encode(events["listing_id"])
    n = imp_ts.size

    ours, ours_index = [], []
    for _ in range(args.repeats):
        tracemalloc.start()
        t = time.perf_counter()
        t0 = time_origin(ev_ts, imp_ts, window_s=args.window_s)
        col = EventIndex.build(ev_user, ev_ts, values, t0).sequences(
            imp_user, imp_ts, args.window_s, args.max_len
        )
        ours_index.append(time.perf_counter() - t)
        padded, _lengths = col.padded()
        ours.append(time.perf_counter() - t)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        del padded
    ours_s, index_s = statistics.median(ours), statistics.median(ours_index)
    print(
        f"ours:   {n:,} impressions: sequences (end, length) in {index_s:.2f} s; padded to ({n:,}, {args.max_len}) "
        f"in {ours_s:.2f} s total (median of {args.repeats}) = {n / ours_s:,.0f} impressions/s; "
        f"peak numpy memory {peak / 2**30:.2f} GiB (the padded block alone is {n * args.max_len * 4 / 2**30:.2f} GiB)"
    )
    rng = np.random.default_rng(args.seed)
    sample = np.sort(rng.choice(n, size=min(args.pandas_sample, n), replace=False))
    ev_pd = pd.DataFrame({"user": ev_user, "ts_ev": ev_ts, "value": values, "order": np.arange(ev_ts.size)})
    imp_pd = pd.DataFrame({"imp": np.arange(sample.size), "user": imp_user[sample], "ts": imp_ts[sample]})
    peer = []
    for _ in range(max(1, args.repeats - 2)):
        t = time.perf_counter()
        ref = pandas_reference(ev_pd, imp_pd, args.window_s, args.max_len)
        peer.append(time.perf_counter() - t)
    peer_s = statistics.median(peer)
    ids, lengths = col.padded(sample)
    mine = [row[:k].tolist() for row, k in zip(ids, lengths, strict=True)]
    assert mine == ref, "pandas reference and adsformer disagree"
    print(
        f"pandas: {sample.size:,} sampled impressions in {peer_s:.2f} s = {sample.size / peer_s:,.0f} "
        f"impressions/s (outputs identical to ours on the sample)"
    )
    print(f"ratio:  {(n / ours_s) / (sample.size / peer_s):,.1f}x impressions/s (ours / pandas)")

    t = time.perf_counter()
    fs = build_features(ds, DataConfig())
    full_s = time.perf_counter() - t
    print(
        f"build_features (split, vocabularies, {len(fs.sequences)} pairs, dense): {full_s:.1f} s "
        f"= {n / full_s:,.0f} impressions/s"
    )
    print(f"process peak RSS: {max_rss_gib():.2f} GiB")


if __name__ == "__main__":
    main()
