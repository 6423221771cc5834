"""Offline "static" pCTR and pCCVR per listing, the lexical score's query-independent factor (paper A.1).

Two sources, recorded in the index manifest:

* ``run`` — a trained run (``adsformer train``; a non-personalized ``baseline`` run is the paper's
  "static" model) scores every listing with no user history and no query at the build's reference time,
  through its :class:`~adsformer.run.predictor.Predictor` (calibrated probabilities). A CTR run gives pCTR, a
  PCCVR run gives pCCVR.
* ``historical`` — for a factor no run gives: the impressions before the test period, smoothed toward the
  global rate, ``pCTR = (clicks + m * ctr) / (impressions + m)`` and ``pCCVR = (purchases + m' * cvr) /
  (clicks + m')`` (``m``, ``m'`` from :class:`~adsformer.retrieval.config.StaticConfig`); a dataset without
  conversions gets pCCVR = 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from adsformer.retrieval.config import RetrievalError, StaticConfig


@dataclass(frozen=True)
class StaticScores:
    ctr: np.ndarray  # (N,) float64
    pccvr: np.ndarray  # (N,) float64
    info: dict[str, Any]

    @property
    def value(self) -> np.ndarray:
        return self.ctr * self.pccvr

    def percentile(self) -> np.ndarray:
        """(N,) rank of pCTR x pCCVR in [0, 1] (ties share their average rank)."""
        n = self.ctr.size
        if n < 2:
            return np.ones(n)
        ranks = pl.Series(self.value).rank("average").to_numpy()
        return (ranks - 1.0) / (n - 1.0)


def historical(
    listing_ids: Sequence[str], impressions: pl.DataFrame, cutoff_ts: int | None, cfg: StaticConfig
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Smoothed historical pCTR and pCCVR of each listing from impressions with ``ts < cutoff_ts``."""
    imps = impressions if cutoff_ts is None else impressions.filter(pl.col("ts") < cutoff_ts)
    has_cvr = "purchased" in imps.columns
    agg = imps.group_by("listing_id").agg(
        pl.len().alias("n"),
        pl.col("clicked").cast(pl.Float64).sum().alias("clicks"),
        (pl.col("purchased").fill_null(0).cast(pl.Float64).sum() if has_cvr else pl.lit(0.0)).alias("buys"),
    )
    frame = (
        pl.DataFrame({"listing_id": list(listing_ids)}).join(agg, on="listing_id", how="left").fill_null(0)
    )
    n, clicks, buys = (frame[c].to_numpy().astype(np.float64) for c in ("n", "clicks", "buys"))
    ctr0 = clicks.sum() / max(n.sum(), 1.0)
    cvr0 = buys.sum() / max(clicks.sum(), 1.0)
    m, m2 = cfg.ctr_prior_impressions, cfg.pccvr_prior_clicks
    ctr = (clicks + m * ctr0) / np.maximum(n + m, 1e-12)
    pccvr = (buys + m2 * cvr0) / np.maximum(clicks + m2, 1e-12) if has_cvr else np.ones_like(ctr)
    info = {"impressions": int(n.sum()), "global_ctr": ctr0, "global_pccvr": cvr0 if has_cvr else None}
    return ctr, pccvr, info


def from_run(
    run_dir: Path, listings: pl.DataFrame, listing_ids: Sequence[str], ts: int
) -> tuple[str, np.ndarray]:
    """``(task, probabilities (N,))`` of a trained run for each listing, no user history, no query."""
    from adsformer.run.predictor import Predictor

    predictor = Predictor.load(run_dir)
    frame = pl.DataFrame(
        {
            "request_id": ["static"] * len(listing_ids),
            "user_id": ["<static>"] * len(listing_ids),
            "ts": pl.Series([ts] * len(listing_ids), dtype=pl.Int64),
            "listing_id": list(listing_ids),
            # labels are no model input, but a PCCVR run's features expect the columns
            "clicked": pl.Series([0] * len(listing_ids), dtype=pl.Int8),
            "purchased": pl.Series([0] * len(listing_ids), dtype=pl.Int8),
        }
    )
    return predictor.task, predictor.predict_frame(frame, None, listings)


def static_scores(
    listings: pl.DataFrame,
    listing_ids: Sequence[str],
    impressions: pl.DataFrame,
    cutoff_ts: int | None,
    runs: Sequence[Path],
    cfg: StaticConfig,
) -> StaticScores:
    """pCTR and pCCVR of each listing: from the given runs where they cover a task, else historical."""
    ctr, pccvr, hist = historical(listing_ids, impressions, cutoff_ts, cfg)
    sources = {
        "ctr": "historical",
        "pccvr": "historical" if "purchased" in impressions.columns else "none (1.0)",
    }
    if hist["impressions"] == 0:  # a catalog without impressions: every listing alike
        ctr, pccvr = np.ones_like(ctr), np.ones_like(pccvr)
        sources = {"ctr": "none (1.0; no impressions)", "pccvr": "none (1.0)"}
    last = int(impressions["ts"].to_numpy().max()) if impressions.height else 0
    ts = cutoff_ts if cutoff_ts is not None else last
    for run in runs:
        task, p = from_run(Path(run), listings, listing_ids, ts)
        if task not in sources:
            raise RetrievalError(f"run {run}: task {task!r} is neither ctr nor pccvr")
        if sources[task].startswith("run"):
            raise RetrievalError(f"two runs give the {task} score; pass one run per task")
        sources[task] = f"run {Path(run).name}"
        if task == "ctr":
            ctr = p
        else:
            pccvr = p
    info = {
        "sources": sources,
        "reference_ts": ts,
        "cutoff_ts": cutoff_ts,
        "historical": hist,
        **{"mean_ctr": float(ctr.mean()), "mean_pccvr": float(pccvr.mean())},
    }
    return StaticScores(np.asarray(ctr, np.float64), np.asarray(pccvr, np.float64), info)
