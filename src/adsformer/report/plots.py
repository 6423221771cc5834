"""Figures of the report, each returned as PNG bytes (embedded in the HTML as data URIs)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from adsformer.report.curves import pr_curve, reliability, roc_curve
from adsformer.training.metrics import pr_auc, roc_auc

if TYPE_CHECKING:
    from adsformer.report.inputs import RunInfo

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f"]


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def roc_pr_figure(runs: Sequence[RunInfo]) -> bytes:
    """ROC and precision-recall curves of runs scored on the same test split, side by side."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4.2))
    for i, run in enumerate(runs):
        y, p = run.labels, run.probs
        c = COLORS[i % len(COLORS)]
        roc, pr = roc_curve(y, p), pr_curve(y, p)
        a.plot(roc.x, roc.y, color=c, lw=1.6, label=f"{run.label}  AUC {roc_auc(y, p):.4f}")
        b.plot(pr.x, pr.y, color=c, lw=1.6, label=f"{run.label}  AP {pr_auc(y, p):.4f}")
    a.plot([0, 1], [0, 1], ls=":", color="grey", lw=1)
    if runs:
        b.axhline(float(runs[0].labels.mean()), ls=":", color="grey", lw=1, label="base rate")
    a.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    b.set(xlabel="recall", ylabel="precision", title="Precision-recall")
    a.legend(fontsize=8, loc="lower right")
    b.legend(fontsize=8, loc="upper right")
    return _png(fig)


def reliability_figure(run: RunInfo, bins: int = 15) -> bytes:
    """Reliability diagram before and after Platt scaling (equal-mass bins), with ECE in the titles."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    y = run.labels
    panels = [("before Platt scaling", run.probs_uncalibrated, run.metrics.get("before_calibration", {}))]
    platt = (run.metrics.get("calibration") or {}).get("method", "platt") == "platt"
    panels.append(
        ("after Platt scaling" if platt else "served (Platt scaling skipped)", run.probs, run.metrics)
    )
    top = 0.0
    for ax, (title, p, m) in zip(axes, panels, strict=True):
        r = reliability(y, p, bins)
        top = max(top, float(r.predicted.max()), float(r.observed.max()))
        ax.plot(r.predicted, r.observed, "o-", color="#1f77b4", lw=1.5, ms=4, label="observed")
        ax.set_title(f"{run.label}: {title} (ECE {m.get('ece', float('nan')):.4f})", fontsize=10)
        ax.set_xlabel("mean predicted probability (bin)")
    for ax in axes:
        ax.plot([0, top * 1.05], [0, top * 1.05], ls=":", color="grey", lw=1, label="perfect")
        ax.set_xlim(0, top * 1.05)
        ax.set_ylim(0, top * 1.05)
    axes[0].set_ylabel("observed rate (bin)")
    axes[0].legend(fontsize=8)
    return _png(fig)


def training_figure(runs: Sequence[RunInfo]) -> bytes:
    """Training loss per logged step and validation ROC-AUC per epoch; a star marks each run's best epoch
    (the state it restored)."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    for i, run in enumerate(runs):
        c = COLORS[i % len(COLORS)]
        if run.history:
            a.plot(
                [h["step"] for h in run.history],
                [h["train_loss"] for h in run.history],
                color=c,
                lw=1.2,
                label=f"{run.label} train",
            )
        if run.epochs:
            steps = [e["step"] for e in run.epochs]
            a.plot(
                steps, [e["val_log_loss"] for e in run.epochs], "o--", color=c, ms=4, label=f"{run.label} val"
            )
            b.plot(steps, [e["val_roc_auc"] for e in run.epochs], "o-", color=c, label=run.label)
            _mark_best(a, b, run, c)
    a.set(xlabel="step", ylabel="log loss", title="Loss (train: down-sampled; val: natural rate)")
    b.set(xlabel="step", ylabel="ROC-AUC", title="Validation ROC-AUC per epoch (★ best epoch)")
    a.legend(fontsize=7)
    b.legend(fontsize=8)
    return _png(fig)


def _mark_best(loss_ax: Any, auc_ax: Any, run: RunInfo, color: str) -> None:
    """A star on both panels at the run's best (restored) epoch, when known."""
    best = run.best_epoch
    if best is None:
        return
    epoch = run.epochs[best]
    style = {"marker": "*", "s": 180, "color": color, "edgecolors": "black", "linewidths": 0.6, "zorder": 5}
    loss_ax.scatter([epoch["step"]], [epoch["val_log_loss"]], **style)
    auc_ax.scatter(
        [epoch["step"]], [epoch["val_roc_auc"]], label=f"{run.label} best epoch ({best}, from 0)", **style
    )


def ablation_figure(result: dict[str, Any]) -> bytes:
    """ROC-AUC lift over the baseline per row, mean ± std over seeds."""
    rows = [r for r in result["rows"] if r.get("roc_auc_lift") and r["name"] != "baseline"]
    fig, ax = plt.subplots(figsize=(8, 0.45 * max(len(rows), 2) + 1.2))
    names = [r["name"] for r in rows][::-1]
    means = [r["roc_auc_lift"]["mean"] for r in rows][::-1]
    stds = [r["roc_auc_lift"]["std"] for r in rows][::-1]
    ax.barh(names, means, xerr=stds, color=["#2ca02c" if m > 0 else "#d62728" for m in means], alpha=0.8)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel(f"ROC-AUC lift over the baseline, % (mean ± std, {result['seeds']} seeds)")
    ax.set_title(f"{result['task'].upper()} on {result['dataset']}")
    return _png(fig)
