"""Images in, tensors out: reading and resizing files (:class:`ImageLoader`) and training-time augmentation.

Letters: N images, B batch, S image side.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from adsformer.representations.visual.config import Augmentation

# --- images ----------------------------------------------------------------------------------------------


def load_image(path: Path | BinaryIO, size: int) -> np.ndarray | None:
    """``(S, S, 3)`` uint8: padded to a square with white (product photos' usual background), then resized.
    None when the file (or binary stream) cannot be read or decoded."""
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
