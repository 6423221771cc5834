"""Benchmark: peak memory of training in memory against training streamed from a feature store.

    python benchmarks/out_of_core.py --data tiny=DIR1 --data demo=DIR2 --data medium=DIR3
        [--buffer-rows 262144] [--row-group-rows 65536] [--out bench_out/out_of_core] [--set KEY=VALUE ...]

For each canonical dataset (e.g. the simulator at three scales: ``adsformer prepare simulate --scale
tiny|demo|medium``), in one run and on the same machine:

1. the feature job (``adsformer features``, local engine) writes a feature store (into ``OUT_stores/``);
2. ``in-memory``: ``adsformer train --data DIR`` -- the whole dataset and its features in memory;
3. ``streamed``: ``adsformer train --data STORE`` -- row groups streamed, ``--buffer-rows`` in memory.

Every step runs in a fresh subprocess that reports its own peak resident set size
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``), one torch thread. Both training modes use the same model
and training settings (``configs/ctr.yaml``, the paper's, unless ``--config``; one epoch, batch 1024); the
feature job takes its data section, so both modes train on the same features. Writes ``OUT.json``
and ``OUT.md`` and prints the table: peak RSS per mode against the dataset size (impressions, events,
store bytes).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TRAIN_SETS = ("epochs=1", "batch_size=1024", "threads=1")


def child(argv: list[str]) -> None:
    """Run one ``adsformer`` command in this process; print its wall time and this process's peak RSS."""
    from adsformer.cli import app

    start = time.perf_counter()
    try:
        app(argv, standalone_mode=False)
    finally:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
        print("RESULT " + json.dumps({"peak_rss_bytes": peak, "seconds": time.perf_counter() - start}))


def measure(argv: list[str]) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, __file__, "--child", *argv], capture_output=True, text=True, env=env, check=False
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"failed: adsformer {' '.join(argv)}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def dataset_size(data: Path) -> dict[str, int]:
    import pyarrow.parquet as pq

    return {
        "impressions": pq.ParquetFile(data / "impressions.parquet").metadata.num_rows,
        "events": pq.ParquetFile(data / "events.parquet").metadata.num_rows,
        "listings": pq.ParquetFile(data / "listings.parquet").metadata.num_rows,
    }


def mib(n: float) -> str:
    return f"{n / 2**20:,.0f}"


def markdown(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        "# Out-of-core training: peak RSS against dataset size",
        "",
        f"One epoch of CTR training (`{args.config.name}`; {', '.join(TRAIN_SETS)}; overrides "
        f"{args.overrides + args.data_sets or 'none'}); streamed with {args.buffer_rows:,} rows per buffer and "
        f"{args.row_group_rows:,} rows per row group. Each step in its own process; peak RSS in MiB.",
        "",
        "| dataset | impressions | events | store MiB | feature job RSS | in-memory train RSS | streamed train "
        "RSS | in-memory ex/s | streamed ex/s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['impressions']:,} | {r['events']:,} | {mib(r['store_bytes'])} | "
            f"{mib(r['feature_job']['peak_rss_bytes'])} | {mib(r['in_memory']['peak_rss_bytes'])} | "
            f"{mib(r['streamed']['peak_rss_bytes'])} | {r['in_memory']['examples_per_s']:,.0f} | "
            f"{r['streamed']['examples_per_s']:,.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", action="append", required=True, metavar="NAME=DIR", help="a dataset (repeat)")
    ap.add_argument("--buffer-rows", type=int, default=262_144)
    ap.add_argument("--row-group-rows", type=int, default=65_536)
    ap.add_argument(
        "--config", type=Path, default=ROOT / "configs" / "ctr.yaml", help="run config (both modes)"
    )
    ap.add_argument("--data-set", dest="data_sets", action="append", default=[], metavar="KEY=VALUE",
                    help="data config override, for the feature job and the in-memory run alike")  # fmt: skip
    ap.add_argument("--out", type=Path, default=Path("bench_out/out_of_core"))
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()

    from adsformer.io import atomic_file, write_json

    stores = args.out.parent / f"{args.out.name}_stores"
    train_sets = (
        *TRAIN_SETS,
        f"train.stream_buffer_rows={args.buffer_rows}",
        *args.overrides,
        *args.data_sets,
    )
    sets = [x for s in train_sets for x in ("--set", s)]
    data_sets = [x for s in args.data_sets for x in ("--set", s)]
    rows = []
    for spec in args.data:
        name, _, path = spec.partition("=")
        data = Path(path)
        row: dict[str, Any] = {"name": name, "data": str(data), **dataset_size(data)}
        store = stores / name
        job = ["features", "--data", str(data), "--out", str(store), "--config", str(args.config)]
        job += ["--row-group-rows", str(args.row_group_rows), *data_sets]
        row["feature_job"] = measure(job)
        row["store_bytes"] = sum(p.stat().st_size for p in store.rglob("*") if p.is_file())
        for mode, source in (("in_memory", data), ("streamed", store)):
            run = stores / f"{name}_{mode}_run"
            result = measure(
                ["train", "--data", str(source), "--config", str(args.config), "--out", str(run), *sets]
            )
            summary = json.loads((run / "train_summary.json").read_text())
            result["examples_per_s"] = summary["train_examples_per_s"]
            result["n_train"] = summary["n_train"]
            result["val_roc_auc"] = summary["epochs"][-1]["val_roc_auc"]
            row[mode] = result
        rows.append(row)
        print(
            f"{name}: {row['impressions']:,} impressions; RSS MiB: feature job "
            f"{mib(row['feature_job']['peak_rss_bytes'])}, in-memory train {mib(row['in_memory']['peak_rss_bytes'])}, "
            f"streamed train {mib(row['streamed']['peak_rss_bytes'])}",
            flush=True,
        )
    report = {"setup": {"buffer_rows": args.buffer_rows, "row_group_rows": args.row_group_rows,
                        "config": str(args.config), "overrides": args.overrides, "cpu_count": os.cpu_count()},
              "datasets": rows}  # fmt: skip
    md = markdown(rows, args)
    write_json(args.out.with_suffix(".json"), report)
    with atomic_file(args.out.with_suffix(".md")) as tmp:
        tmp.write_text(md)
    print()
    print(md)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
    else:
        main()
