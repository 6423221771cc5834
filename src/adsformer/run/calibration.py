"""Probability corrections applied after the model: down-sampling correction, then Platt scaling.

Negative down-sampling of the training split multiplies the odds of a click by ``1 / keep_rate``; the
correction maps a prediction back to the natural rate: ``p' = w p / (w p + 1 - p)`` with ``w = keep_rate``,
i.e. ``logit(p') = logit(p) + log w``.

Platt scaling (paper section 5.3) then fits one scale and one bias on the validation split (natural rate):
``p = sigmoid(a * (z + log w) + b)`` where ``z`` is the model's logit. With ``a > 0`` both steps are
monotone, so ROC-AUC and PR-AUC never change; the fit keeps ``a > 0`` (it falls back to a bias-only fit).
Training applies the fit only when it lowers the validation ECE (:mod:`adsformer.training.calibrate`); the
calibrator records that choice (``decision``) and both validation ECEs.

Letters: N rows.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

import numpy as np

#: Whether Platt scaling is applied: ``applied`` (it lowered the validation ECE), ``skipped`` (it did not:
#: the correction alone serves), ``not_fit`` (one class or no validation rows), ``unknown`` (a calibrator
#: saved before the choice was made, e.g. an older run)
Decision = Literal["applied", "skipped", "not_fit", "unknown"]


def correct_downsampling(p: np.ndarray, keep_rate: float) -> np.ndarray:
    """Map probabilities learned on down-sampled negatives back to the natural rate."""
    if not 0 < keep_rate <= 1:
        raise ValueError(f"keep_rate must be in (0, 1], got {keep_rate}")
    p = np.asarray(p, dtype=np.float64)
    return keep_rate * p / (keep_rate * p + 1 - p)


def sigmoid(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -z))


@dataclass(frozen=True)
class Calibrator:
    """``p = sigmoid(scale * (logit + log keep_rate) + bias)``; saved with the run as ``calibration.json``."""

    keep_rate: float = 1.0  # the training split's negative keep rate (1 = not down-sampled)
    scale: float = 1.0
    bias: float = 0.0
    method: str = "downsampling"  # "downsampling" (correction only) or "platt"
    fit_rows: int = 0  # validation rows the Platt fit used
    decision: Decision = "unknown"  # why Platt scaling is or is not applied (see Decision)
    val_ece_before: float | None = None  # validation ECE with the correction alone
    val_ece_platt: float | None = None  # validation ECE with the Platt fit (applied or not)

    def __post_init__(self) -> None:
        if not 0 < self.keep_rate <= 1:
            raise ValueError(f"keep_rate must be in (0, 1], got {self.keep_rate}")
        if not self.scale > 0:
            raise ValueError(f"the Platt scale must be > 0 (monotone), got {self.scale}")

    @property
    def shift(self) -> float:
        return math.log(self.keep_rate)

    def logits(self, z: np.ndarray) -> np.ndarray:
        """Model logits (N,) -> calibrated logits (N,)."""
        return self.scale * (np.asarray(z, dtype=np.float64) + self.shift) + self.bias

    def __call__(self, z: np.ndarray) -> np.ndarray:
        """Model logits (N,) -> calibrated probabilities (N,) float64."""
        return sigmoid(self.logits(z))

    def uncalibrated(self, z: np.ndarray) -> np.ndarray:
        """Only the down-sampling correction: probabilities at the natural rate before Platt scaling."""
        return sigmoid(np.asarray(z, dtype=np.float64) + self.shift)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibrator:
        """The calibrator of ``calibration.json``; ValueError names a field of the wrong type or range."""
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        for key in ("keep_rate", "scale", "bias"):
            value = fields.get(key, 0.5)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"calibration {key} must be a finite number, got {value!r}")
        if fields.get("method", "platt") not in ("downsampling", "platt"):
            raise ValueError(f"calibration method must be downsampling or platt, got {fields['method']!r}")
        if not isinstance(fields.get("fit_rows", 0), int):
            raise ValueError(f"calibration fit_rows must be an integer, got {fields['fit_rows']!r}")
        if fields.get("decision", "unknown") not in get_args(Decision):
            raise ValueError(
                f"calibration decision must be one of {', '.join(get_args(Decision))}, got {fields['decision']!r}"
            )
        for key in ("val_ece_before", "val_ece_platt"):
            value = fields.get(key)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
            ):
                raise ValueError(f"calibration {key} must be a finite number or null, got {value!r}")
        return cls(**fields)


def fit_platt(z: np.ndarray, y: np.ndarray, keep_rate: float = 1.0, *, iters: int = 50) -> Calibrator:
    """Fit ``a, b`` of ``sigmoid(a (z + log w) + b)`` to labels ``y`` by Newton's method on the log loss.

    The targets are Platt's (1999) smoothed labels, ``(n+ + 1) / (n+ + 2)`` for positives and
    ``1 / (n- + 2)`` for negatives: on a few separable rows the plain fit's scale runs off to infinity
    (probabilities of exactly 0 and 1); with many rows the targets are the labels. Falls back to the
    correction alone when ``y`` has one class, and to a bias-only fit when the best scale is not positive (a
    calibrator must never reverse the ranking).
    """
    z = np.asarray(z, dtype=np.float64) + math.log(keep_rate)
    y = np.asarray(y, dtype=np.float64)
    if z.shape != y.shape:
        raise ValueError(f"{z.shape[0]} logits but {y.shape[0]} labels")
    if y.size == 0 or y.min() == y.max():
        return Calibrator(keep_rate)
    n_pos = float(y.sum())
    n_neg = y.size - n_pos
    y = np.where(y > 0.5, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))  # Platt's smoothed targets
    a, b = _newton(z, y, iters, fit_scale=True)
    if not a > 0:
        a, b = _newton(z, y, iters, fit_scale=False)
    return Calibrator(keep_rate, float(a), float(b), "platt", int(y.size))


def _mean_log_loss(z: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.logaddexp(0.0, z) - y * z))  # -[y log s(z) + (1 - y) log(1 - s(z))]


def _newton(z: np.ndarray, y: np.ndarray, iters: int, *, fit_scale: bool) -> tuple[float, float]:
    """Damped Newton (step halving until the loss drops) from ``a = 1, b = 0``; the loss is convex."""
    theta = np.array([1.0, 0.0]) if fit_scale else np.array([0.0])
    X = np.stack([z, np.ones_like(z)], axis=1) if fit_scale else np.ones((z.size, 1))  # (N, 2 | 1)
    offset = np.zeros_like(z) if fit_scale else z  # bias-only: the scale stays 1

    def loss(t: np.ndarray) -> float:
        return _mean_log_loss(X @ t + offset, y)

    current = loss(theta)
    for _ in range(iters):
        p = sigmoid(X @ theta + offset)
        g = X.T @ (p - y) / z.size  # gradient of the mean log loss
        H = (X * (p * (1 - p))[:, None]).T @ X / z.size + 1e-9 * np.eye(X.shape[1])
        step = np.linalg.solve(H, g)
        t = 1.0
        while t > 1e-6 and loss(theta - t * step) > current:
            t /= 2
        theta, previous = theta - t * step, current
        current = loss(theta)
        if previous - current < 1e-12:
            break
    return (float(theta[0]), float(theta[1])) if fit_scale else (1.0, float(theta[0]))
