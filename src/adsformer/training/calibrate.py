"""Which calibrator a trained model serves: Platt scaling only where it makes the validation ECE lower.

Platt scaling maximizes the validation likelihood, not calibration: on a model already well calibrated
after the down-sampling correction it can make ECE worse (e.g. 0.0036 -> 0.0182). So the fit is kept only
when it lowers the ECE of the validation rows it was fit on; otherwise the correction alone serves. Either
way the calibrator records the decision and both validation ECEs (``calibration.json``, ``metrics.json``).
Both calibrators are monotone: ROC-AUC and PR-AUC are the same whichever serves.

Letters: N validation rows.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from adsformer.run.calibration import Calibrator, fit_platt
from adsformer.training.metrics import expected_calibration_error


def choose_calibrator(z: np.ndarray, y: np.ndarray, keep_rate: float = 1.0, *, bins: int = 15) -> Calibrator:
    """The calibrator for validation logits ``z`` (N,) and labels ``y`` (N,): Platt scaling when it lowers
    their ECE (``bins`` equal-width bins) below the down-sampling correction's, else the correction alone."""
    platt = fit_platt(z, y, keep_rate)
    if platt.method != "platt":
        return dataclasses.replace(platt, decision="not_fit")
    before = expected_calibration_error(y, platt.uncalibrated(z), bins)
    after = expected_calibration_error(y, platt(z), bins)
    if after < before:
        return dataclasses.replace(platt, decision="applied", val_ece_before=before, val_ece_platt=after)
    return Calibrator(
        keep_rate, fit_rows=platt.fit_rows, decision="skipped", val_ece_before=before, val_ece_platt=after
    )
