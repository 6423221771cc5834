"""Benchmark: memory of big tables -- a 750K-listing vocabulary and a 1M x 256 pretrained table -- loaded and
trained on, per table format.

    python benchmarks/big_tables.py [--vocab 750000] [--rows 1000000] [--dim 256] [--steps 5]
        [--batch-size 1024] [--max-len 50] [--formats parquet,npy32,npy16] [--out bench_out/big_tables]

Writes one random pretrained table (``--rows`` x ``--dim``, listing ids ``l0 ..``) in each format into
``OUT_tables/``: ``parquet`` (float32; loaded into memory and copied into vocabulary order, the original
path), ``npy32`` and ``npy16`` (``vectors.npy`` float32 / float16, memory-mapped and read in place through a
row index). Then, per format, in a fresh process with one torch thread: the listing vocabulary (the first
``--vocab`` table ids), the table loaded for ADPM component 2, the default CTR model (the ``ctr`` preset, touch signals off:
encoder, learned ``listing:view`` table, ranker; three 750K x 32 id tables with lazy Adam) and ``--steps``
training steps on random batches of ``--batch-size`` rows with ``listing:view`` sequences of ``--max-len``.

Prints the resident memory after each stage (from ``/proc/self/status``: ``VmRSS`` = ``RssAnon`` -- the
process's own memory -- + ``RssFile`` -- pages of mapped files, which the kernel may drop and read again) and
the peak (``VmHWM``), plus the time per training step.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FORMATS = {"parquet": ("parquet", "float32"), "npy32": ("npy", "float32"), "npy16": ("npy", "float16")}


def memory() -> dict[str, int]:
    """Bytes: VmRSS, RssAnon, RssFile, VmHWM of this process."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


def write_tables(directory: Path, rows: int, dim: int, formats: list[str]) -> dict[str, Path]:
    """The same random table in each format (built in chunks; the parquet one needs it whole in memory)."""
    from adsformer.representations.table import RepresentationTable

    ids = [f"l{i}" for i in range(rows)]
    paths = {}
    npy32 = directory / "npy32"
    if not (npy32 / "vectors.npy").exists():
        vectors = np.lib.format.open_memmap(directory / "source.npy", "w+", np.float32, (rows, dim))
        rng = np.random.default_rng(0)
        for lo in range(0, rows, 100_000):
            vectors[lo : lo + 100_000] = rng.standard_normal((min(100_000, rows - lo), dim), np.float32)
        vectors.flush()
        source = RepresentationTable("random", "benchmark", ids, vectors)
        source.save(npy32, format="npy", dtype="float32")
        del vectors
        (directory / "source.npy").unlink()
    source = RepresentationTable.load(npy32)
    for name in formats:
        fmt, dtype = FORMATS[name]
        paths[name] = directory / name
        if not paths[name].exists():
            source.save(paths[name], format=fmt, dtype=dtype)
    return paths


def child(table_dir: str, vocab_size: int, steps: int, batch_size: int, max_len: int) -> None:
    import torch

    torch.set_num_threads(1)
    from adsformer.adpm.pretrained import FrozenTable
    from adsformer.data.inputs import ModelInputs
    from adsformer.data.vocab import Vocabulary
    from adsformer.models.registry import ModelSpec, build_model
    from adsformer.representations.table import RepresentationTable, align_to_vocabulary, vocabulary_rows
    from adsformer.run.config import load_experiment
    from adsformer.training.loop import make_optimizers

    stages: dict[str, Any] = {"imports": memory()}
    vocab = Vocabulary("listing", tuple(f"l{i}" for i in range(vocab_size)), 1)
    stages["vocabulary"] = memory()
    t = time.perf_counter()
    table = RepresentationTable.load(table_dir)
    if table.memory_mapped:
        rows = vocabulary_rows(table, vocab)
        frozen = FrozenTable(table.name, table.vectors, rows >= 0, index=rows)
    else:
        frozen = FrozenTable(table.name, *align_to_vocabulary(table, vocab))
    del table
    load_s = time.perf_counter() - t
    stages["table loaded"] = memory()
    cfg = load_experiment(
        "ctr",
        [
            f"tables=[{table_dir}]",
            "model.adpm.learned.pairs=[all]",
            "model.adpm.encoder.enabled=true",
            "model.adpm.touch.enabled=false",  # the paper's model: no target-aware touch signals
        ],
    )
    spec = ModelSpec({"listing": vocab.size, "shop": 1002, "taxonomy": 102, "query": 5002}, {"query": 5002}, 3,
                     ["listing:view"])  # fmt: skip
    torch.manual_seed(0)
    model = build_model(cfg.model, spec, [frozen])
    optimizers = make_optimizers(model, cfg.train, "ctr")
    stages["model built"] = memory()
    g = torch.Generator().manual_seed(1)
    times = []
    for step in range(steps):
        B = batch_size
        lengths = torch.randint(0, max_len + 1, (B,), generator=g)
        seq = torch.randint(2, vocab.size, (B, max_len), generator=g)
        seq = seq * (torch.arange(max_len)[None, :] < lengths[:, None])
        target = {
            e: torch.randint(2, spec.vocab_sizes[e], (B,), generator=g)
            for e in ("listing", "shop", "taxonomy")
        }
        start = time.perf_counter()
        logits = model(ModelInputs(
            target, {"query": torch.randint(2, 5002, (B,), generator=g)}, torch.randn(B, 3, generator=g),
            {"listing:view": seq}, {"listing:view": lengths}, position=torch.randint(1, 20, (B,), generator=g),
        ))  # fmt: skip
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            logits, torch.rand(B, generator=g).round()
        )
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in optimizers:
            opt.step()
        times.append(time.perf_counter() - start)
        if step == 0:
            stages["after 1 training step"] = memory()
    stages[f"after {steps} training steps"] = memory()
    params = sum(p.numel() for p in model.parameters())
    result = {"stages": stages, "load_seconds": load_s, "step_seconds": times, "parameters": params}
    print("RESULT " + json.dumps(result))


