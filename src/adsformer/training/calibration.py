"""Probability corrections applied after the model.

Negative down-sampling of the training split multiplies the odds of a click by ``1 / keep_rate``; the
correction maps a prediction back to the natural rate: ``p' = w p / (w p + 1 - p)`` with ``w = keep_rate``.
It is monotone, so ranking metrics are unchanged.
"""

from __future__ import annotations

import numpy as np


def correct_downsampling(p: np.ndarray, keep_rate: float) -> np.ndarray:
    """Map probabilities learned on down-sampled negatives back to the natural rate."""
    if not 0 < keep_rate <= 1:
        raise ValueError(f"keep_rate must be in (0, 1], got {keep_rate}")
    p = np.asarray(p, dtype=np.float64)
    return keep_rate * p / (keep_rate * p + 1 - p)
