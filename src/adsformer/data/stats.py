"""Descriptive statistics of a feature set: split sizes and rates, vocabularies, sequence lengths."""

from __future__ import annotations

from typing import Any

import numpy as np

from adsformer.data.features import FeatureSet
from adsformer.data.splits import SPLIT_NAMES


def split_stats(fs: FeatureSet) -> list[dict[str, Any]]:
    """One record per split: impressions, clicks, natural CTR, training rows after down-sampling."""
    out = []
    for i, name in enumerate(SPLIT_NAMES):
        mask = fs.split.split == i
        n = int(mask.sum())
        clicks = int(fs.clicked[mask].sum())
        rec: dict[str, Any] = {
            "split": name,
            "impressions": n,
            "clicks": clicks,
            "ctr": clicks / n if n else 0.0,
            "ctr_rows": int(fs.rows(name, "ctr").size),
        }
        if fs.purchased is not None:
            rec["purchases"] = int(fs.purchased[mask].sum())
        out.append(rec)
    return out


def sequence_stats(fs: FeatureSet) -> list[dict[str, Any]]:
    """One record per (entity, action) pair: how often it is empty, and its length distribution."""
    out = []
    for name, col in fs.sequences.items():
        length = col.length
        nonempty = length[length > 0]
        out.append(
            {
                "pair": name,
                "events": int(col.values.shape[0]),
                "empty_pct": 100.0 * float((length == 0).mean()) if length.size else 0.0,
                "mean_len": float(length.mean()) if length.size else 0.0,
                "p50_nonempty": float(np.percentile(nonempty, 50)) if nonempty.size else 0.0,
                "p90_nonempty": float(np.percentile(nonempty, 90)) if nonempty.size else 0.0,
                "at_cap_pct": 100.0 * float((length == col.max_len).mean()) if length.size else 0.0,
            }
        )
    return out


def ctr_by_sequence_presence(fs: FeatureSet, pair: str) -> dict[str, float]:
    """Natural CTR of impressions with an empty vs non-empty sequence of ``pair`` (all splits)."""
    length = fs.sequences[pair].length
    empty = length == 0
    return {
        "ctr_empty": float(fs.clicked[empty].mean()) if empty.any() else float("nan"),
        "ctr_nonempty": float(fs.clicked[~empty].mean()) if (~empty).any() else float("nan"),
    }
