"""``adsformer demo``: the embedded default, end to end on the built-in simulator.

simulate -> validate -> split, vocabularies, sequences -> skip-gram listing vectors from the sessions before
the test day (ADPM component 2) -> train the non-personalized baseline and the adSformer (all three ADPM
components) for CTR and PCCVR, test them on the last day at the natural rate -> a report (Markdown + plots)
with the lifts (paired bootstrap intervals) -> the ranking service started in-process on the adSformer runs,
a few simulated users' actions replayed through it, their ads printed before and after
(:func:`adsformer.serving.demo.replay`) -> the online A/B of baseline vs adSformer through the service, with
the simulator's users clicking and buying on what they were shown (:mod:`adsformer.experiments.abtest`).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import polars as pl

from adsformer.config import DataConfig, to_dict
from adsformer.console import console, kv_table, records_table, stage
from adsformer.data.features import FeatureSet, build_features
from adsformer.data.stats import ctr_by_sequence_presence, sequence_stats, split_stats
from adsformer.data.validate import DatasetError, read_dataset, validate_dataset
from adsformer.experiments.abtest import (
    LABELS,
    PAPER_ONLINE,
    AbtestConfig,
    ArmSpec,
    lifts_table,
    run_abtest,
)
from adsformer.experiments.runs import fit, write_evaluation, write_run
from adsformer.io import atomic_dir
from adsformer.report import write_report
from adsformer.representations.skipgram import SkipGramConfig, represent_skipgram
from adsformer.run.config import load_experiment
from adsformer.serving.demo import replay
from adsformer.simulator import SimulatorConfig, simulate
from adsformer.training.metrics import lift_interval, pr_auc, roc_auc


@dataclass(frozen=True)
class DemoResult:
    data_dir: Path
    report_dir: Path
    summary: dict[str, Any]


#: users in the demo's online A/B (a stable hash sample; about a minute on 2 cores at demo scale)
DEMO_AB_USERS = 1200


#: Demo training settings: small batches and a few epochs suit the demo's ~100k training impressions.
DEMO_TRAIN = ["epochs=3", "batch_size=512", "model.ranker.deep=[128,64]"]


def run_demo(
    out: Path,
    *,
    scale: str = "demo",
    seed: int = 0,
    data_cfg: DataConfig | None = None,
    train_overrides: list[str] | None = None,
    ab_users: int | None = DEMO_AB_USERS,
) -> DemoResult:
    """Run the demo pipeline into ``out`` (``out/data`` the dataset, ``out/report`` the report)."""
    data_cfg = data_cfg or DataConfig()
    out = Path(out)
    data_dir, report_dir = out / "data", out / "report"
    timings: dict[str, float] = {}

    t = time.perf_counter()
    with stage(f"simulate a marketplace (scale={scale}, seed={seed})"):
        simulate(SimulatorConfig.preset(scale).with_overrides(seed=seed), data_dir)
    timings["simulate_s"] = time.perf_counter() - t

    t = time.perf_counter()
    with stage("validate the dataset against the data contract"):
        report = validate_dataset(data_dir)
        if not report.ok:
            raise DatasetError(report)
        ds = read_dataset(data_dir, validate=False)
    timings["validate_s"] = time.perf_counter() - t
    console.print(kv_table("dataset", ds.summary()))

    t = time.perf_counter()
    with stage("split by time, fit vocabularies, build windowed sequences"):
        fs = build_features(ds, data_cfg)
    timings["features_s"] = time.perf_counter() - t
    timings["features_impressions_per_s"] = fs.n / max(timings["features_s"], 1e-9)

    splits, seqs = split_stats(fs), sequence_stats(fs)
    console.print(records_table("splits (CTR training rows are down-sampled)", splits))
    console.print(records_table(f"sequences (window {fs.info.window_s} s, M = {fs.info.max_len})", seqs))

    t = time.perf_counter()
    table_dir = out / "tables" / "skipgram"
    with stage("learn skip-gram listing vectors from sessions before the test day"):
        quality = represent_skipgram(data_dir, table_dir, SkipGramConfig(seed=seed, split=data_cfg.split))
    timings["skipgram_s"] = time.perf_counter() - t
    console.print(
        f"skip-gram: {quality['n']:,} listings; same-taxonomy pairs cosine "
        f"{quality['cosine_same_taxonomy']:.3f} vs {quality['cosine_different_taxonomy']:.3f} "
        f"(separation AUC {quality['separation_auc']:.3f})"
    )

    overrides = [*DEMO_TRAIN, f"tables={table_dir}", *(train_overrides or [])]
    runs_dir = out / "runs"
    models = _train_models(fs, data_cfg, seed, overrides, timings, runs_dir, ds.meta.name)
    console.print(records_table("test split (last day, natural rate): baseline vs adSformer", _shown(models)))
    for line in lift_lines(models):
        console.print(line)

    t = time.perf_counter()
    console.print("[bold]serving[/]: a few simulated users' actions replayed through the ranking service")
    replay(runs_dir / "ctr-adsformer", data_dir, pccvr_run=runs_dir / "pccvr-adsformer", users=3)
    timings["serving_replay_s"] = time.perf_counter() - t

    t = time.perf_counter()
    ab = _online_ab(data_dir, runs_dir, out / "abtest", seed, ab_users)
    timings["abtest_s"] = time.perf_counter() - t

    summary = {
        "dataset": ds.summary(),
        "models": models,
        "splits": splits,
        "sequences": seqs,
        "vocab_sizes": fs.vocabs.sizes(),
        "ctr_by_listing_view_history": ctr_by_sequence_presence(fs, "listing:view")
        if "listing:view" in fs.sequences
        else None,
        "skipgram": {k: v for k, v in quality.items() if k != "examples"},
        "abtest": {k: ab[k] for k in ("setup", "arms", "paper_online_lift", "timing")},
        "timings": timings,
        "config": to_dict(data_cfg),
        "info": {k: v for k, v in fs.info.to_dict().items() if k != "dense_stats"},
    }
    with stage("write the report"), atomic_dir(report_dir) as tmp:
        _write_report(tmp, fs, summary)
        # the runs, and the data section from the summary.json just written beside the report
        write_report([runs_dir, tmp], tmp / "report.html", title=f"adsformer demo (simulator, scale {scale})")
    console.print(
        f"\n[bold]dataset[/]: {data_dir}\n[bold]runs[/]:    {runs_dir}\n"
        f"[bold]report[/]:  {report_dir / 'report.html'}  (also as Markdown: {report_dir / 'report.md'})\n"
        f"[bold]online A/B[/]: {out / 'abtest' / 'abtest.md'}"
    )
    return DemoResult(data_dir, report_dir, summary)


def _train_models(
    fs: FeatureSet,
    data_cfg: DataConfig,
    seed: int,
    overrides: list[str],
    timings: dict[str, float],
    runs_dir: Path,
    dataset: str,
) -> list[dict[str, Any]]:
    """Baseline and adSformer for CTR and PCCVR on the same features, each written as a run directory
    (``runs_dir/TASK-MODEL``) with its test metrics; returns the metrics with lifts."""
    out = []
    for task in ("ctr", "pccvr"):
        base: dict[str, Any] | None = None
        for model in ("baseline", "adsformer"):
            cfg = load_experiment(None, [*overrides, f"seed={seed}"], extra={"task": task, "model": model})
            cfg = dataclasses.replace(cfg, data=data_cfg)
            t = time.perf_counter()
            with stage(f"train {task} {model}"):
                net, result = fit(cfg, fs, show_progress=False)
                run_dir = runs_dir / f"{task}-{model}"
                write_run(run_dir, cfg, fs, net, result, dataset=dataset)
                m = write_evaluation(run_dir, cfg, fs, net, result.calibrator, dataset=dataset)
            timings[f"train_{task}_{model}_s"] = time.perf_counter() - t
            rec: dict[str, Any] = {
                "task": task,
                "model": model,
                "n_test": m["n_test"],
                "roc_auc": m["roc_auc"],
                "pr_auc": m["pr_auc"],
                "log_loss": m["log_loss"],
                "ece": m["ece"],
                "ece_before_platt": m["before_calibration"]["ece"],
                "examples_per_s": result.examples_per_s,
            }
            rows = fs.rows("test", task)
            p = pl.read_parquet(run_dir / "test_predictions.parquet")["p"].to_numpy()
            if base is None:
                base, p_base = rec, p
            rec["roc_auc_lift_pct"] = 100 * (rec["roc_auc"] - base["roc_auc"]) / base["roc_auc"]
            rec["pr_auc_lift_pct"] = 100 * (rec["pr_auc"] - base["pr_auc"]) / base["pr_auc"]
            if rec is not base:  # paired bootstrap over test requests: both models on the same resamples
                y, groups = fs.labels(task)[rows], None if fs.request is None else fs.request[rows]
                for metric, fn in (("roc_auc", roc_auc), ("pr_auc", pr_auc)):
                    rec[f"{metric}_lift_ci"] = list(lift_interval(fn, y, p_base, p, groups, seed=seed))
                lo, hi = rec["roc_auc_lift_ci"]
                rec["roc_auc_lift_significant"] = bool(lo > 0 or hi < 0)
            rec["test_positives"] = int(fs.labels(task)[rows].sum())
            out.append(rec)
    return out


#: below this many test positives a task's lift is called not measurable at this scale
MIN_TEST_POSITIVES = 200


def lift_lines(models: list[dict[str, Any]]) -> list[str]:
    """One line per task: the adSformer's ROC-AUC and PR-AUC lifts with their paired 95% intervals, and
    "not significant" where the ROC-AUC interval crosses zero (or "not measurable" with too few positives)."""
    lines = []
    for rec in models:
        if "roc_auc_lift_ci" not in rec:
            continue
        (rlo, rhi), (plo, phi) = rec["roc_auc_lift_ci"], rec["pr_auc_lift_ci"]
        verdict = (
            "significant" if rec["roc_auc_lift_significant"] else "not significant (the interval crosses 0)"
        )
        if rec["test_positives"] < MIN_TEST_POSITIVES:
            verdict = f"not measurable at this scale: {rec['test_positives']} test positives"
        lines.append(
            f"{rec['task'].upper()} {rec['model']} vs baseline: ROC-AUC {rec['roc_auc_lift_pct']:+.2f}% "
            f"[{rlo:+.2f}%, {rhi:+.2f}%], PR-AUC {rec['pr_auc_lift_pct']:+.2f}% [{plo:+.2f}%, {phi:+.2f}%] "
            f"-- {verdict}"
        )
    return lines


def _online_ab(data_dir: Path, runs_dir: Path, out: Path, seed: int, users: int | None) -> dict[str, Any]:
    """Baseline vs adSformer (CTR + PCCVR runs each) as a closed-loop A/B through the ranking service on
    the simulated users (:mod:`adsformer.experiments.abtest`); prints the lifts beside the paper's."""
    arms = [
        ArmSpec(name, runs_dir / f"ctr-{name}", runs_dir / f"pccvr-{name}")
        for name in ("baseline", "adsformer")
    ]
    with stage(f"online A/B: baseline vs adSformer through the ranking service ({users or 'all'} users)"):
        result = run_abtest(data_dir, arms, out, AbtestConfig(seed=seed, users=users, workers=2))
    summary = result.summary
    console.print(
        f"[bold]online A/B[/] ({summary['setup']['requests']:,} ad requests, {summary['setup']['users']:,} "
        f"users, {summary['setup']['days']} simulated days; 95% intervals over users, (n.s.) crosses 0):"
    )
    for line in lifts_table(summary["arms"]):
        console.print(line, markup=False)
    paper = ", ".join(f"{LABELS[k]} {v:+.2f}%" for k, v in PAPER_ONLINE.items())
    console.print(f"paper (Etsy, online A/B vs its production ranker): {paper}")
    return summary


