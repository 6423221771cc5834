"""The daily protocol (paper figure 8): for each test day d, train on the days before it, test on day d.

For ``days = n`` the test days are the last n whole days of the data, newest last. Day d trains on
``[d - train_days - 1, d - 1)``, validates (best epoch, Platt scaling) on day ``d - 1`` and tests on day d,
for the baseline and for the adSformer on the same features; the lift of each day is the adSformer's
ROC-AUC (and PR-AUC) relative to that day's baseline. Writes ``daily.json``, ``daily.md`` and
``daily_lift.png`` atomically.

Pretrained tables (``--set tables=...``) must not have seen the earliest test day: build them with
``adsformer represent ... --set until=test --set split.mode=days --set split.end_days_ago=<n - 1>``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from adsformer.config import ConfigError
from adsformer.console import log as progress_line
from adsformer.console import stage
from adsformer.data.features import build_features
from adsformer.data.validate import read_dataset
from adsformer.experiments.runs import check_task, fit, test_metrics
from adsformer.io import atomic_dir
from adsformer.models.config import UserName
from adsformer.run.config import ExperimentConfig

MODELS: tuple[UserName, ...] = ("baseline", "adsformer")


def run_daily(
    data_dir: Path,
    cfg: ExperimentConfig,
    days: int,
    out: Path,
    *,
    train_days: float = 0.0,
    log: Callable[[str], None] = progress_line,
) -> dict[str, Any]:
    """Train and test baseline and adSformer for each of the last ``days`` days; returns the summary."""
    if days < 1:
        raise ConfigError("--days must be >= 1")
    if train_days < 0:
        raise ConfigError(f"--train-days must be >= 0 (0 = all history), got {train_days}")
    ds = read_dataset(data_dir)
    check_task(ds, cfg.task)
    records = []
    for ago in range(days - 1, -1, -1):  # oldest test day first
        split = dataclasses.replace(
            cfg.data.split,
            mode="days",
            test_days=1.0,
            val_days=1.0,
            end_days_ago=float(ago),
            train_days=float(train_days),
        )
        day_cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, split=split))
        fs = build_features(ds, day_cfg.data)
        test_start = int(fs.split.test_start)
        rec: dict[str, Any] = {
            "test_day": dt.datetime.fromtimestamp(test_start, dt.UTC).strftime("%Y-%m-%d %H:%M"),
            "test_start": test_start,
            "n_train": int(fs.rows("train", cfg.task).size),
        }
        for model in MODELS:
            mcfg = dataclasses.replace(day_cfg, model=dataclasses.replace(day_cfg.model, user=model))
            with stage(f"test day {rec['test_day']}: train and test {model}"):
                net, result = fit(mcfg, fs, show_progress=False)
                m = test_metrics(net, fs, mcfg, result.calibrator)
            rec[model] = {k: m[k] for k in ("n_test", "roc_auc", "pr_auc", "log_loss", "ece")}
        for metric in ("roc_auc", "pr_auc"):
            b = rec["baseline"][metric]
            rec[f"{metric}_lift"] = 100.0 * (rec["adsformer"][metric] - b) / b
        log(
            f"test day {rec['test_day']}  baseline {rec['baseline']['roc_auc']:.4f}  "
            f"adsformer {rec['adsformer']['roc_auc']:.4f}  lift {rec['roc_auc_lift']:+.2f}%"
        )
        records.append(rec)
    lifts = np.array([r["roc_auc_lift"] for r in records])
    summary = {
        "task": cfg.task,
        "dataset": ds.meta.name,
        "days": records,
        "train_days": train_days,
        "roc_auc_lift_mean": float(lifts.mean()),
        "days_with_positive_lift": int((lifts > 0).sum()),
    }
    with atomic_dir(out) as tmp:
        (tmp / "daily.json").write_text(json.dumps(summary, indent=2) + "\n")
        (tmp / "daily.md").write_text(daily_markdown(summary))
        _plot(summary, tmp / "daily_lift.png")
    return summary


def daily_markdown(summary: dict[str, Any]) -> str:
    lines = [
        f"# Daily protocol: {summary['task'].upper()} on {summary['dataset']}",
        "",
        "| test day | train rows | test rows | baseline ROC-AUC | adSformer ROC-AUC | ROC-AUC lift | PR-AUC lift |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in summary["days"]:
        lines.append(
            f"| {r['test_day']} | {r['n_train']:,} | {r['baseline']['n_test']:,} | "
            f"{r['baseline']['roc_auc']:.4f} | {r['adsformer']['roc_auc']:.4f} | {r['roc_auc_lift']:+.2f}% | "
            f"{r['pr_auc_lift']:+.2f}% |"
        )
    lines += [
        "",
        f"Mean ROC-AUC lift {summary['roc_auc_lift_mean']:+.2f}%; positive on "
        f"{summary['days_with_positive_lift']} of {len(summary['days'])} days.",
    ]
    return "\n".join(lines) + "\n"


def _plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    days = summary["days"]
    x = np.arange(len(days))
    fig, ax = plt.subplots(figsize=(max(5, 1.1 * len(days) + 2), 3.8))
    roc = [d["roc_auc_lift"] for d in days]
    pr = [d["pr_auc_lift"] for d in days]
    ax.bar(x - 0.2, roc, width=0.4, label="ROC-AUC lift", color="#1f77b4")
    ax.bar(x + 0.2, pr, width=0.4, label="PR-AUC lift", color="#2ca02c")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(x, [d["test_day"][:10] for d in days], rotation=30, ha="right")
    ax.set_ylabel("lift over the baseline, %")
    ax.set_title(f"Daily lifts of the adSformer, {summary['task'].upper()} on {summary['dataset']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
