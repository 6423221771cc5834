"""Procedural listing images: a shape per top-level category, a fill pattern per leaf, the listing's color.

Each image is ``size x size`` RGB: a light, tinted, noisy background and one shape (square, ring, triangle,
diamond, star, circle, cross, hexagon) filled with the listing's color (jittered), with a darker (or, for
dark colors, lighter) leaf-specific pattern (solid, stripes, checker, hole, dots). Position, size and
rotation are jittered per image, so a visual model has to learn shape and color rather than memorize
pixels. Rendering is vectorized over a batch with numpy masks; Pillow only encodes the PNGs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from adsformer.simulator.taxonomy import COLORS


def _shape_mask(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-mask of shape number ``shape`` (see taxonomy.SHAPES) in unit shape coordinates."""
    au, av = np.abs(u), np.abs(v)
    rho = np.hypot(u, v)
    if shape == 0:  # square
        return np.maximum(au, av) <= 0.8
    if shape == 1:  # ring
        return (rho <= 1.0) & (rho >= 0.55)
    if shape == 2:  # triangle, apex up
        return (v <= 0.7) & (au <= 0.95 * (v + 0.9) / 1.6)
    if shape == 3:  # diamond
        return au + av <= 1.0
    if shape == 4:  # five-pointed star
        return rho <= 0.6 + 0.38 * np.cos(5 * np.arctan2(v, u))
    if shape == 5:  # circle
        return rho <= 0.9
    if shape == 6:  # cross
        return ((au <= 0.3) & (av <= 0.95)) | ((av <= 0.3) & (au <= 0.95))
    return np.maximum(av, 0.5 * av + 0.866 * au) <= 0.85  # hexagon


def _pattern_mask(pattern: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Pixels of the leaf pattern (see taxonomy.PATTERNS); 'hole' pixels become background."""
    if pattern == 1:
        return np.floor((v + 4.0) * 3.0) % 2 == 0
    if pattern == 2:
        return np.floor((u + 4.0) * 3.0) % 2 == 0
    if pattern == 3:
        return (np.floor((u + 4.0) * 2.5) + np.floor((v + 4.0) * 2.5)) % 2 == 0
    if pattern == 4:
        return np.hypot(u, v) <= 0.3
    if pattern == 5:
        fu, fv = (u * 2.5 + 4.0) % 1.0 - 0.5, (v * 2.5 + 4.0) % 1.0 - 0.5
        return np.hypot(fu, fv) <= 0.22
    return np.zeros(u.shape, bool)


def render(
    shape: np.ndarray, pattern: np.ndarray, color: np.ndarray, size: int, rng: np.random.Generator
) -> np.ndarray:
    """``(n, size, size, 3)`` uint8 images for per-image shape, pattern and color indices."""
    n = shape.size
    f32 = np.float32
    grid = (np.arange(size, dtype=f32) + 0.5) / size * 2.0 - 1.0
    cx, cy = (rng.uniform(-0.15, 0.15, (2, n, 1, 1))).astype(f32)
    r = rng.uniform(0.55, 0.8, (n, 1, 1)).astype(f32)
    theta = rng.uniform(-0.35, 0.35, (n, 1, 1)).astype(f32)
    dx, dy = grid[None, None, :] - cx, grid[None, :, None] - cy
    cos, sin = np.cos(theta), np.sin(theta)
    u, v = (dx * cos + dy * sin) / r, (-dx * sin + dy * cos) / r
    inside = np.zeros((n, size, size), bool)
    accent = np.zeros((n, size, size), bool)
    for k in np.unique(shape):
        sel = shape == k
        inside[sel] = _shape_mask(int(k), u[sel], v[sel])
    for k in np.unique(pattern):
        sel = pattern == k
        accent[sel] = _pattern_mask(int(k), u[sel], v[sel])
    hole = (pattern == 4)[:, None, None] & accent
    inside &= ~hole
    accent &= inside

    rgb = np.asarray(list(COLORS.values()), f32)[color]
    fill = np.clip(rgb + rng.normal(0.0, 10.0, (n, 3)), 0, 255).astype(f32)
    dark = fill.mean(axis=1, keepdims=True) < 70
    shade = np.where(dark, fill + 80.0, fill * 0.55)
    bg = rng.uniform(175, 250, (n, 1)) + rng.normal(0.0, 12.0, (n, 3))
    img = np.broadcast_to(bg[:, None, None, :], (n, size, size, 3)).astype(f32)
    img = np.where(inside[..., None], fill[:, None, None, :], img)
    img = np.where(accent[..., None], shade[:, None, None, :], img)
    img += rng.normal(0.0, 6.0, img.shape).astype(f32)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_images(
    directory: Path,
    listing_ids: list[str],
    shape: np.ndarray,
    pattern: np.ndarray,
    color: np.ndarray,
    size: int,
    rng: np.random.Generator,
    *,
    batch: int = 512,
    progress: Callable[[float], None] | None = None,
) -> None:
    """Render and write ``directory/<listing_id>.png`` for every listing, batch by batch."""
    directory.mkdir(parents=True, exist_ok=True)
    n = len(listing_ids)
    for lo in range(0, n, batch):
        hi = min(lo + batch, n)
        imgs = render(shape[lo:hi], pattern[lo:hi], color[lo:hi], size, rng)
        for i in range(hi - lo):
            Image.fromarray(imgs[i]).save(directory / f"{listing_ids[lo + i]}.png", compress_level=1)
        if progress is not None:
            progress(hi / n)
