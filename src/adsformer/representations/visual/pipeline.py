"""`adsformer represent visual`: features once, heads, optional fine-tuning, the table and its reports."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F

from adsformer.config import ConfigError, to_dict
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
        save_encoder(model, cfg, tmp)  # search by image: embed new images as this table's vectors
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
