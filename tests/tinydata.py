"""A tiny hand-made canonical dataset shared by the tests (importable as ``tinydata`` from tests/)."""

from __future__ import annotations

import polars as pl

from adsformer.data.schema import Dataset, DatasetMeta


def make_tiny_dataset() -> Dataset:
    """Three users, four listings, a handful of events and two requests per day over five days."""
    listings = pl.DataFrame(
        {
            "listing_id": ["l1", "l2", "l3", "l4"],
            "shop_id": ["s1", "s1", "s2", "s2"],
            "taxonomy_id": ["t1", "t2", "t1", "t2"],
            "title": ["red ring", "blue mug", "gold ring", "green mug"],
            "tags": [["ring"], ["mug"], ["ring", "gold"], []],
            "price": [10.0, 20.0, 30.0, 40.0],
            "c_color": ["red", "blue", "gold", "green"],
        }
    )
    day = 86_400
    ev_rows = []
    imp_rows = []
    for d in range(5):
        base = 1_700_000_000 + d * day
        ev_rows += [
            ("u1", base + 10, "view", "l1", None),
            ("u1", base + 20, "view", "l3", None),
            ("u1", base + 30, "favorite", "l3", None),
            ("u2", base + 15, "search", None, "mug"),
            ("u2", base + 25, "view", "l2", None),
        ]
        imp_rows += [
            (f"r{d}a", "u1", base + 40, "l1", 1, 1, "ring"),
            (f"r{d}a", "u1", base + 40, "l2", 0, 2, "ring"),
            (f"r{d}b", "u2", base + 30, "l4", 1, 1, "mug"),
            (f"r{d}b", "u2", base + 30, "l3", 0, 2, "mug"),
            (f"r{d}c", "u3", base + 50, "l2", 0, 1, None),
        ]
    events = pl.DataFrame(
        ev_rows, schema=["user_id", "ts", "action", "listing_id", "query"], orient="row"
    ).with_columns(pl.col("ts").cast(pl.Int64))
    impressions = pl.DataFrame(
        imp_rows,
        schema=["request_id", "user_id", "ts", "listing_id", "clicked", "position", "query"],
        orient="row",
    ).with_columns(
        pl.col("ts").cast(pl.Int64), pl.col("clicked").cast(pl.Int8), pl.col("position").cast(pl.Int32)
    )
    impressions = impressions.with_columns(
        purchased=pl.when(pl.col("clicked") == 1)
        .then(pl.col("request_id").str.ends_with("a"))
        .otherwise(False)
        .cast(pl.Int8)
    )
    return Dataset(listings, events, impressions, DatasetMeta(name="tiny", source="tests"))
