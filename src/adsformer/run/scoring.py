"""Scoring a model on a feature set: the logits of rows in order, batch by batch.

Training uses :func:`forward` for its steps (with the position tower), evaluation and serving use
:func:`predict_logits` (without it), so every path scores the same way.

Letters: B batch rows, N scored rows.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from adsformer.config import Task
from adsformer.data.batching import Batch, iterate_batches
from adsformer.data.features import FeatureSet
from adsformer.models.ranker import Ranker
from adsformer.run.calibration import sigmoid


def forward(model: nn.Module, batch: Batch, *, with_position: bool = False) -> torch.Tensor:
    """The model's logits (B,) for a batch (its :class:`~adsformer.data.inputs.ModelInputs`); the position
    tower only ``with_position`` (training)."""
    return model(batch if with_position else batch.without_position())


@torch.no_grad()
def predict_logits(
    model: nn.Module, fs: FeatureSet, rows: np.ndarray, *, task: Task = "ctr", batch_size: int = 32768
) -> np.ndarray:
    """The model's logits (N,) float32 for ``rows`` (in order), without the position tower."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    pairs = model.pairs if isinstance(model, Ranker) else None  # gather only the sequences it reads
    out = [
        forward(model, b if device.type == "cpu" else b.to(device)).cpu().numpy()
        for b in iterate_batches(fs, rows, batch_size, task=task, pairs=pairs)
    ]
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def predict(
    model: nn.Module, fs: FeatureSet, rows: np.ndarray, *, task: Task = "ctr", batch_size: int = 32768
) -> np.ndarray:
    """The model's probabilities (N,) for ``rows`` (in order): before down-sampling correction."""
    return sigmoid(predict_logits(model, fs, rows, task=task, batch_size=batch_size)).astype(np.float32)