def _shown(models: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The console table's columns, headers in full, lifts in percent (their intervals are printed below)."""

    def lift(rec: dict[str, Any], key: str) -> str:
        return "—" if rec["model"] == "baseline" else f"{rec[key]:+.2f}%"

    return [
        {
            "task": r["task"].upper(),
            "model": r["model"],
            "test rows": r["n_test"],
            "test positives": r["test_positives"],
            "ROC-AUC": r["roc_auc"],
            "PR-AUC": r["pr_auc"],
            "ECE": r["ece"],
            "ECE before Platt": r["ece_before_platt"],
            "ROC-AUC lift": lift(r, "roc_auc_lift_pct"),
            "PR-AUC lift": lift(r, "pr_auc_lift_pct"),
        }
        for r in models
    ]


def _write_report(directory: Path, fs: FeatureSet, summary: dict[str, Any]) -> None:
    (directory / "summary.json").write_text(json.dumps(summary, indent=2, default=_np_default) + "\n")
    _plot_sequence_lengths(fs, directory / "sequence_lengths.png")
    _plot_ctr_by_position(fs, directory / "ctr_by_position.png")
    ds = summary["dataset"]
    lines = [
        "# adsformer demo report",
        "",
        f"Simulated marketplace: {ds['users']:,} users, {ds['listings']:,} listings, {ds['events']:,} events, "
        f"{ds['impressions']:,} impressions, {ds['clicks']:,} clicks (CTR {ds['ctr']:.4f}).",
        "",
        "## Offline lifts (test split, paired 95% bootstrap over test requests)",
        "",
        *[f"- {line}" for line in lift_lines(summary["models"])],
        "",
        "## Online A/B (closed loop through the ranking service, simulated users)",
        "",
        *lifts_table(summary["abtest"]["arms"]),
        "",
        "Paper (Etsy, online A/B vs its production ranker): "
        + ", ".join(f"{LABELS[k]} {v:+.2f}%" for k, v in PAPER_ONLINE.items())
        + ". The full table: `../abtest/abtest.md`.",
        "",
        "![cumulative lifts](../abtest/abtest_lifts.png)",
        "",
        "## Splits",
        "",
        _md_table(summary["splits"]),
        "",
        f"## Sequences (window {fs.info.window_s} s, newest first, M = {fs.info.max_len})",
        "",
        _md_table(summary["sequences"]),
        "",
        "![sequence lengths](sequence_lengths.png)",
        "",
        "## Clicks by position",
        "",
        "![CTR by position](ctr_by_position.png)",
        "",
        "## Vocabularies (fit on the training split; 0 = padding, 1 = OOV)",
        "",
        _md_table([{"vocabulary": k, "size": v} for k, v in summary["vocab_sizes"].items()]),
        "",
        "## Timings",
        "",
        _md_table([{"stage": k, "value": v} for k, v in summary["timings"].items()]),
        "",
    ]
    (directory / "report.md").write_text("\n".join(lines))


def _md_table(records: list[dict[str, Any]]) -> str:
    if not records:
        return "(none)"
    keys = list(records[0])
    out = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for rec in records:
        out.append("| " + " | ".join(_cell(rec[k]) for k in keys) + " |")
    return "\n".join(out)


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _np_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(type(obj).__name__)


def _plot_sequence_lengths(fs: FeatureSet, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    longest = max((int(c.length.max()) for c in fs.sequences.values() if c.length.size), default=1)
    bins = [i - 0.5 for i in range(longest + 2)]
    by_action: dict[str, str] = {}  # every entity of one action has the same lengths: one line per action
    for name in fs.sequences:
        by_action.setdefault(name.split(":", 1)[1], name)
    for action, name in by_action.items():
        ax.hist(fs.sequences[name].length, bins=bins, histtype="step", label=action, linewidth=1.5)
    ax.set_yscale("log")
    ax.set_xlabel("sequence length (events in the window before the request)")
    ax.set_ylabel("impressions")
    ax.set_title("Sequence lengths per action (window before each request)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_ctr_by_position(fs: FeatureSet, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    pos = fs.position
    positions = np.unique(pos[pos > 0])
    if positions.size:
        ctr = [fs.clicked[pos == p].mean() for p in positions]
        ax.bar(positions, ctr, color="#4C72B0")
    ax.set_xlabel("position (1 = top)")
    ax.set_ylabel("CTR")
    ax.set_title("Natural click-through rate by ad position")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
