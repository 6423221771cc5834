"""The two training phases on cached backbone features: heads first (:func:`train_heads`), then the last
blocks unfrozen (:func:`finetune`); held-out accuracy per head.

Letters: N images, B batch, V cached views per image, C x h x w cached activations, F = 1280, D = ``dim``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from adsformer.representations.visual.config import FEATURES, Augmentation, VisualConfig
from adsformer.representations.visual.images import ImageLoader, augment, normalise, to_unit
from adsformer.representations.visual.model import Backbone, VisualModel
from adsformer.representations.visual.multitask import BalancedTaskSampler, masked_multitask_loss

# --- training --------------------------------------------------------------------------------------------


def _progress(enabled: bool) -> Any:
    """A progress bar on stderr (plain timestamped lines away from a terminal)."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    from adsformer.console import ProgressBar

    return ProgressBar(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[note]}"),
        disable=not enabled,
    )


def extract_features(
    backbone: Backbone,
    loader: ImageLoader,
    rows: np.ndarray,
    cfg: VisualConfig,
    *,
    augmented: bool,
    keep_trunk: bool,
    generator: torch.Generator,
    describe: str,
    progress: bool,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """One backbone pass over ``rows``: pooled features ``(N, F)`` float32, the trunk activations
    ``(N, C, h, w)`` float16 when ``keep_trunk``, and ``ok`` (N,) for the images that decoded."""
    pooled = np.zeros((rows.size, FEATURES), np.float32)
    trunk: np.ndarray | None = None
    ok = np.zeros(rows.size, bool)
    aug = cfg.augmentation if augmented else Augmentation()
    done = 0
    with _progress(progress) as bar, torch.no_grad():
        job = bar.add_task(describe, total=int(rows.size), note="")
        for part, images, good in loader.chunks(rows, cfg.batch_size):
            for i in range(0, part.size, cfg.micro_batch):
                x = normalise(
                    augment(to_unit(images[i : i + cfg.micro_batch]), aug, generator)
                )  # (b, 3, S, S)
                h = backbone.trunk(x)  # (b, C, h, w)
                at = slice(done + i, done + i + h.shape[0])
                if keep_trunk:
                    if trunk is None:
                        trunk = np.zeros((rows.size, *h.shape[1:]), np.float16)
                    trunk[at] = h.to(torch.float16).numpy()
                pooled[at] = backbone.tail(h).numpy()
            ok[done : done + part.size] = good
            done += part.size
            bar.advance(job, part.size)
    return pooled, trunk, ok


def _adam(params: Any, lr: float) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), eps=1e-7)


def _batch_labels(labels: np.ndarray, rows: np.ndarray, task: np.ndarray) -> tuple[Tensor, Tensor]:
    """``labels`` (N, T) -> the drawn task's label per example ``(B,)`` and the task ids ``(B,)``."""
    return torch.from_numpy(labels[rows, task]), torch.from_numpy(task)


def train_heads(
    model: VisualModel,
    features: np.ndarray,
    labels: np.ndarray,
    sampler: BalancedTaskSampler,
    cfg: VisualConfig,
    progress: bool,
) -> list[float]:
    """Phase 1: the representation layer and the heads on cached pooled features ``(V, N, F)``; a random
    view per example. Returns the mean loss per epoch."""
    params = [*model.embed.parameters(), *model.heads.parameters()]
    opt = _adam(params, cfg.lr)
    rng = np.random.default_rng(cfg.seed + 1)
    feats = torch.from_numpy(features)  # (V, N, F)
    losses: list[float] = []
    model.train()
    steps = sampler.steps_per_epoch
    with _progress(progress) as bar:
        job = bar.add_task("phase 1: heads", total=cfg.heads_epochs * steps, note="")
        for epoch in range(cfg.heads_epochs):
            total = 0.0
            for _ in range(steps):
                rows, task = sampler.sample()
                view = rng.integers(0, feats.shape[0], rows.size)
                x = feats[torch.from_numpy(view), torch.from_numpy(rows)]  # (B, F)
                y, t = _batch_labels(labels, rows, task)
                loss = masked_multitask_loss(model.heads, model.represent(x), y, t)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach())
                bar.advance(job)
            losses.append(total / steps)
            bar.update(job, note=f"epoch {epoch + 1} loss {losses[-1]:.3f}")
    model.eval()
    return losses


def finetune(
    model: VisualModel,
    loader: ImageLoader,
    labels: np.ndarray,
    sampler: BalancedTaskSampler,
    cfg: VisualConfig,
    generator: torch.Generator,
    progress: bool,
) -> list[float]:
    """Phase 2: the unfrozen tail, the representation layer and the heads on augmented images (the frozen
    trunk runs without gradient); each batch runs in ``micro_batch`` pieces whose gradients add up to the
    batch's. Returns the mean loss per epoch."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = _adam(trainable, cfg.finetune_lr)
    steps = max(1, math.ceil(cfg.finetune_max_images / cfg.batch_size))
    losses: list[float] = []
    model.train()
    with _progress(progress) as bar:
        job = bar.add_task("phase 2: fine-tune", total=cfg.finetune_epochs * steps, note="")
        for epoch in range(cfg.finetune_epochs):
            total = 0.0
            for _ in range(steps):
                rows, task = sampler.sample()
                unique, back = np.unique(rows, return_inverse=True)
                images = loader.load(unique)[0][back]  # (B, S, S, 3) uint8
                y, t = _batch_labels(labels, rows, task)
                opt.zero_grad(set_to_none=True)
                for i in range(0, rows.size, cfg.micro_batch):
                    part = slice(i, i + cfg.micro_batch)
                    x = augment(to_unit(images[part]), cfg.augmentation, generator)  # (b, 3, S, S)
                    with torch.no_grad():
                        h = model.backbone.trunk(normalise(x))  # (b, C, h, w)
                    z = model.represent(model.backbone.tail(h))  # (b, D)
                    loss = masked_multitask_loss(model.heads, z, y[part], t[part]) * (z.shape[0] / rows.size)
                    loss.backward()
                    total += float(loss.detach())
                opt.step()
                bar.advance(job)
            losses.append(total / steps)
            bar.update(job, note=f"epoch {epoch + 1} loss {losses[-1]:.3f}")
    model.eval()
    return losses


def pooled_from_trunk(backbone: Backbone, trunk: np.ndarray, micro_batch: int, progress: bool) -> np.ndarray:
    """Run the (fine-tuned) tail over cached trunk activations ``(N, C, h, w)`` -> ``(N, F)``."""
    out = np.zeros((trunk.shape[0], FEATURES), np.float32)
    with _progress(progress) as bar, torch.no_grad():
        job = bar.add_task("vectors: fine-tuned tail", total=int(trunk.shape[0]), note="")
        for i in range(0, trunk.shape[0], micro_batch):
            h = torch.from_numpy(trunk[i : i + micro_batch].astype(np.float32))  # (b, C, h, w)
            out[i : i + micro_batch] = backbone.tail(h).numpy()
            bar.advance(job, h.shape[0])
    return out


def head_accuracy(model: VisualModel, z: Tensor, labels: np.ndarray, rows: np.ndarray) -> list[float | None]:
    """Accuracy of each head on ``rows`` that carry its label; ``z`` ``(N, D)``, ``labels`` ``(N, T)``."""
    out: list[float | None] = []
    with torch.no_grad():
        for t, head in enumerate(model.heads):
            r = rows[labels[rows, t] >= 0]
            if r.size == 0:
                out.append(None)
                continue
            pred = head(z[torch.from_numpy(r)]).argmax(1).numpy()
            out.append(float((pred == labels[r, t]).mean()))
    return out
