"""Figures of a report that cannot be trusted as they stand, each said in one sentence.

A run is flagged when its test split holds too few positives for its AUCs and lifts to be compared
(:data:`MIN_TEST_POSITIVES`), when Platt scaling hurt calibration (on the validation split, where the
calibrator is chosen, or on the test split for runs whose calibrator kept no validation figures), and when
its normalized cross-entropy is at least 1 (its probabilities predict worse than the base rate alone).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Below this many positives in the test split, a run's ROC-AUC, PR-AUC and lifts are too noisy to compare
MIN_TEST_POSITIVES = 200


def few_positives(name: str, positives: int) -> str | None:
    """A warning when the test split of run ``name`` holds fewer than :data:`MIN_TEST_POSITIVES` positives."""
    if positives >= MIN_TEST_POSITIVES:
        return None
    return (
        f"{name}: only {positives:,} positives in the test split (< {MIN_TEST_POSITIVES}): its ROC-AUC, "
        f"PR-AUC and lifts are too noisy to compare; use more data (a larger simulator scale, a longer "
        f"test period)"
    )


def calibration_hurt(name: str, metrics: Mapping[str, Any]) -> str | None:
    """A warning when Platt scaling made ECE worse: on validation (recorded by the calibrator, which then
    serves the down-sampling-corrected probabilities instead), else -- for calibrators that recorded no
    validation ECE -- on the test split of a run that applied it."""
    cal = metrics.get("calibration") or {}
    before, after = cal.get("val_ece_before"), cal.get("val_ece_platt")
    if before is not None and after is not None:
        if after <= before:
            return None
        if cal.get("method") == "platt":
            return f"{name}: Platt scaling made validation ECE worse ({before:.4f} -> {after:.4f})"
        return (
            f"{name}: Platt scaling would have made validation ECE worse ({before:.4f} -> {after:.4f}), "
            f"so it was not applied: the served probabilities are only corrected for down-sampling"
        )
    test_before = (metrics.get("before_calibration") or {}).get("ece")
    test_after = metrics.get("ece")
    if cal.get("method") != "platt" or test_before is None or test_after is None or test_after <= test_before:
        return None
    return (
        f"{name}: Platt scaling made test ECE worse ({test_before:.4f} -> {test_after:.4f}); retrain "
        f"so calibration is applied only when it improves validation ECE"
    )


def nce_at_least_one(name: str, metrics: Mapping[str, Any]) -> str | None:
    """A warning when the normalized cross-entropy is >= 1: worse than predicting the base rate."""
    nce = metrics.get("nce")
    if nce is None or nce < 1:
        return None
    return (
        f"{name}: NCE {nce:.4f} >= 1: its probabilities predict the test labels no better than the base "
        f"rate alone; its log loss and ECE say little about ranking quality"
    )


def run_warnings(name: str, metrics: Mapping[str, Any], positives: int) -> list[str]:
    """Every warning of one evaluated run (``metrics``: its metrics.json; ``positives`` in its test split)."""
    found = [
        few_positives(name, positives),
        calibration_hurt(name, metrics),
        nce_at_least_one(name, metrics),
    ]
    return [w for w in found if w]
