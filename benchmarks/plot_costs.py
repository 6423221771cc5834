"""Plot the cost curves: scoring latency vs candidates and vs history, training examples/s vs batch size.

    python benchmarks/plot_costs.py --curves bench_out/scoring_curves.json \
        --training bench_out/tt_256.json bench_out/tt_1024.json bench_out/tt_4096.json \
        --out docs/figures/cost_curves.png

``--curves`` is the JSON of ``benchmarks/scoring.py --curves``; each ``--training`` file the JSON of one
``benchmarks/train_throughput.py`` run (one batch size, ours and the peers in the same run). Writes one
small PNG (atomically).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from adsformer.io import atomic_file


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--curves", type=Path, required=True)
    ap.add_argument("--training", type=Path, nargs="+", required=True)
    ap.add_argument("--out", type=Path, default=Path("docs/figures/cost_curves.png"))
    args = ap.parse_args()
    curves = json.loads(args.curves.read_text())["results"]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.1), dpi=90)
    for ax, key, label in (
        (axes[0], "candidates", "candidates"),
        (axes[1], "history", "events per sequence"),
    ):
        points = curves[key]
        xs = [p[key] for p in points]
        for option in [k for k in points[0] if k != key]:
            ax.plot(xs, [p[option]["p50_ms"] for p in points], marker="o", label=option)
        ax.set_xlabel(label)
        ax.set_ylabel("ms per request (median)")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_title("scoring vs candidates (full window)", fontsize=9)
    axes[1].set_title("scoring vs history", fontsize=9)
    runs = sorted((json.loads(p.read_text()) for p in args.training), key=lambda r: r["setup"]["batch_size"])
    sizes = [r["setup"]["batch_size"] for r in runs]
    for model in runs[0]["models"]:
        axes[2].plot(sizes, [r["models"][model]["examples_per_s"] for r in runs], marker="o", label=model)
    axes[2].set_xscale("log", base=2)
    axes[2].set_xlabel("batch size")
    axes[2].set_ylabel("training examples/s (median)")
    axes[2].set_title("training throughput vs batch size", fontsize=9)
    axes[2].grid(alpha=0.3)
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(args.out) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
