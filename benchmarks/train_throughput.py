"""Benchmark: training throughput of adSformer CTR against FuxiCTR peers, and its FLOP utilization.

    python benchmarks/train_throughput.py --data DIR [--batch-size 1024] [--windows 7] [--steps 10]
        [--warmup 3] [--models adsformer-view,transact,din] [--threads 1] [--out bench_out/train_throughput]
        [--set KEY=VALUE ...] [--variant NAME MODEL KEY=VALUE ... ...]

In one process, on the same machine, the same :class:`FeatureSet` (``configs/ctr.yaml`` data settings) and
the same shuffled training rows:

* ``adsformer-view``: our ranker with ADPM over ``listing:view`` (encoder, learned table, touch signals),
  the input the peers get; ``adsformer``: ADPM over every (entity, action) sequence (the default; optional);
* ``transact`` / ``din``: FuxiCTR's TransAct and DIN, built and fed by ``benchmarks/peers.py`` (same
  embedding widths, deep tower, cross layers, sequence length; their own ``train_step``);
* ``--variant NAME MODEL KEY=VALUE ...``: one more of our models, ``MODEL`` (one of ours) with these config
  overrides on top of ``--set``, timed in the same rounds under ``NAME`` (repeatable), e.g.
  ``--variant adsformer-r64 adsformer model.ranker.cross_rank=64``. ``--set`` applies to every model
  (the peers read the ranker's widths from it too).

A training step is what each side's training loop does per batch: gather the batch from the feature
arrays, forward, loss, backward, optimizer step(s). After ``--warmup`` steps each, the models take turns
running timed windows of ``--steps`` steps (round robin, so machine load hits all alike); the report gives
the median examples/s over ``--windows`` windows and the ratio to each peer, also as the median of the
per-round ratios (each round's windows run back to back, so on a loaded machine that ratio is the steadier).

FLOP utilization: the FLOPs of one training step (forward + backward) are counted with
``torch.utils.flop_counter.FlopCounterMode`` (matrix multiplies, attention, ...; element-wise work is not
counted) and divided by the batch; achieved FLOP/s = FLOPs per example x examples/s, against the peak of a
float32 matrix multiply (``--peak-n`` square, same threads) measured in the same run (median of repeats).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from adsformer.data.batching import make_batch
from adsformer.data.features import build_features
from adsformer.data.validate import read_dataset
from adsformer.experiments.runs import resolve_for_data
from adsformer.io import atomic_file, write_json
from adsformer.run.config import load_experiment
from adsformer.run.model import seeded_model
from adsformer.run.scoring import forward
from adsformer.training.loop import make_optimizers
from peers import MODELS, FuxiAdapter, ModelEntry, build_peer, import_fuxictr

ROOT = Path(__file__).resolve().parents[1]


def matmul_peak(n: int, repeats: int = 7) -> float:
    """FLOP/s of an (n x n) @ (n x n) float32 product: the median over ``repeats``."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        rates.append(2 * n**3 / (time.perf_counter() - start))
    return statistics.median(rates)


def batches(rows: np.ndarray, batch_size: int, seed: int) -> Iterator[np.ndarray]:
    """Full batches of shuffled rows, endlessly (a new shuffle per pass)."""
    for epoch in range(1_000_000):
        order = rows[np.random.default_rng(seed * 1000 + epoch).permutation(rows.size)]
        for lo in range(0, order.size - batch_size + 1, batch_size):
            yield order[lo : lo + batch_size]


def ours(entry: ModelEntry, fs: Any, base: list[str]) -> tuple[torch.nn.Module, Callable[[np.ndarray], None]]:
    cfg = load_experiment(
        ROOT / "configs" / "ctr.yaml", [*base, *entry.overrides], extra={"model": entry.user}
    )
    cfg = resolve_for_data(cfg, fs)  # the auto settings as training decides them (CTR: rank-64 cross layers)
    model = seeded_model(cfg, fs)
    model.train()
    optimizers = make_optimizers(model, cfg.train, "ctr")
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def step(rows: np.ndarray) -> None:
        batch = make_batch(fs, rows, "ctr", pairs=model.pairs)  # as the training loop: the sequences read
        loss = loss_fn(forward(model, batch, with_position=True), batch.label)
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in optimizers:
            opt.step()

    return model, step


def peer(name: str, fuxi: dict[str, Any], adapter: FuxiAdapter, lr: float) -> tuple[Any, Callable]:
    model = build_peer(name, fuxi, adapter, lr, seed=0)
    model.train()
    model._batch_index = 0

    def step(rows: np.ndarray) -> None:
        model.train_step(adapter.batch(rows))

    return model, step


def variant(spec: list[str]) -> ModelEntry:
    """``--variant NAME MODEL KEY=VALUE ...``: our ``MODEL`` with more overrides, under the name ``NAME``."""
    if len(spec) < 3 or spec[1] not in MODELS or MODELS[spec[1]].kind != "ours":
        ours_names = sorted(n for n, e in MODELS.items() if e.kind == "ours")
        raise SystemExit(f"--variant NAME MODEL KEY=VALUE ...: MODEL one of {ours_names}, got {spec}")
    name, base, extra = spec[0], MODELS[spec[1]], tuple(spec[2:])
    if name in MODELS:
        raise SystemExit(f"--variant {name}: the name is a model's already; pick another")
    description = f"{base.description}; {' '.join(extra)}"
    return dataclasses.replace(base, name=name, overrides=(*base.overrides, *extra), description=description)


