"""The position study: train the same model with and without the shallow position tower on the same split.

Clicks in logged data mix two things: whether an ad was looked at (its position) and whether it was wanted
(its relevance). The study reports, for each arm, the usual test metrics on the logged clicks and:

- **the learned position curve**: the tower's logit at each position relative to position 1, averaged over
  the test rows' context (a partial-dependence curve). A logit is close to a log probability at click rates
  of a few percent, so the curve estimates log P(examine | position) - log P(examine | 1);
- **the naive curve**: log CTR by position relative to position 1, what one reads off the logs without a
  model (it confounds position with the relevance of what the ranker put there);
- where the dataset is a simulator run (``truth/impressions.parquet``: ``p_examine``, ``p_relevant``):
  the true curve, each curve's error against it, and how well each arm's served scores rank the true
  relevance -- :func:`relevance_auc` over the test split and the mean NDCG within each request (gain
  ``p_relevant``), the order an ad server would show.

Writes ``position.json``, ``position.md`` and ``position_curve.png`` atomically.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from adsformer.config import ConfigError
from adsformer.console import log as progress_line
from adsformer.console import stage
from adsformer.data.batching import make_batch
from adsformer.data.features import FeatureSet, build_features
from adsformer.data.validate import read_dataset
from adsformer.experiments.runs import check_task, fit, test_metrics
from adsformer.io import atomic_dir
from adsformer.layers.position import PositionTower
from adsformer.run.config import ExperimentConfig
from adsformer.run.scoring import predict_logits
from adsformer.training.metrics import relevance_auc

ARMS = (("without tower", False), ("with tower", True))
CURVE_ROWS = 4096  #: test rows whose context the partial-dependence curve averages over
MIN_SHOWN = (
    200  #: default: positions shown fewer times than this in the test split are left out of the curves
)


def run_position_study(
    data_dir: Path,
    cfg: ExperimentConfig,
    out: Path,
    *,
    seeds: int = 1,
    min_shown: int = MIN_SHOWN,
    log: Callable[[str], None] = progress_line,
) -> dict[str, Any]:
    """Train ``cfg`` with and without the position tower (seeds ``train.seed`` ...
    ``train.seed + seeds - 1``); compare curves and rankings. Returns the summary (means, ``*_std``)."""
    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {seeds}")
    if cfg.task != "ctr":
        raise ConfigError(f"the position study is about clicks: use --task ctr (got {cfg.task!r})")
    ds = read_dataset(data_dir)
    check_task(ds, cfg.task)
    fs = build_features(ds, cfg.data)
    test = fs.rows("test", "ctr")
    positions = _positions(fs, test, cfg.model.ranker.max_position, min_shown)
    if positions.size < 2:
        raise ConfigError(
            f"dataset {ds.meta.name!r} has fewer than 2 positions shown >= {min_shown} times in its test "
            f"split: nothing to de-bias (lower --min-shown?)"
        )
    truth = _truth(Path(data_dir), ds.impressions)
    summary: dict[str, Any] = {
        "dataset": ds.meta.name,
        "model": cfg.model.user,
        "n_test": int(test.size),
        "seeds": seeds,
        "positions": positions.tolist(),
        "naive_curve": _naive_curve(fs, test, positions).tolist(),
        "arms": {},
    }
    if truth is not None:
        true = np.log(_mean_by_position(truth["p_examine"], fs.position, test, positions))
        summary["true_curve"] = (true - true[0]).tolist()
        summary["naive_curve_rmse"] = _rmse(summary["naive_curve"], summary["true_curve"])
    request = ds.impressions["request_id"].to_numpy()
    for name, enabled in ARMS:
        per_seed = []
        for seed in range(cfg.train.seed, cfg.train.seed + seeds):
            ranker = dataclasses.replace(cfg.model.ranker, position_bias=enabled)
            arm_cfg = dataclasses.replace(
                cfg,
                model=dataclasses.replace(cfg.model, ranker=ranker),
                train=dataclasses.replace(cfg.train, seed=seed),
            )
            with stage(f"{name} seed {seed}: train and test"):
                model, result = fit(arm_cfg, fs, show_progress=False)
                m = test_metrics(model, fs, arm_cfg, result.calibrator)
            rec: dict[str, Any] = {k: m[k] for k in ("roc_auc", "pr_auc", "log_loss", "ece")}
            if enabled:
                rec["curve"] = tower_curve(model.position_tower, fs, test, positions)
                if truth is not None:
                    rec["curve_rmse"] = _rmse(rec["curve"], summary["true_curve"])
            if truth is not None:
                z = predict_logits(model, fs, test, batch_size=cfg.train.eval_batch_size)
                rec["relevance_auc"] = relevance_auc(truth["p_relevant"][test], z)
                rec["relevance_ndcg"] = request_ndcg(request[test], z, truth["p_relevant"][test])
            log(
                f"{name:14s} seed {seed}  ROC-AUC {rec['roc_auc']:.4f}"
                + (f"  relevance AUC {rec['relevance_auc']:.4f}" if "relevance_auc" in rec else "")
            )
            per_seed.append(rec)
        summary["arms"][name] = _aggregate(per_seed)
    with atomic_dir(out) as tmp:
        (tmp / "position.json").write_text(json.dumps(summary, indent=2) + "\n")
        (tmp / "position.md").write_text(position_markdown(summary))
        _plot(summary, tmp / "position_curve.png")
    return summary


@torch.no_grad()
def tower_curve(
    tower: PositionTower, fs: FeatureSet, rows: np.ndarray, positions: np.ndarray, seed: int = 0
) -> np.ndarray:
    """The tower's mean logit at each of ``positions`` over (a sample of) ``rows``' context, minus that at the
    first position: (P,)."""
    if rows.size > CURVE_ROWS:
        rows = np.sort(np.random.default_rng(seed).choice(rows, CURVE_ROWS, replace=False))
    categorical = make_batch(fs, rows).categorical
    tower.eval()
    means = np.array(
        [
            tower(torch.full((rows.size,), int(p), dtype=torch.long), categorical).mean().item()
            for p in positions
        ]
    )
    return means - means[0]


def request_ndcg(request: np.ndarray, scores: np.ndarray, gain: np.ndarray) -> float:
    """Mean over requests with >= 2 ads of NDCG (gain ``gain``, log2 discount) of the order by ``scores``."""
    frame = pl.DataFrame({"request": request, "score": scores, "gain": gain}).with_columns(
        pl.len().over("request").alias("n"),
        pl.col("score").rank("ordinal", descending=True).over("request").alias("rank"),
        pl.col("gain").rank("ordinal", descending=True).over("request").alias("ideal"),
    )
    per_request = (
        frame.filter(pl.col("n") >= 2)
        .group_by("request")
        .agg(
            (pl.col("gain") / (pl.col("rank") + 1).log(2)).sum().alias("dcg"),
            (pl.col("gain") / (pl.col("ideal") + 1).log(2)).sum().alias("idcg"),
        )
        .filter(pl.col("idcg") > 0)
    )
    ratio = (per_request["dcg"] / per_request["idcg"]).to_numpy()
    return float(ratio.mean()) if ratio.size else float("nan")


def _positions(fs: FeatureSet, rows: np.ndarray, max_position: int, min_shown: int) -> np.ndarray:
    """Positions 1.. shown at least ``min_shown`` times in ``rows``, up to the first that is not."""
    shown = np.bincount(fs.position[rows], minlength=max_position + 1)[1 : max_position + 1]
    enough = shown >= min_shown
    return np.arange(1, (np.argmin(enough) if not enough.all() else enough.size) + 1)


def _mean_by_position(
    values: np.ndarray, position: np.ndarray, rows: np.ndarray, positions: np.ndarray
) -> np.ndarray:
    pos, v = position[rows], values[rows].astype(np.float64)
    return np.array([v[pos == p].mean() for p in positions])


def _naive_curve(fs: FeatureSet, rows: np.ndarray, positions: np.ndarray) -> np.ndarray:
    ctr = _mean_by_position(fs.clicked, fs.position, rows, positions)
    log_ctr = np.log(np.maximum(ctr, 1e-6))
    return log_ctr - log_ctr[0]


def _truth(data_dir: Path, impressions: pl.DataFrame) -> dict[str, np.ndarray] | None:
    """The simulator's per-impression click model, row-aligned with ``impressions``; None for real data."""
    path = data_dir / "truth" / "impressions.parquet"
    if not path.exists():
        return None
    truth = pl.read_parquet(path, columns=["request_id", "position", "p_examine", "p_relevant"])
    keys = impressions.select("request_id", "position")
    if truth.height != keys.height or not truth.select("request_id", "position").equals(keys):
        raise ConfigError(f"{path} is not row-aligned with impressions.parquet (request_id, position)")
    return {c: truth[c].to_numpy() for c in ("p_examine", "p_relevant")}


