"""Settings of `adsformer represent visual` (:class:`VisualConfig`) and the backbone's constants."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pydantic import with_config

from adsformer.config import KNOWN_KEYS_ONLY, ConfigError


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


# --- configuration ---------------------------------------------------------------------------------------

#: ``tasks=auto``: these label columns where the listings have any of them (a product catalog) ...
AUTO_TASKS = ("c_article_type", "c_color", "c_subcategory", "c_gender")
#: ... else these (a marketplace: taxonomy and seller-input color).
FALLBACK_TASKS = ("taxonomy_id", "c_color")
FEATURES = 1280  # F: EfficientNet-Lite0's pooled features
BLOCKS = 16  # EfficientNet-Lite0's MBConv blocks


@with_config(KNOWN_KEYS_ONLY)
@dataclass(frozen=True)
class VisualConfig:
    """Settings of ``adsformer represent visual``; invalid values raise :class:`ConfigError` on creation.

    ``tasks=("auto",)`` picks the label columns from the listings: those of :data:`AUTO_TASKS` present when
    any besides ``c_color`` is (a product catalog such as fashion), else those of :data:`FALLBACK_TASKS`
    present (``taxonomy_id``, ``c_color``); an auto column with fewer than two usable classes is skipped.
    """

    KIND: ClassVar[str] = "visual"

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