def count_flops(step: Callable[[np.ndarray], None], rows: np.ndarray) -> int:
    with FlopCounterMode(display=False) as counter:
        step(rows)
    return int(counter.get_total_flops())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--windows", type=int, default=7)
    ap.add_argument("--steps", type=int, default=10, help="training steps per timed window")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--models", default="adsformer-view,transact")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--peak-n", type=int, default=1024)
    ap.add_argument("--out", type=Path, default=Path("bench_out/train_throughput"))
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--variant", action="append", default=[], nargs="+", metavar="NAME MODEL KEY=VALUE")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    if any(m not in MODELS for m in names):
        raise SystemExit(f"--models: some of {sorted(MODELS)}")
    variants = [variant(spec) for spec in args.variant]
    if len({v.name for v in variants}) < len(variants):
        raise SystemExit("--variant: each needs a name of its own")
    entries = {name: MODELS[name] for name in names} | {v.name: v for v in variants}
    names = list(entries)

    base = [f"batch_size={args.batch_size}", *args.overrides]
    cfg = load_experiment(ROOT / "configs" / "ctr.yaml", base)
    fs = build_features(read_dataset(args.data), cfg.data)
    train_rows = fs.rows("train", "ctr")
    fuxi = import_fuxictr() if any(entries[m].kind == "peer" for m in names) else None
    adapter = FuxiAdapter(fs, cfg.model.ranker) if fuxi else None
    steps: dict[str, Callable[[np.ndarray], None]] = {}
    info: dict[str, dict[str, Any]] = {}
    peak_before = matmul_peak(args.peak_n)
    for name in names:
        if entries[name].kind == "ours":
            model, step = ours(entries[name], fs, base)
        else:
            assert fuxi is not None and adapter is not None
            model, step = peer(name, fuxi, adapter, cfg.train.lr)
        feed = batches(train_rows, args.batch_size, seed=0)
        for _ in range(args.warmup):
            step(next(feed))
        flops = count_flops(step, next(feed))
        steps[name] = step
        info[name] = {
            "description": entries[name].description,
            "parameters": int(sum(p.numel() for p in model.parameters())),
            "flops_per_example": flops / args.batch_size,
            "feed": feed,
            "rates": [],
        }
    for _ in range(args.windows):  # round robin: each window of each model in turn
        for name in names:
            feed = info[name]["feed"]
            work = [next(feed) for _ in range(args.steps)]
            start = time.perf_counter()
            for rows in work:
                steps[name](rows)
            info[name]["rates"].append(args.steps * args.batch_size / (time.perf_counter() - start))
    peak = statistics.median([peak_before, matmul_peak(args.peak_n)])

    report: dict[str, Any] = {
        "setup": {
            "dataset": str(args.data),
            "n_train": int(train_rows.size),
            "batch_size": args.batch_size,
            "windows": args.windows,
            "steps_per_window": args.steps,
            "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "matmul_peak_flops": peak,
            "matmul_n": args.peak_n,
            "load_avg_1m": os.getloadavg()[0],
        },
        "models": {},
    }
    lines = [
        f"# Training throughput: {args.data.name}, batch {args.batch_size}, {torch.get_num_threads()} thread(s)",
        "",
        f"{args.windows} timed windows x {args.steps} steps per model (round robin), median examples/s; "
        f"float32 matmul peak {peak / 1e9:.1f} GFLOP/s (n = {args.peak_n}, same run).",
        "",
        "| model | code | parameters | examples/s (median) | min..max | GFLOP / example | GFLOP/s | of peak |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in names:
        i = info.pop(name)
        i.pop("feed")
        med = statistics.median(i["rates"])
        achieved = med * i["flops_per_example"]
        i |= {"examples_per_s": med, "achieved_flops": achieved, "utilization": achieved / peak}
        report["models"][name] = i
        lines.append(
            f"| {name} | {i['description']} | {i['parameters']:,} | {med:,.0f} | {min(i['rates']):,.0f}..."
            f"{max(i['rates']):,.0f} | {i['flops_per_example'] / 1e9:.4f} | {achieved / 1e9:.2f} | "
            f"{100 * i['utilization']:.1f}% |"
        )
    ours_names = [n for n in names if entries[n].kind == "ours"]
    peer_names = [n for n in names if entries[n].kind == "peer"]
    if ours_names and peer_names:
        lines.append("")
        for a in ours_names:
            for b in peer_names:
                ratio = report["models"][a]["examples_per_s"] / report["models"][b]["examples_per_s"]
                report.setdefault("ratios", {})[f"{a}/{b}"] = ratio
                paired = [
                    x / y
                    for x, y in zip(report["models"][a]["rates"], report["models"][b]["rates"], strict=True)
                ]
                report.setdefault("paired_ratios", {})[f"{a}/{b}"] = statistics.median(paired)
                lines.append(
                    f"- {a} / {b}: **{ratio:.2f}x** examples/s (ratio of medians); median of the per-round "
                    f"ratios {statistics.median(paired):.2f}x (rounds {min(paired):.2f}..{max(paired):.2f}x)"
                )
    md = "\n".join(lines) + "\n"
    write_json(args.out.with_suffix(".json"), report)
    with atomic_file(args.out.with_suffix(".md")) as tmp:
        tmp.write_text(md)
    print(md)
    if not math.isfinite(peak):
        raise SystemExit("matmul peak could not be measured")


if __name__ == "__main__":
    main()
