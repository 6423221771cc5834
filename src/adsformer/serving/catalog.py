"""The listings the service can show: their attributes (shop, taxonomy, ``c_*``, ``f_*``, price, title, tags),
their bids and budgets.

Serving needs per listing what the offline feature builder reads from ``listings.parquet`` (target shop and
taxonomy, listing-level ``c_*`` / ``f_*``, price) plus a bid. The data contract keeps bids on impressions, so
the bid of a listing is, in order: a ``bid`` column of the listings table when there is one; else, when the
catalog is read from a dataset directory, the listing's most recent impression bid; else ``default_bid``.

Money is checked when the catalog is built: every bid finite and within ``[0, max_bid]``, every price
finite and within ``[0, max_price]`` (or missing), every budget non-negative (or missing: unlimited); a
:class:`CatalogError` names the listings, the values and the bound.

Letters: N listings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from adsformer.data.schema import IMPRESSIONS, LISTINGS, read_meta

#: Listing columns event enrichment may fill (as :func:`adsformer.data.features.enrich_events` does).
ENRICH_COLUMNS = ("shop_id", "taxonomy_id")


class CatalogError(ValueError):
    """A catalog path or table that cannot serve (names the path and what is missing)."""


@dataclass
class Catalog:
    """Listings (one row each, unique ids) with a bid per listing (dollars per click)."""

    listings: pl.DataFrame
    bids: np.ndarray  # (N,) float64 in the listings' row order
    max_bid: float = 100.0  # dollars per click; larger (or non-finite, negative) bids are refused
    max_price: float = 1e7
    actions: tuple[str, ...] = ()  # action words beyond the standard ones (the dataset's dataset.json)

    def __post_init__(self) -> None:
        if "listing_id" not in self.listings.columns:
            raise CatalogError("the catalog's listings table has no listing_id column")
        ids = self.listings["listing_id"].cast(pl.String)
        if ids.null_count() or ids.is_duplicated().any():
            raise CatalogError("the catalog's listing_id column has nulls or duplicates")
        if self.bids.shape != (self.listings.height,):
            raise CatalogError(f"{self.bids.shape[0]} bids for {self.listings.height} listings")
        self.ids: list[str] = ids.to_list()
        self.bids = np.asarray(self.bids, np.float64)
        _check_range("bid", self.bids, self.ids, self.max_bid, "max_bid", missing_ok=False)
        if "price" in self.listings.columns:
            prices = self.listings["price"].cast(pl.Float64).to_numpy().astype(np.float64)
            _check_range("price", prices, self.ids, self.max_price, "max_price", missing_ok=True)
        self.row: dict[str, int] = {lid: i for i, lid in enumerate(self.ids)}
        self.enrich_columns = [c for c in self.listings.columns if c in ENRICH_COLUMNS or c.startswith("c_")]
        # listing_id -> {column: value} for event enrichment (only non-null values)
        cols = {c: self.listings[c].cast(pl.String).to_list() for c in self.enrich_columns}
        self.attributes: list[dict[str, str]] = [
            {c: cols[c][i] for c in self.enrich_columns if cols[c][i] is not None}
            for i in range(self.listings.height)
        ]
        budget = self.listings["budget"] if "budget" in self.listings.columns else None
        self.budgets = (
            budget.cast(pl.Float64).fill_null(np.inf).to_numpy().copy()
            if budget is not None
            else np.full(self.listings.height, np.inf)
        )
        bad = np.flatnonzero(np.isnan(self.budgets) | (self.budgets < 0))
        if bad.size:
            raise CatalogError(
                f"{bad.size} listings have a negative or NaN budget ({_examples(bad, self.ids, self.budgets)}); "
                "a budget is a non-negative amount, or missing for none"
            )

    def __len__(self) -> int:
        return self.listings.height

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        default_bid: float = 0.3,
        max_bid: float = 100.0,
        max_price: float = 1e7,
    ) -> Catalog:
        """A dataset directory (``listings.parquet``, bids from ``impressions.parquet``, extra action words
        from ``dataset.json``) or a listings file."""
        path = Path(path)
        try:
            if path.is_dir():
                file = path / f"{LISTINGS}.parquet"
                if not file.exists():
                    raise CatalogError(f"no {LISTINGS}.parquet (expected a dataset directory)")
                imps = path / f"{IMPRESSIONS}.parquet"
                bids = _latest_bids(imps) if imps.exists() else None
                actions = tuple(read_meta(path).actions)
                return cls.from_frame(
                    pl.read_parquet(file),
                    bids,
                    default_bid=default_bid,
                    max_bid=max_bid,
                    max_price=max_price,
                    actions=actions,
                )
            if not path.exists():
                raise CatalogError("catalog not found (a dataset directory or a listings Parquet file)")
            return cls.from_frame(
                pl.read_parquet(path), None, default_bid=default_bid, max_bid=max_bid, max_price=max_price
            )
        except CatalogError as exc:
            raise CatalogError(f"{path}: {exc}") from None

    @classmethod
    def from_frame(
        cls,
        listings: pl.DataFrame,
        bids: dict[str, float] | None = None,
        *,
        default_bid: float = 0.3,
        max_bid: float = 100.0,
        max_price: float = 1e7,
        actions: tuple[str, ...] = (),
    ) -> Catalog:
        """``listings`` as the data contract has them; ``bids`` listing_id -> bid (else a ``bid`` column,
        else ``default_bid``)."""
        if "listing_id" not in listings.columns:
            raise CatalogError("listings table has no listing_id column")
        listings = listings.with_columns(pl.col("listing_id").cast(pl.String))
        n = listings.height
        if "bid" in listings.columns:
            out = listings["bid"].cast(pl.Float64).fill_null(default_bid).to_numpy().astype(np.float64)
        else:
            lookup = bids or {}
            out = np.array([lookup.get(lid, default_bid) for lid in listings["listing_id"]], np.float64)
        return cls(listings, out.reshape(n), max_bid=max_bid, max_price=max_price, actions=tuple(actions))


def _check_range(
    what: str, values: np.ndarray, ids: list[str], upper: float, setting: str, *, missing_ok: bool
) -> None:
    """Every value finite and in ``[0, upper]`` (NaN allowed as missing when ``missing_ok``)."""
    bad_value = ~np.isfinite(values) | (values < 0) | (values > upper)
    if missing_ok:
        bad_value &= ~np.isnan(values)
    bad = np.flatnonzero(bad_value)
    if bad.size:
        raise CatalogError(
            f"{bad.size} listings have a {what} that is not finite or outside [0, {upper:g}] "
            f"({_examples(bad, ids, values)}); fix the catalog or raise {setting} "
            f"(ADSFORMER_{setting.upper()})"
        )


def _examples(rows: np.ndarray, ids: list[str], values: np.ndarray, k: int = 3) -> str:
    shown = ", ".join(f"{ids[int(i)]!r}: {values[int(i)]:g}" for i in rows[:k])
    return shown + (", ..." if rows.size > k else "")


def _latest_bids(path: Path) -> dict[str, float] | None:
    """The most recent impression bid of every listing (None when impressions carry no bids)."""
    scan = pl.scan_parquet(path)
    if "bid" not in scan.collect_schema().names():
        return None
    latest = (
        scan.select("listing_id", "ts", "bid")
        .drop_nulls("bid")
        .sort("ts")
        .group_by("listing_id")
        .agg(pl.col("bid").last())
        .collect()
    )
    return dict(zip(latest["listing_id"].to_list(), latest["bid"].to_list(), strict=True))