def mib(n: float) -> str:
    return f"{n / 2**20:,.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vocab", type=int, default=750_000)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--max-len", type=int, default=50)
    ap.add_argument("--formats", default="parquet,npy32,npy16")
    ap.add_argument("--out", type=Path, default=Path("bench_out/big_tables"))
    args = ap.parse_args()
    formats = [f for f in args.formats.split(",") if f]
    if not formats or any(f not in FORMATS for f in formats):
        raise SystemExit(f"--formats: some of {sorted(FORMATS)}")

    from adsformer.io import atomic_file, write_json

    tables = args.out.parent / f"{args.out.name}_tables"
    tables.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    paths = write_tables(tables, args.rows, args.dim, formats)
    print(f"tables written in {time.perf_counter() - t:.0f} s", flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    results = {}
    for name in formats:
        cmd = [sys.executable, __file__, "--child", str(paths[name]), str(args.vocab), str(args.steps),
               str(args.batch_size), str(args.max_len)]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            raise SystemExit(f"{name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
        r = json.loads(lines[-1][len("RESULT ") :])
        r["table_bytes"] = sum(p.stat().st_size for p in paths[name].rglob("*") if p.is_file())
        results[name] = r
        print(
            f"{name}: peak {mib(r['stages'][f'after {args.steps} training steps']['VmHWM'])} MiB", flush=True
        )

    lines = [
        f"# Big tables: {args.vocab:,}-listing vocabulary, {args.rows:,} x {args.dim} pretrained table",
        "",
        f"`configs/ctr.yaml` model (three {args.vocab:,} x 32 id tables, lazy Adam) + component 2 over the table; "
        f"{args.steps} training steps, batch {args.batch_size}, sequences of {args.max_len}; one thread. MiB; "
        "RSS = anonymous (the process's own) + file-backed (mapped pages the kernel can drop).",
        "",
        "| format | file MiB | load s | stage | RSS | anon | file | peak RSS |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for name, r in results.items():
        for i, (stage, m) in enumerate(r["stages"].items()):
            head = f"| {name} | {mib(r['table_bytes'])} | {r['load_seconds']:.1f} |" if i == 0 else "| | | |"
            lines.append(
                f"{head} {stage} | {mib(m['VmRSS'])} | {mib(m['RssAnon'])} | {mib(m['RssFile'])} | {mib(m['VmHWM'])} |"
            )
    lines += ["", "| format | median step s (after the first) | first step s |", "| --- | ---: | ---: |"]
    for name, r in results.items():
        rest = r["step_seconds"][1:] or r["step_seconds"]
        lines.append(f"| {name} | {float(np.median(rest)):.3f} | {r['step_seconds'][0]:.3f} |")
    md = "\n".join(lines) + "\n"
    write_json(
        args.out.with_suffix(".json"), {"setup": vars(args) | {"out": str(args.out)}, "results": results}
    )
    with atomic_file(args.out.with_suffix(".md")) as tmp:
        tmp.write_text(md)
    print()
    print(md)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
    else:
        main()
