"""`adsformer represent visual`: features once, heads, optional fine-tuning, the table and its reports."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F

from adsformer.config import ConfigError, to_dict
from adsformer.console import StageTimes
from adsformer.representations.table import RepresentationTable, TableError
from adsformer.representations.visual.config import VisualConfig
from adsformer.representations.visual.encoder import save_encoder
from adsformer.representations.visual.images import ImageLoader
from adsformer.representations.visual.model import Backbone, VisualModel
from adsformer.representations.visual.multitask import (
    BalancedTaskSampler,
    TaskLabels,
    encode_task,
    held_out,
    resolve_tasks,
)
from adsformer.representations.visual.report import plot_neighbours
from adsformer.representations.visual.train import (
    extract_features,
    finetune,
    head_accuracy,
    pooled_from_trunk,
    train_heads,
)
from adsformer.runtime import torch_threads

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
    times = StageTimes()
    listings = _listings(data_dir)
    columns, auto = resolve_tasks(cfg, listings)
    imgs = _with_image(listings, data_dir, cfg)
    n_listed = imgs.height
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    with times.stage("features_s"):
        feats = _backbone_features(data_dir, imgs, cfg, gen, progress, say)
    val = held_out(feats.n, cfg.val_fraction, cfg.seed)
    tasks = _tasks(columns, auto, feats.imgs, ~val, cfg, say)
    labels = np.stack([t.codes for t in tasks], 1)  # (N, T)
    model = VisualModel(feats.backbone, cfg.dim, [len(t.classes) for t in tasks], cfg.dropout)
    with times.stage("views_s"):
        views = _augmented_views(feats, ~val, cfg, gen, progress)
    sampler = BalancedTaskSampler(
        [np.flatnonzero(~val & (labels[:, t] >= 0)) for t in range(len(tasks))], cfg.batch_size, cfg.seed
    )
    with times.stage("heads_s"):
        heads_loss = train_heads(model, np.stack(views), labels, sampler, cfg, progress)
        del views
        z, acc_heads = _represent_and_score(model, feats.pooled, labels, val)
    finetune_loss: list[float] = []
    acc_final = acc_heads
    if cfg.finetune_epochs > 0 and feats.trunk is not None:
        with times.stage("finetune_s"):
            finetune_loss = finetune(model, feats.loader, labels, sampler, cfg, gen, progress)
            pooled = pooled_from_trunk(feats.backbone, feats.trunk, cfg.micro_batch, progress)
            feats = dataclasses.replace(feats, trunk=None)  # free the trunk activations (N x C x h x w)
            z, acc_final = _represent_and_score(model, pooled, labels, val)
    vectors = F.normalize(z, dim=1).numpy().astype(np.float32)  # (N, D)
    heads = _heads_summary(tasks, labels, ~val, val, acc_heads, acc_final, heads_loss, finetune_loss, cfg)
    times.total()
    settings = _settings(cfg, tasks, n_listed, feats, val, times)
    table = RepresentationTable(cfg.name, "visual", feats.imgs["listing_id"].to_list(), vectors, settings)
    report = _write_table(table, out, listings, feats, tasks, heads, model, cfg)
    public = {k: v for k, v in report.items() if not k.startswith("_")}
    return {**public, "settings": settings, "heads": heads}


# --- the stages of _represent --------------------------------------------------------------------------


def _listings(data_dir: Path) -> pl.DataFrame:
    """Every listing of the dataset (they need an ``image_path`` column)."""
    from adsformer.data.validate import read_listings

    listings = read_listings(data_dir)
    if "image_path" not in listings.columns:
        raise TableError(f"{data_dir}/listings.parquet has no image_path column: no images to learn from")
    return listings


def _with_image(listings: pl.DataFrame, data_dir: Path, cfg: VisualConfig) -> pl.DataFrame:
    """The listings with an image: at most ``max_images`` (a seeded sample, in listing id order)."""
    imgs = listings.filter(pl.col("image_path").is_not_null() & (pl.col("image_path") != ""))
    if cfg.max_images is not None and imgs.height > cfg.max_images:
        imgs = imgs.sample(cfg.max_images, seed=cfg.seed).sort("listing_id")
    if imgs.height < 2:
        raise TableError(f"{data_dir}: {imgs.height} listing(s) with an image; need at least 2")
    return imgs


@dataclass(frozen=True)
class _Features:
    """One backbone pass over the images that decoded: their listings ``imgs`` (N rows, the table's rows),
    their loader, pooled features ``pooled`` (N, 1280) float32, the trunk activations ``trunk``
    (N, C, h, w) float16 when fine-tuning follows, and how many images did not decode."""

    backbone: Backbone
    imgs: pl.DataFrame
    loader: ImageLoader
    pooled: np.ndarray
    trunk: np.ndarray | None
    unreadable: int

    @property
    def n(self) -> int:
        return self.imgs.height


def _backbone_features(
    data_dir: Path,
    imgs: pl.DataFrame,
    cfg: VisualConfig,
    gen: torch.Generator,
    progress: bool,
    say: Callable[[str], None],
) -> _Features:
    """Pooled features (and the trunk activations when phase 2 runs) of every image; undecodable images
    are dropped with a note."""
    backbone = Backbone(cfg.image_size, cfg.unfreeze_blocks)
    loader = ImageLoader([data_dir / p for p in imgs["image_path"].to_list()], cfg.image_size)
    pooled, trunk, ok = extract_features(
        backbone,
        loader,
        np.arange(imgs.height),
        cfg,
        augmented=False,
        keep_trunk=cfg.finetune_epochs > 0,
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
    return _Features(backbone, imgs, loader, pooled, trunk, unreadable)


def _tasks(
    columns: list[str],
    auto: bool,
    imgs: pl.DataFrame,
    train: np.ndarray,
    cfg: VisualConfig,
    say: Callable[[str], None],
) -> list[TaskLabels]:
    """One head per label column with at least two classes among the ``train`` (N,) rows (automatic tasks
    without are skipped with a note; a named one is an error)."""
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
    if cfg.batch_size < len(tasks):
        raise ConfigError(f"visual setting batch_size={cfg.batch_size}: must be >= the {len(tasks)} tasks")
    return tasks


def _augmented_views(
    feats: _Features, train: np.ndarray, cfg: VisualConfig, gen: torch.Generator, progress: bool
) -> list[np.ndarray]:
    """The pooled features and ``feature_views - 1`` augmented views of the ``train`` (N,) images, each
    (N, 1280) (held-out rows keep their plain features)."""
    views = [feats.pooled]
    rows = np.flatnonzero(train)
    for v in range(1, cfg.feature_views):
        view = np.zeros_like(feats.pooled)
        view[rows] = extract_features(
            feats.backbone,
            feats.loader,
            rows,
            cfg,
            augmented=True,
            keep_trunk=False,
            generator=gen,
            describe=f"augmented view {v}",
            progress=progress,
        )[0]
        view[~train] = feats.pooled[~train]
        views.append(view)
    return views


def _represent_and_score(
    model: VisualModel, pooled: np.ndarray, labels: np.ndarray, val: np.ndarray
) -> tuple[torch.Tensor, list[float | None]]:
    """The representations (N, D) of ``pooled`` (N, 1280) and each head's accuracy on the ``val`` rows."""
    with torch.no_grad():
        z = model.represent(torch.from_numpy(pooled))  # (N, D)
    return z, head_accuracy(model, z, labels, np.flatnonzero(val))


def _settings(
    cfg: VisualConfig,
    tasks: Sequence[TaskLabels],
    n_listed: int,
    feats: _Features,
    val: np.ndarray,
    times: StageTimes,
) -> dict[str, Any]:
    """The table's settings: the config, the resolved tasks, the image counts and the stages' seconds."""
    return {
        **to_dict(cfg),
        "tasks_resolved": [t.column for t in tasks],
        "backbone": "EfficientNet-Lite0 (ImageNet), pooled 1280-d -> Linear(1280, dim)",
        "listings_with_image": n_listed,
        "images": feats.n,
        "unreadable_images": feats.unreadable,
        "train_images": int((~val).sum()),
        "val_images": int(val.sum()),
        "seconds": times.rounded(1),
    }


def _write_table(
    table: RepresentationTable,
    out: Path,
    listings: pl.DataFrame,
    feats: _Features,
    tasks: Sequence[TaskLabels],
    heads: dict[str, Any],
    model: VisualModel,
    cfg: VisualConfig,
) -> dict[str, Any]:
    """Write the table with its quality report, ``heads.json``, the encoder and ``neighbours.png`` in one
    atomic write; returns the quality report."""
    from adsformer.representations.quality import quality_report, write_report

    groups = listings
    if "taxonomy_id" not in groups.columns:  # measure coherence by the first task instead
        groups = groups.with_columns(pl.col(tasks[0].column).cast(pl.String).alias("taxonomy_id"))
    report = quality_report(table, groups, seed=cfg.seed)
    raw = {t.column: feats.imgs[t.column].cast(pl.String).fill_null("?").to_list() for t in tasks[:2]}
    captions = [" / ".join(vals) for vals in zip(*raw.values(), strict=True)]

    def extra(tmp: Path) -> None:
        write_report(report, tmp)
        (tmp / "heads.json").write_text(json.dumps(heads, indent=2) + "\n")
        save_encoder(model, cfg, tmp)  # search by image: embed new images as this table's vectors
        if cfg.neighbour_queries > 0:
            plot_neighbours(
                feats.loader.paths,
                captions,
                table.vectors,
                tmp / "neighbours.png",
                queries=min(cfg.neighbour_queries, feats.n),
                seed=cfg.seed,
            )

    table.save(out, extra=extra)
    return report


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