def _aggregate(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean of every metric over seeds, its sample std as ``<metric>_std``, the mean curve."""
    out: dict[str, Any] = {}
    for key in per_seed[0]:
        values = np.array([r[key] for r in per_seed], dtype=np.float64)
        if key == "curve":
            out[key] = values.mean(axis=0).tolist()
            continue
        out[key] = float(values.mean())
        out[f"{key}_std"] = float(values.std(ddof=1)) if len(per_seed) > 1 else 0.0
    return out


def _rmse(a: list[float], b: list[float]) -> float:
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


def position_markdown(summary: dict[str, Any]) -> str:
    truth = "true_curve" in summary
    seeds = f", mean ± std over {summary['seeds']} seeds" if summary["seeds"] > 1 else ""
    lines = [f"# Position study: {summary['model']} CTR on {summary['dataset']}{seeds}", ""]
    head = "| arm | ROC-AUC (logged clicks) | PR-AUC | log loss | ECE |"
    sep = "|---|---|---|---|---|"
    if truth:
        head += " relevance AUC | relevance NDCG | curve RMSE |"
        sep += "---|---|---|"
    lines += [head, sep]
    for name, r in summary["arms"].items():

        def cell(key: str, digits: int = 4, r: dict[str, Any] = r) -> str:
            if key not in r:
                return "—"
            std = f" ± {r[key + '_std']:.{digits}f}" if summary["seeds"] > 1 else ""
            return f"{r[key]:.{digits}f}{std}"

        keys = ["roc_auc", "pr_auc", "log_loss", "ece"]
        cells = [cell(k) for k in keys]
        if truth:
            cells += [cell("relevance_auc"), cell("relevance_ndcg"), cell("curve_rmse", 3)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Position curves, log P(click | position) - log P(click | 1):", ""]
    cols = ["naive (log CTR)", "learned (tower)"] + (["true (log P(examine))"] if truth else [])
    lines += ["| position | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    learned = summary["arms"]["with tower"]["curve"]
    for i, p in enumerate(summary["positions"]):
        vals = [summary["naive_curve"][i], learned[i]] + ([summary["true_curve"][i]] if truth else [])
        lines.append(f"| {p} | " + " | ".join(f"{v:+.3f}" for v in vals) + " |")
    if truth:
        lines += ["", f"Naive curve RMSE against the truth: {summary['naive_curve_rmse']:.3f}."]
    return "\n".join(lines) + "\n"


def _plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = summary["positions"]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot(x, summary["naive_curve"], "s--", color="#7f7f7f", label="naive: log CTR by position")
    ax.plot(x, summary["arms"]["with tower"]["curve"], "o-", color="#1f77b4", label="learned: position tower")
    if "true_curve" in summary:
        ax.plot(x, summary["true_curve"], "k-", lw=2, alpha=0.6, label="true: log P(examine)")
    ax.axhline(0, color="black", lw=0.6)
    ax.set(xlabel="position (1 = top)", ylabel="log effect relative to position 1")
    ax.set_title(f"Position effect, {summary['dataset']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
