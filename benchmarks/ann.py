"""Benchmark: candidate retrieval with the live budget filter, against exact search and against bm25s.

    python benchmarks/ann.py [--n 1000000] [--dim 256] [--queries 1000] [--nlist 4096]
                             [--nprobes 16,32,64,128,256] [--out-of-budget 0.1] [--sq8] [--pq] [--skip-flat]
                             [--lexical-n 1000000] [--lexical-queries 3000] [--fashion ../shared/data/fashion]
                             [--json FILE]

Everything runs single-threaded (OMP / BLAS threads 1, ``faiss.omp_set_num_threads(1)``), one process.

**ANN.** The vectors are *synthetic*: ``--n`` unit vectors of ``--dim`` dimensions drawn from a mixture of
``--clusters`` Gaussian clusters in groups of 20 overlapping ones (cluster sizes Zipf-like; noise of
``--spread`` x 0.6..1.2 the centres' scale, so a point's own cluster explains only part of it); the
queries are fresh draws from the same mixture. Real embeddings are less cleanly clustered: read the
recall figures as those of this distribution.
A random ``--out-of-budget`` share of the listings is out of budget. Ground truth is the exact filtered
top-100 by inner product (numpy: matrix product, out-of-budget scores set to -inf, ``argpartition``),
which is also the brute-force baseline, timed one query per call and in batches of 50. The faiss IVF-Flat
index (``adsformer.retrieval.ann.AnnIndex``, ids = rows, ``IDSelectorBitmap`` over the budget bitmap
inside the search) is timed the same two ways for each ``nprobe``: recall@10 / @100 against the filtered
exact top-k, queries/s and the speedup over brute force. ``--sq8`` adds an IVF-SQ8 index (the vectors as
int8, ``dim`` bytes each). ``--pq`` adds an IVF-PQ index (``dim / 8``-byte codes).

**Lexical.** ``--lexical-n`` simulated listings (the simulator's catalogue generator: titles, tags,
taxonomy) and ``--lexical-queries`` queries drawn the way the simulator draws search queries (a taxonomy
node's words, sometimes a colour); with ``--fashion``, also the 44k real product titles of the fashion
data set with "colour article-type" queries. Ours: ``adsformer.retrieval.lexical.LexicalIndex`` (tantivy,
one shard: the 1000 best in-budget BM25 matches over title / tags / taxonomy, ranked by BM25 x the static
multiplier, top 100).
The peer: ``bm25s`` over the same tokens (one field), top 100 with ``weight_mask`` = the same budget
filter, with its numba top-k backend (its fastest; every query) and its numpy backend (a sample). All one
query per call.

Prints medians of per-query latencies (queries/s = 1 / median).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy loads its BLAS: single-threaded for a fair comparison

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import faiss  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from adsformer.retrieval.ann import AnnIndex  # noqa: E402
from adsformer.retrieval.budget import BudgetState  # noqa: E402
from adsformer.retrieval.config import AnnConfig, LexicalConfig  # noqa: E402
from adsformer.retrieval.lexical import LexicalIndex, build_lexical  # noqa: E402
from adsformer.retrieval.tokens import listing_text, query_tokens  # noqa: E402

K = 100


# --------------------------------------------------------------------------------------------- ANN data
def clustered(
    n: int, dim: int, clusters: int, seed: int, centers: np.ndarray | None = None, spread_scale: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """(n, dim) float32 unit vectors from the mixture (and the centres, to draw queries from the same one).

    Two levels: ``clusters / 20`` groups, each with 20 clusters whose centres are the group's centre plus
    half as much noise again, so neighbouring clusters overlap; points are a centre plus noise of
    ``spread_scale`` x 0.6..1.2 (per cluster) the centres' scale."""
    rng = np.random.default_rng(seed)
    if centers is None:
        crng = np.random.default_rng(12345)
        groups = crng.standard_normal((max(1, clusters // 20), dim)).astype(np.float32)
        centers = groups[crng.integers(0, groups.shape[0], clusters)] + 0.5 * crng.standard_normal(
            (clusters, dim)
        ).astype(np.float32)
    weights = 1.0 / np.arange(1, clusters + 1) ** 0.5
    spread = spread_scale * np.random.default_rng(54321).uniform(0.6, 1.2, clusters).astype(np.float32)
    assign = rng.choice(clusters, n, p=weights / weights.sum())
    x = np.empty((n, dim), np.float32)
    for s in range(0, n, 100_000):
        a = assign[s : s + 100_000]
        part = centers[a] + spread[a, None] * rng.standard_normal((a.size, dim), dtype=np.float32)
        x[s : s + a.size] = part / np.linalg.norm(part, axis=1, keepdims=True)
    return x, centers


def exact_top(x: np.ndarray, q: np.ndarray, penalty: np.ndarray, k: int) -> np.ndarray:
    """(Q, k) rows of the exact filtered top-k (best first): matrix product (+ ``penalty``: 0 in budget,
    -inf out) + argpartition."""
    s = q @ x.T  # (Q, N)
    s += penalty
    part = np.argpartition(-s, k, axis=1)[:, :k]  # (Q, k) unordered
    order = np.argsort(-np.take_along_axis(s, part, 1), axis=1)
    return np.take_along_axis(part, order, 1)


def recall(got: np.ndarray, want: np.ndarray, k: int) -> float:
    return float(
        np.mean([len(set(g[:k]) & set(w[:k])) / k for g, w in zip(got.tolist(), want.tolist(), strict=True)])
    )


def median_s(fn, items) -> float:
    times = []
    for it in items:
        t = time.perf_counter()
        fn(it)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_ann(args: argparse.Namespace) -> dict:
    t = time.perf_counter()
    x, centers = clustered(args.n, args.dim, args.clusters, seed=0, spread_scale=args.spread)
    q, _ = clustered(args.queries, args.dim, args.clusters, seed=1, centers=centers, spread_scale=args.spread)
    gen_s = time.perf_counter() - t
    rng = np.random.default_rng(2)
    allowed = rng.random(args.n) >= args.out_of_budget
    budget = BudgetState([str(i) for i in range(args.n)], np.where(allowed, 1.0, 0.0))
    penalty = np.where(allowed, 0.0, -np.inf).astype(np.float32)
    print(
        f"ANN data: {args.n:,} x {args.dim} synthetic clustered unit vectors ({args.clusters} clusters, "
        f"spread {args.spread}), "
        f"{args.queries:,} queries, {(~allowed).mean():.1%} of listings out of budget ({gen_s:.1f} s to draw)"
    )

    # exact filtered top-k = ground truth = the batched brute force; single queries timed on a sample
    t = time.perf_counter()
    truth = np.concatenate([exact_top(x, q[s : s + 50], penalty, K) for s in range(0, args.queries, 50)])
    brute_batch_s = (time.perf_counter() - t) / args.queries
    sample = range(min(args.brute_single, args.queries))
    brute_single_s = median_s(lambda i: exact_top(x, q[i : i + 1], penalty, K), sample)
    print(
        f"brute force (numpy, filtered): {1 / brute_single_s:,.1f} q/s one query per call "
        f"(median {1000 * brute_single_s:.1f} ms), {1 / brute_batch_s:,.1f} q/s in batches of 50"
    )

    out = {
        "n": args.n,
        "dim": args.dim,
        "queries": args.queries,
        "out_of_budget": float((~allowed).mean()),
        "brute_single_qps": 1 / brute_single_s,
        "brute_batch_qps": 1 / brute_batch_s,
        "indexes": [],
    }
    kinds = (
        []
        if args.skip_flat
        else [("ivf_flat", AnnConfig(kind="ivf_flat", nlist=args.nlist, train_size=args.train_per_list))]
    )
    if args.sq8:
        kinds.append(("ivf_sq8", AnnConfig(kind="ivf_sq8", nlist=args.nlist, train_size=args.train_per_list)))
    if args.pq:
        kinds.append(("ivf_pq", AnnConfig(kind="ivf_pq", nlist=args.nlist, train_size=args.train_per_list)))
    for name, cfg in kinds:
        t = time.perf_counter()
        index = AnnIndex.build(x, np.arange(args.n), cfg)
        build_s = time.perf_counter() - t
        per_vector = {
            "ivf_flat": 4 * args.dim,
            "ivf_sq8": args.dim,
            "ivf_pq": index.layout.pq_m * index.layout.pq_bits // 8,
        }
        print(
            f"\n{name}: nlist={index.layout.nlist}"
            + (f" pq_m={index.layout.pq_m}" if index.layout.pq_m else "")
            + f", {per_vector[name]} bytes a vector"
            + f", built in {build_s:.1f} s (train on {min(args.n, cfg.train_size * index.layout.nlist):,} vectors, add {args.n:,})"
        )
        rows = sweep(index, q, truth, budget, allowed, args, brute_single_s, brute_batch_s)
        goal = [r for r in rows if r["recall@100"] >= 0.95 and r["speedup_single"] >= 20]
        print(
            "goal (recall@100 >= 0.95 at >= 20x brute force, one query per call): "
            + (
                f"met at nprobe={goal[0]['nprobe']} (recall@100 {goal[0]['recall@100']:.4f}, "
                f"{goal[0]['speedup_single']:.0f}x)"
                if goal
                else "NOT met by this sweep"
            )
        )
        out["indexes"].append({"kind": name, "layout": index.describe(), "build_s": build_s, "sweep": rows})
        index = None  # free the vectors before the next build
    return out


def sweep(index, q, truth, budget, allowed, args, brute_single_s, brute_batch_s) -> list[dict]:
    """recall@10 / @100 and queries/s (one per call, and all in one call) at each nprobe."""
    print(
        f"{'nprobe':>7} {'recall@10':>10} {'recall@100':>11} {'q/s (1/call)':>13} {'x brute':>8} {'q/s (batch)':>12} {'x brute':>8}"
    )
    rows = []
    for nprobe in args.nprobes:
        got = index.search(q, K, budget, nprobe=nprobe)[0]
        assert allowed[got[got >= 0]].all(), "an out-of-budget listing came back"
        single_s = median_s(
            lambda i, p=nprobe, ix=index: ix.search(q[i : i + 1], K, budget, nprobe=p),
            range(args.queries),
        )
        t = time.perf_counter()
        index.search(q, K, budget, nprobe=nprobe)
        batch_s = (time.perf_counter() - t) / args.queries
        r = {
            "nprobe": nprobe,
            "recall@10": recall(got, truth, 10),
            "recall@100": recall(got, truth, 100),
            "qps_single": 1 / single_s,
            "speedup_single": brute_single_s / single_s,
            "qps_batch": 1 / batch_s,
            "speedup_batch": brute_batch_s / batch_s,
        }
        rows.append(r)
        print(
            f"{nprobe:>7} {r['recall@10']:>10.4f} {r['recall@100']:>11.4f} {r['qps_single']:>13,.0f} "
            f"{r['speedup_single']:>7.0f}x {r['qps_batch']:>12,.0f} {r['speedup_batch']:>7.0f}x"
        )
    return rows


# ---------------------------------------------------------------------------------------------- lexical
def simulated_corpus(n: int, n_queries: int, seed: int) -> tuple[pl.DataFrame, list[str]]:
    """Simulated listings and search queries drawn as the simulator draws them."""
    from adsformer.simulator import SimulatorConfig
    from adsformer.simulator.world import build_world

    cfg = SimulatorConfig.preset("demo").with_overrides(n_listings=n, n_shops=max(400, n // 50), images=False)
    rng = np.random.default_rng(seed)
    world = build_world(cfg, rng)
    tax = world.tax
    node = world.leaf[rng.integers(0, world.n, n_queries)]  # leaves in proportion to their listings
    w1 = np.where(
        rng.random(n_queries) < 0.7, tax.sample_words(rng, node, head=True), tax.sample_words(rng, node)
    )
    w2 = tax.sample_words(rng, node)
    w2 = np.where((rng.random(n_queries) < 0.4) & (w2 != w1), w2, -1)
    color = np.where(
        rng.random(n_queries) < 0.3, tax.color_words(world.color[rng.integers(0, world.n, n_queries)]), -1
    )
    queries = tax.join([color.astype(np.int32), w1.astype(np.int32), w2.astype(np.int32)]).to_list()
    return world.listings_frame(False), [q for q in queries if q.strip()]


def fashion_corpus(root: Path, n_queries: int, seed: int) -> tuple[pl.DataFrame, list[str]]:
    styles = pl.read_csv(root / "styles.csv", infer_schema_length=0, truncate_ragged_lines=True)
    titles = (root / "styles_text.csv").read_text().splitlines()[1:]
    n = min(styles.height, len(titles))
    listings = pl.DataFrame(
        {
            "listing_id": styles["id"][:n],
            "title": titles[:n],
            "taxonomy_id": (
                styles["masterCategory"] + "/" + styles["subCategory"] + "/" + styles["articleType"]
            )[:n],
        }
    )
    pick = styles.head(n).sample(n_queries, seed=seed, with_replacement=True)
    queries = [
        f"{c or ''} {a or ''}".strip().lower()
        for c, a in pick.select("baseColour", "articleType").iter_rows()
    ]
    return listings, queries


def bare_query(index: LexicalIndex, tokens: list[str]):
    """The same disjunction of field terms, with no catalogue-wide IDF boosts."""
    from tantivy import Occur, Query

    return Query.boolean_query(
        [
            (Occur.Should, Query.term_query(index.schema, f, t))
            for f in ("title", "tags", "taxonomy")
            for t in tokens
        ]
    )


def bench_lexical(name: str, listings: pl.DataFrame, queries: list[str], out_share: float) -> dict:
    import bm25s

    ids = listings["listing_id"].to_list()
    text = listing_text(listings)
    rng = np.random.default_rng(3)
    allowed = rng.random(len(ids)) >= out_share
    budget = BudgetState(ids, np.where(allowed, 1.0, 0.0))
    tokens = [query_tokens(q) for q in queries]
    tokens = [t for t in tokens if t]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = LexicalConfig()
        t = time.perf_counter()
        build_lexical(Path(tmp) / "lex", ids, text, rng.random(len(ids)), cfg)
        ours_build = time.perf_counter() - t
        index = LexicalIndex(Path(tmp) / "lex", cfg)
        for tok in tokens[:50]:  # warm-up
            index.search(tok, K, budget)
        ours_s = median_s(lambda tok, ix=index: ix.search(tok, K, budget), tokens)
        # the same index fetching only K per shard before ranking (apples to apples with a top-K peer)
        small = LexicalIndex(Path(tmp) / "lex", LexicalConfig(per_shard_cap=K))
        ours_k_s = median_s(lambda tok, ix=small: ix.search(tok, K, budget), tokens)
        got = [index.search(tok, K, budget)[0] for tok in tokens[:200]]
        assert all(allowed[g].all() for g in got)
        raw_s = median_s(
            lambda tok, ix=index: ix.searchers[0].search(bare_query(ix, tok), K, count=False), tokens
        )
    docs = [t + g + x for t, g, x in zip(text.title, text.tags, text.taxonomy, strict=True)]
    mask = allowed.astype(np.float32)
    r = {
        "corpus": name,
        "listings": len(ids),
        "queries": len(tokens),
        "ours_qps": 1 / ours_s,
        "ours_build_s": ours_build,
        "ours_fetch_k_qps": 1 / ours_k_s,
        "tantivy_alone_qps": 1 / raw_s,
    }
    print(f"\nlexical, {name}: {len(ids):,} listings, {len(tokens):,} queries, {out_share:.0%} out of budget")
    print(
        f"  ours (tantivy: per shard the top 1000 in-budget BM25 matches, ranked x static value; top {K}): {r['ours_qps']:,.0f} q/s "
        f"(median {1000 * ours_s:.2f} ms; index built in {ours_build:.1f} s); the bare tantivy query "
        f"(no filter, no catalogue IDF, no row lookup): {r['tantivy_alone_qps']:,.0f} q/s; "
        f"fetching {K} (not 1000) per shard: {r['ours_fetch_k_qps']:,.0f} q/s"
    )
    # bm25s with its numba top-k (its fastest single-threaded setting) on every query; the numpy backend
    # (argpartition over all scores) on a sample, it is much slower
    for backend, sample in (("numba", len(tokens)), ("numpy", min(200, len(tokens)))):
        t = time.perf_counter()
        peer = bm25s.BM25(backend=backend)
        peer.index(docs, show_progress=False)
        build_s = time.perf_counter() - t
        known = [tok for tok in tokens if any(w in peer.vocab_dict for w in tok)]

        def one(tok: list[str], p=peer, b=backend, m: np.ndarray | None = mask) -> None:
            p.retrieve([tok], k=K, show_progress=False, n_threads=0, weight_mask=m, backend_selection=b)

        for tok in known[:20]:  # warm-up (numba compiles on the first call)
            one(tok)
        peer_s = median_s(one, known[:sample])
        nomask_s = median_s(lambda tok, f=one: f(tok, m=None), known[:sample])
        r[f"bm25s_{backend}_qps"] = 1 / peer_s
        r[f"bm25s_{backend}_no_filter_qps"] = 1 / nomask_s
        r[f"bm25s_{backend}_build_s"] = build_s
        r[f"bm25s_{backend}_timed_queries"] = len(known[:sample])
        print(
            f"  bm25s ({backend} backend, weight_mask, top {K}, {len(known[:sample]):,} queries): "
            f"{1 / peer_s:,.0f} q/s (median {1000 * peer_s:.2f} ms); without the filter {1 / nomask_s:,.0f} q/s; "
            f"index built in {build_s:.1f} s"
        )
        peer = None
    print(
        f"  ours / bm25s-numba (one query per call): {r['ours_qps'] / r['bm25s_numba_qps']:.2f}x "
        f"(fetching {K} per shard: {r['ours_fetch_k_qps'] / r['bm25s_numba_qps']:.2f}x)"
    )
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--spread", type=float, default=2.0, help="noise around the cluster centres (x 0.6..1.2)")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--brute-single", type=int, default=30, help="queries timed one per call for brute force")
    ap.add_argument("--nlist", type=int, default=4096)
    ap.add_argument("--train-per-list", type=int, default=64, help="k-means training vectors per list")
    ap.add_argument(
        "--nprobes", type=lambda s: [int(v) for v in s.split(",")], default=[16, 32, 64, 128, 256]
    )
    ap.add_argument("--out-of-budget", type=float, default=0.1)
    ap.add_argument("--pq", action="store_true", help="also an IVF-PQ index")
    ap.add_argument("--sq8", action="store_true", help="also an IVF-SQ8 index (int8 vectors)")
    ap.add_argument("--skip-flat", action="store_true", help="no IVF-Flat index")
    ap.add_argument("--lexical-n", type=int, default=1_000_000)
    ap.add_argument("--lexical-queries", type=int, default=3000)
    ap.add_argument("--fashion", type=Path, default=None, help="fashion folder (styles.csv, styles_text.csv)")
    ap.add_argument("--skip-ann", action="store_true")
    ap.add_argument("--skip-lexical", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    faiss.omp_set_num_threads(1)
    result: dict = {}
    if not args.skip_ann:
        result["ann"] = bench_ann(args)
    if not args.skip_lexical:
        result["lexical"] = []
        if args.lexical_n > 0:
            listings, queries = simulated_corpus(args.lexical_n, args.lexical_queries, seed=0)
            result["lexical"].append(bench_lexical("simulated", listings, queries, args.out_of_budget))
        if args.fashion is not None:
            listings, queries = fashion_corpus(args.fashion, args.lexical_queries, seed=0)
            result["lexical"].append(bench_lexical("fashion", listings, queries, args.out_of_budget))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
