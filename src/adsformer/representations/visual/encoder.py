"""Embedding new images with a trained visual table's model (search by image, paper appendix A.5.3).

``represent visual`` saves ``encoder.pt`` beside the table: the image side, the ``Linear(F, D)``
representation layer and, when phase 2 fine-tuned the backbone's tail, the tail's weights (the rest of the
backbone is the installed ImageNet EfficientNet-Lite0, which never changes). :class:`ImageEncoder`
rebuilds that model and maps an image file (or its bytes) to the same L2-normalised D-d vector the table
holds for a listing with that image: the same loading (white square padding, bilinear resize), the same
input scale, eval mode.

Tables written before ``encoder.pt`` existed still load as tables; :meth:`ImageEncoder.load` then says
how to get one (re-run ``adsformer represent visual``).

Letters: B images, S image side, F = 1280 pooled features, D = ``dim``.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from adsformer.representations.table import TableError
from adsformer.representations.visual.config import FEATURES, VisualConfig
from adsformer.representations.visual.images import load_image, normalise, to_unit
from adsformer.representations.visual.model import Backbone, VisualModel

ENCODER_FILE = "encoder.pt"
FORMAT = 1
_TAIL = ("tail_blocks.", "head.")


def save_encoder(model: VisualModel, cfg: VisualConfig, directory: Path) -> None:
    """Write ``directory/encoder.pt``: what :class:`ImageEncoder` needs besides the installed backbone."""
    tail = None
    if cfg.finetune_epochs > 0:
        tail = {k: v for k, v in model.backbone.state_dict().items() if k.startswith(_TAIL)}
    state = {
        "format": FORMAT,
        "image_size": cfg.image_size,
        "unfreeze_blocks": cfg.unfreeze_blocks,
        "dim": cfg.dim,
        "embed": model.embed.state_dict(),
        "tail": tail,
    }
    torch.save(state, directory / ENCODER_FILE)


class ImageEncoder:
    """Image -> the visual table's D-d unit vector."""

    def __init__(self, backbone: Backbone, embed: nn.Linear, image_size: int) -> None:
        self.backbone = backbone.eval()
        self.embed = embed.eval()
        self.image_size = image_size

    @property
    def dim(self) -> int:
        return int(self.embed.out_features)

    @classmethod
    def load(cls, table_dir: str | Path) -> ImageEncoder:
        path = Path(table_dir) / ENCODER_FILE
        if not path.exists():
            raise TableError(
                f"{table_dir}: the visual table has no {ENCODER_FILE} (it was written before search by image "
                "existed); re-run `adsformer represent visual` to get a table that can embed new images"
            )
        state: dict[str, Any] = torch.load(path, weights_only=True)
        if state.get("format") != FORMAT:
            raise TableError(f"{path}: unknown encoder format {state.get('format')!r} (expected {FORMAT})")
        backbone = Backbone(int(state["image_size"]), int(state["unfreeze_blocks"]))
        if state["tail"] is not None:
            backbone.load_state_dict(state["tail"], strict=False)
        embed = nn.Linear(FEATURES, int(state["dim"]))
        embed.load_state_dict(state["embed"])
        return cls(backbone, embed, int(state["image_size"]))

    def encode_arrays(self, images: np.ndarray, micro_batch: int = 4) -> np.ndarray:
        """``(B, S, S, 3)`` uint8 -> ``(B, D)`` float32 unit vectors."""
        out = np.zeros((images.shape[0], self.dim), np.float32)
        with torch.no_grad():
            for i in range(0, images.shape[0], micro_batch):
                x = normalise(to_unit(images[i : i + micro_batch]))  # (b, 3, S, S)
                z = self.embed(self.backbone(x))  # (b, D)
                out[i : i + micro_batch] = F.normalize(z, dim=1).numpy()
        return out

    def encode(self, images: Sequence[str | Path | bytes]) -> tuple[np.ndarray, np.ndarray]:
        """Vectors ``(B, D)`` of image files or encoded image bytes, and ``ok`` (B,): False where an image
        could not be read or decoded (its row is zeros)."""
        arrays = np.zeros((len(images), self.image_size, self.image_size, 3), np.uint8)
        ok = np.zeros(len(images), bool)
        for i, img in enumerate(images):
            source = io.BytesIO(img) if isinstance(img, bytes) else Path(img)
            decoded = load_image(source, self.image_size)
            if decoded is not None:
                arrays[i], ok[i] = decoded, True
        vectors = np.zeros((len(images), self.dim), np.float32)
        if ok.any():
            vectors[ok] = self.encode_arrays(arrays[ok])
        return vectors, ok
