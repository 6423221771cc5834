"""The static marketplace: shops, listings (taxonomy, color, price band, price, text), bids and budgets.

Everything is drawn once per seed with numpy and kept as index arrays (listing ``i`` is ``"l_<i>"``).
Shops specialise in one or two top-level categories and lean towards one price band. A listing's price is
its leaf's base price times its band multiplier (with noise), its title and tags come from its leaf's words
plus its color and generic words. Hidden truth (quality, band) stays in :class:`World` and the truth files;
the public listing table only carries noisy proxies (``f_rating``, ``f_review_count``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import polars as pl

from adsformer.simulator.config import SimulatorConfig
from adsformer.simulator.taxonomy import Taxonomy


def categorical(rng: np.random.Generator, table: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """One draw from row ``rows[i]`` of a table of categorical distributions (rows sum to 1), vectorized
    by a single ``searchsorted`` over the row-offset CDFs (memory O(table), not O(draws x categories))."""
    n_rows, k = table.shape
    cdf = np.cumsum(table, axis=1)
    cdf /= cdf[:, -1:]
    flat = (cdf + np.arange(n_rows)[:, None]).ravel()
    rows = np.asarray(rows, np.int64)
    idx = np.searchsorted(flat, rows + rng.random(rows.shape), side="right") - rows * k
    return idx.clip(0, k - 1)


def choice(rng: np.random.Generator, probs: np.ndarray, size: int | tuple[int, ...]) -> np.ndarray:
    """``size`` draws from one categorical distribution."""
    return rng.choice(probs.size, size=size, p=probs / probs.sum())


def id_series(prefix: str, n: int) -> pl.Series:
    """``prefix0, prefix1, ...`` as a polars string Series, built without a Python loop."""
    return pl.select((pl.lit(prefix) + pl.int_range(n, dtype=pl.Int64).cast(pl.String)).alias("id"))["id"]


@dataclass
class World:
    """Listings and shops as arrays, plus lookup tables for drawing listings by (leaf, color, band)."""

    tax: Taxonomy
    leaf_pop: np.ndarray  # (L,) leaf popularity
    leaf_color_probs: np.ndarray  # (L, C)
    leaf_base_price: np.ndarray  # (L,)
    shop_tops: np.ndarray  # (S, shop_max_tops), -1 = none
    shop_band: np.ndarray  # (S,)
    leaf: np.ndarray
    color: np.ndarray
    band: np.ndarray
    shop: np.ndarray
    price: np.ndarray
    quality: np.ndarray  # hidden truth
    quality_estimate: np.ndarray  # the platform's static (non-personalized) quality estimate
    bid_by_day: np.ndarray  # (N, days) cost-per-click bid per day
    budget: np.ndarray
    rating: np.ndarray
    review_count: np.ndarray
    title_words: list[np.ndarray]
    tag_words: list[np.ndarray]
    order: np.ndarray  # listings sorted by cell key (leaf, color, band)
    sorted_keys: np.ndarray
    n_bands: int
    by_shop: np.ndarray = dataclasses.field(default_factory=lambda: np.empty(0, np.int64))  # listings by shop
    shop_start: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(1, np.int64))  # (S + 1,)

    @property
    def n(self) -> int:
        return self.leaf.size

    def cell_key(self, leaf: np.ndarray, color: np.ndarray, band: np.ndarray) -> np.ndarray:
        n_c = self.leaf_color_probs.shape[1]
        return (leaf.astype(np.int64) * n_c + color) * self.n_bands + band

    def key_range(self, lo_key: np.ndarray, hi_key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions in ``order`` of the listings whose cell key lies in ``[lo_key, hi_key)``."""
        return (
            np.searchsorted(self.sorted_keys, lo_key, "left"),
            np.searchsorted(self.sorted_keys, hi_key, "left"),
        )

    def leaf_range(self, leaf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lo = self.cell_key(leaf, np.zeros_like(leaf), np.zeros_like(leaf))
        return self.key_range(lo, self.cell_key(leaf + 1, np.zeros_like(leaf), np.zeros_like(leaf)))

    def top_range(self, top: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        nl = self.tax.n_leaves
        lo, _ = self.leaf_range(top * nl)
        _, hi = self.leaf_range(top * nl + nl - 1)
        return lo, hi

    def draw_in(self, rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """A uniform listing from each non-empty range of ``order``."""
        return self.order[lo + (rng.random(lo.shape) * (hi - lo)).astype(np.int64)]

    def in_shop(self, rng: np.random.Generator, shop: np.ndarray) -> np.ndarray:
        """A uniform listing of each shop (every shop drawn here has at least one: its touched one)."""
        lo, hi = self.shop_start[shop], self.shop_start[shop + 1]
        return self.by_shop[lo + (rng.random(lo.shape) * (hi - lo)).astype(np.int64)]

    def pick(
        self, rng: np.random.Generator, leaf: np.ndarray, color: np.ndarray, band: np.ndarray
    ) -> np.ndarray:
        """A listing per row with exactly (leaf, color, band) where one exists, else (leaf, color),
        else any listing of the leaf (every leaf has listings)."""
        key = self.cell_key(leaf, color, band)
        lo, hi = self.key_range(key, key + 1)
        c_lo, c_hi = self.key_range(key - band, key - band + self.n_bands)
        l_lo, l_hi = self.leaf_range(leaf)
        empty = hi <= lo
        lo, hi = np.where(empty, c_lo, lo), np.where(empty, c_hi, hi)
        empty = hi <= lo
        lo, hi = np.where(empty, l_lo, lo), np.where(empty, l_hi, hi)
        return self.draw_in(rng, lo, hi)

    def listings_frame(self, images: bool) -> pl.DataFrame:
        """The canonical ``listings`` table (public columns only)."""
        ids = id_series("l_", self.n)
        tags = pl.DataFrame({f"t{i}": self.tax.join([w]) for i, w in enumerate(self.tag_words)}).select(
            pl.concat_list(pl.all())
            .list.eval(pl.element().filter(pl.element() != ""))
            .list.unique(maintain_order=True)
            .alias("tags")
        )["tags"]
        cols: dict[str, pl.Series | np.ndarray] = {
            "listing_id": ids,
            "shop_id": id_series("s_", self.shop_tops.shape[0]).gather(self.shop),
            "taxonomy_id": pl.Series(self.tax.leaf_ids, dtype=pl.String).gather(self.leaf),
            "title": self.tax.join(self.title_words),
            "tags": tags,
            "price": self.price.astype(np.float64),
        }
        if images:
            cols["image_path"] = pl.select(pl.lit("images/") + pl.lit(ids) + pl.lit(".png"))[:, 0]
        cols |= {
            "budget": self.budget.astype(np.float64),
            "c_color": pl.Series(self.tax.colors, dtype=pl.String).gather(self.color),
            "f_rating": self.rating.astype(np.float64),
            "f_review_count": self.review_count.astype(np.float64),
        }
        return pl.DataFrame(cols)


def build_world(cfg: SimulatorConfig, rng: np.random.Generator) -> World:
    """Draw shops and listings for ``cfg``."""
    tax = Taxonomy.build(cfg.n_top, cfg.n_leaves, cfg.n_colors)
    L, C, B = tax.n_leaf_total, len(tax.colors), len(cfg.price_band_multipliers)
    N, S = cfg.n_listings, cfg.n_shops
    leaf_pop = rng.dirichlet(np.full(L, 4.0))
    leaf_color_probs = rng.dirichlet(np.full(C, cfg.leaf_color_alpha), size=L)
    leaf_base_price = np.exp(rng.normal(np.log(25.0), 0.6, L)).round(2)

    # shops: top-level specialties (every category has a shop), a favourite price band, a size weight
    shop_tops = np.full((S, cfg.shop_max_tops), -1, np.int32)
    shop_tops[:, 0] = np.where(
        np.arange(S) < cfg.n_top, np.arange(S) % cfg.n_top, rng.integers(0, cfg.n_top, S)
    )
    for j in range(1, cfg.shop_max_tops):
        shop_tops[:, j] = np.where(rng.random(S) < 0.4, rng.integers(0, cfg.n_top, S), -1)
    shop_band = rng.integers(0, B, S)
    pair_shop = np.repeat(np.arange(S), cfg.shop_max_tops)
    pair_top = shop_tops.ravel()
    keep = pair_top >= 0
    pair_shop, pair_top = pair_shop[keep], pair_top[keep]
    by_top = np.lexsort((pair_shop, pair_top))
    pair_shop, pair_top = pair_shop[by_top], pair_top[by_top]
    cum_w = np.cumsum(np.exp(rng.normal(0.0, 1.0, pair_shop.size)))

    # listings: leaf (each leaf at least once), shop within the leaf's category, color, band, price
    leaf = np.concatenate([np.arange(L), choice(rng, leaf_pop, N - L)])
    leaf = leaf[rng.permutation(N)].astype(np.int32)
    top = tax.top_of(leaf)
    lo = np.searchsorted(pair_top, top, "left")
    hi = np.searchsorted(pair_top, top, "right")
    base = np.where(lo > 0, cum_w[np.maximum(lo - 1, 0)], 0.0)
    u = base + rng.random(N) * (cum_w[hi - 1] - base)
    shop = pair_shop[np.clip(np.searchsorted(cum_w, u, "right"), lo, hi - 1)].astype(np.int32)
    color = categorical(rng, leaf_color_probs, leaf).astype(np.int8)
    band = np.where(rng.random(N) < 0.6, shop_band[shop], rng.integers(0, B, N)).astype(np.int8)
    mult = np.asarray(cfg.price_band_multipliers)
    price = (leaf_base_price[leaf] * mult[band] * np.exp(rng.normal(0.0, cfg.price_noise, N))).round(2)
    price = np.maximum(price, 0.5)

    quality = rng.normal(0.0, cfg.quality_std, N).astype(np.float32)
    quality_estimate = (quality + rng.normal(0.0, cfg.quality_estimate_noise, N)).astype(np.float32)
    rating = np.clip(4.3 + 0.35 * (quality + rng.normal(0.0, cfg.rating_noise, N)), 1.0, 5.0).round(1)
    review_count = rng.poisson(np.exp(2.5 + 0.6 * quality_estimate)).astype(np.float64)
    bid = np.exp(rng.normal(np.log(cfg.bid_median), cfg.bid_sigma, N))
    bid_by_day = np.maximum(bid[:, None] * np.exp(rng.normal(0.0, cfg.bid_daily_sigma, (N, cfg.days))), 0.05)
    bid_by_day = bid_by_day.round(2)
    budget = np.exp(rng.normal(np.log(cfg.budget_median), 0.8, N))
    small = rng.random(N) < cfg.small_budget_fraction
    budget = np.where(small, rng.uniform(0.2, 2.0, N), budget).round(2)

    # text: title "[generic] [color] <leaf word> <head noun>", tags: head, leaf word, category, color, generic
    none = np.full(N, -1, np.int32)
    color_w = tax.color_words(color)
    generic = tax.sample_words(rng, np.full(N, tax.generic_node))
    title_words = [
        np.where(rng.random(N) < 0.5, generic, none),
        np.where(rng.random(N) < 0.85, color_w, none),
        tax.sample_words(rng, leaf),
        tax.sample_words(rng, leaf, head=True),
    ]
    tag_words = [
        tax.sample_words(rng, leaf, head=True),
        tax.sample_words(rng, leaf),
        tax.sample_words(rng, L + top),
        np.where(rng.random(N) < 0.7, color_w, none),
        np.where(rng.random(N) < 0.6, tax.sample_words(rng, np.full(N, tax.generic_node)), none),
    ]
    world = World(
        tax=tax,
        leaf_pop=leaf_pop,
        leaf_color_probs=leaf_color_probs,
        leaf_base_price=leaf_base_price,
        shop_tops=shop_tops,
        shop_band=shop_band,
        leaf=leaf,
        color=color,
        band=band,
        shop=shop,
        price=price,
        quality=quality,
        quality_estimate=quality_estimate,
        bid_by_day=bid_by_day,
        budget=budget,
        rating=rating,
        review_count=review_count,
        title_words=title_words,
        tag_words=tag_words,
        order=np.empty(0, np.int64),
        sorted_keys=np.empty(0, np.int64),
        n_bands=B,
    )
    keys = world.cell_key(leaf, color, band)
    world.order = np.argsort(keys, kind="stable")
    world.sorted_keys = keys[world.order]
    world.by_shop = np.argsort(shop, kind="stable")
    world.shop_start = np.concatenate([[0], np.cumsum(np.bincount(shop, minlength=S))]).astype(np.int64)
    return world
