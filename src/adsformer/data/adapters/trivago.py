"""Adapter for the trivago RecSys Challenge 2019 session log (Parquet).

Input: a Parquet file (or a directory holding exactly one), or the challenge's original CSV, with the columns ``user_id, session_id,
timestamp, step, action_type, reference, platform, city, device, impressions, prices`` (``current_filters``
is read if present and otherwise unused). ``impressions`` and ``prices`` are pipe-separated, in display
order. In skip reports ``line`` is the 1-based data-row number of a Parquet file, or the line number of a
CSV file (its header is line 1).

Impressions (real, not sampled)
-------------------------------
* one request per ``clickout item`` row; ``request_id = "<session_id>:<step>"`` (``":r<row>"`` is appended
  when clickouts of a session repeat a step number, which happens where the log concatenates sessions;
  ``<row>`` is the 1-based data row, also for CSV input);
* every item of the row's ``impressions`` list is one impression with ``position`` = its 1-based index in the
  list, ``clicked = 1`` for the item equal to ``reference`` (exactly one per request), ``f_price`` = the
  displayed price and ``f_log_price = ln(1 + price)``, ``c_device`` and ``c_platform`` from the row;
* ``query`` = the text of the most recent ``search for destination`` / ``search for poi`` row of the same
  session strictly before the clickout (ordered by timestamp, step, row), else the row's ``city``;
* no conversions: there is no ``purchased`` column and ``has_conversions = False``.

A clickout row whose impressions and prices differ in length, hold a non-numeric item id or price, or
repeat an item is skipped entirely (reported). A clickout whose ``reference`` is not in its impressions list
keeps its ``clickout`` event but builds no request (reported).

Events
------
``interaction item image|info|deals|rating`` -> ``interaction_image|info|deals|rating``, ``search for
item`` -> ``search_item``, ``clickout item`` -> ``clickout`` (all with ``listing_id = reference``, which must
be a numeric item id or the row is skipped and reported); ``search for destination`` / ``search for poi`` ->
``search`` with ``query = reference``; ``filter selection`` -> ``filter`` and ``change of sort order`` ->
``sort`` with the filter / sort text as ``query``. The extra action words are declared in ``dataset.json``;
which sequences a model uses (for example image interactions as "views") is the training configuration's
choice. Events with a listing carry the listing's ``taxonomy_id``.

Listings
--------
Every item id seen in an impressions list or as an item reference. ``taxonomy_id`` = the city of the first
impression list it appeared in (hotels of one city are the natural category; an item only ever referenced
gets the city of its first referencing row); ``price`` = the median of its displayed prices (null if never
displayed).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from adsformer.data.adapters.base import (
    AdapterError,
    AdapterResult,
    Progress,
    first_reason,
    progress_or_noop,
    publish,
    require_columns,
    skipped_lines,
    skipped_notes,
)
from adsformer.data.schema import DatasetMeta

NAME = "trivago"
REQUIRED = (
    "user_id",
    "session_id",
    "timestamp",
    "step",
    "action_type",
    "reference",
    "platform",
    "city",
    "device",
    "impressions",
    "prices",
)

#: action_type -> (canonical action, what reference holds: "item" id or "text")
ACTIONS: dict[str, tuple[str, str]] = {
    "interaction item image": ("interaction_image", "item"),
    "interaction item info": ("interaction_info", "item"),
    "interaction item deals": ("interaction_deals", "item"),
    "interaction item rating": ("interaction_rating", "item"),
    "search for item": ("search_item", "item"),
    "clickout item": ("clickout", "item"),
    "search for destination": ("search", "text"),
    "search for poi": ("search", "text"),
    "filter selection": ("filter", "text"),
    "change of sort order": ("sort", "text"),
}
EXTRA_ACTIONS = sorted({a for a, _ in ACTIONS.values()} - {"search"})
SEARCH_TYPES = ("search for destination", "search for poi")
CLICKOUT = "clickout item"
NO_CONVERSIONS = "trivago has no conversions: PCCVR cannot be trained or evaluated on this dataset"


def prepare_trivago(path: Path, out: Path, *, progress: Progress | None = None) -> AdapterResult:
    """Turn the trivago session log into the canonical dataset at ``out`` (see the module docstring).

    Args:
        path: the Parquet (or CSV) file, or a directory holding exactly one ``*.parquet`` file.
        out: the dataset directory to write (replaced atomically).
        progress: called with one line per step.

    Raises:
        AdapterError: unreadable file, missing columns, or no usable clickout.
    """
    say = progress_or_noop(progress)
    file = _find_file(Path(path))
    say(f"reading {file.name}")
    raw = _read(file)
    say(f"{raw.height:,} rows")

    rows = _check_rows(raw)
    bad = rows.filter(pl.col("reason").is_not_null())
    skipped = skipped_lines(bad.with_columns(_row_text()), file.name, line="line")
    rows = rows.filter(pl.col("reason").is_null())
    if rows.height == 0:
        first = f"; first problem: {skipped[0]}" if skipped else ""
        raise AdapterError(f"{file.name}: none of the {raw.height:,} rows is usable{first}")

    # Session order: timestamp, then step, then file order (steps restart in concatenated sessions).
    rows = rows.sort("session_id", "timestamp", "step", "row")
    prior_search = (
        pl.when(pl.col("action_type").is_in(SEARCH_TYPES))
        .then(pl.col("reference"))
        .otherwise(None)
        .shift(1)
        .forward_fill()
        .over("session_id")
    )
    rows = rows.with_columns(pl.coalesce(prior_search, pl.col("city")).alias("_query"))

    clickouts = rows.filter(pl.col("action_type") == CLICKOUT)
    in_list = pl.col("_items").list.contains(pl.col("reference"))
    orphan = clickouts.filter(~in_list)
    skipped += skipped_lines(
        orphan.with_columns(
            pl.format(
                "clickout reference {} is not in the impressions list: no request built (the clickout "
                "event is kept)",
                pl.col("reference"),
            ).alias("reason"),
            _row_text(),
        ),
        file.name,
        line="line",
    )
    skipped.sort(key=lambda s: s.line)
    say(f"{clickouts.height - orphan.height:,} requests, {len(skipped)} rows skipped or reported")

    impressions = _impressions(clickouts.filter(in_list))
    if impressions.height == 0:
        raise AdapterError(
            f"{file.name}: no usable 'clickout item' row (expected rows with a reference in "
            "their impressions list); nothing to label"
        )
    listings = _listings(rows, clickouts)
    events = _events(rows, listings)

    notes = [
        NO_CONVERSIONS,
        "Only result lists that ended in a clickout are logged: every request has exactly one click, so CTR is "
        "about 1/(list length) and models learn which shown hotel is clicked, given a click.",
        "listings.taxonomy_id is the city of the first impressions list a hotel appeared in (hotels of one "
        "city are the category); listings.price is the median displayed price.",
        "Item interactions (image, info, deals, rating) are kept as distinct actions; image interactions "
        "dominate. The training configuration chooses which (entity, action) sequences to use.",
        "impressions.query is the session's most recent destination/poi search text before the clickout, "
        "else the row's city.",
        "user_id is trivago's user id: a user's sessions form one history.",
    ]
    notes += skipped_notes(skipped)
    protocol = {
        "source_file": file.name,
        "impressions": "real: one request per 'clickout item' row, one impression per item of its "
        "impressions list",
        "position": "1-based index in the impressions list (display order)",
        "clicked": "item == reference of the clickout row",
        "features": {
            "f_price": "displayed price",
            "f_log_price": "ln(1 + displayed price)",
            "c_device": "device",
            "c_platform": "platform",
        },
        "query": "most recent 'search for destination'/'search for poi' reference in the same session "
        "strictly before the clickout (order: timestamp, step, row), else city",
        "request_id": "<session_id>:<step>, ':r<row>' appended when a session repeats a step",
        "action_map": {k: v[0] for k, v in ACTIONS.items()},
        "listing_taxonomy": "city of the first impressions list the item appeared in",
        "listing_price": "median displayed price",
        "has_conversions": False,
        "skipped_rows": len(skipped),
        "seed": None,
    }
    source = f"trivago RecSys Challenge 2019 session log ({file.name})"
    meta = DatasetMeta(
        NAME, source, actions=list(EXTRA_ACTIONS), has_conversions=False, notes=notes, protocol=protocol
    )
    return publish((listings, events, impressions), meta, out, say, skipped)


def _find_file(path: Path) -> Path:
    if path.is_dir():
        files = sorted(path.glob("*.parquet"))
        if len(files) != 1:
            raise AdapterError(
                f"{path}: expected a trivago Parquet file or a directory with exactly one "
                f"*.parquet file, found {len(files)}"
            )
        return files[0]
    if not path.is_file():
        raise AdapterError(f"{path}: file not found; expected the trivago session log as Parquet")
    return path


def _read(file: Path) -> pl.DataFrame:
    """The required columns as text (timestamp, step as Int64; null where not an integer) plus ``row``, the
    1-based data-row number, and ``line``: the same for Parquet, the line number for CSV (header = line 1)."""
    is_csv = file.name.lower().endswith((".csv", ".csv.gz"))
    try:
        df = pl.read_csv(file, infer_schema=False) if is_csv else pl.read_parquet(file)
    except Exception as exc:  # polars raises several kinds for a bad file
        kind = "CSV" if is_csv else "Parquet"
        raise AdapterError(f"{file.name}: not a readable {kind} file ({type(exc).__name__}: {exc})") from exc
    require_columns(file.name, df.columns, REQUIRED)
    casts = []
    for name in REQUIRED:
        dtype = df.schema[name]
        if name in ("timestamp", "step"):
            if dtype == pl.String:
                casts.append(pl.col(name).str.strip_chars().str.to_integer(strict=False))
            elif dtype.is_integer() or dtype.is_float():
                casts.append(pl.col(name).cast(pl.Int64, strict=False))
            else:
                raise AdapterError(f"{file.name}: column '{name}' has type {dtype}; expected integers")
        else:
            casts.append(pl.col(name).cast(pl.String))
    try:
        df = df.select(casts)
    except Exception as exc:
        raise AdapterError(f"{file.name}: cannot read the columns as text/integers ({exc})") from exc
    header = 1 if is_csv else 0
    return df.with_row_index("row", offset=1).with_columns(
        pl.col("row").cast(pl.Int64), (pl.col("row").cast(pl.Int64) + header).alias("line")
    )


def _check_rows(df: pl.DataFrame) -> pl.DataFrame:
    """Add ``reason`` (first problem, else null), ``action``, ``_items`` and ``_prices`` lists."""
    kinds = {k: v[1] for k, v in ACTIONS.items()}
    actions = {k: v[0] for k, v in ACTIONS.items()}
    numeric = r"^[0-9]+$"
    df = df.with_columns(
        pl.col("action_type").replace_strict(actions, default=None, return_dtype=pl.String).alias("action"),
        pl.col("action_type").replace_strict(kinds, default=None, return_dtype=pl.String).alias("_kind"),
        pl.col("impressions").str.split("|").alias("_items"),
        pl.col("prices").str.split("|").alias("_price_text"),
    ).with_columns(
        pl.col("_price_text")
        .list.eval(pl.element().str.strip_chars().cast(pl.Float64, strict=False))
        .alias("_prices"),
    )
    is_click = pl.col("action_type") == CLICKOUT
    items_ok = pl.col("_items").list.eval(pl.element().str.contains(numeric)).list.all()
    price_ok = (
        pl.col("_prices")
        .list.eval(pl.element().is_not_null() & pl.element().is_finite() & (pl.element() >= 0))
        .list.all()
    )
    n_items = pl.col("_items").list.len()
    n_prices = pl.col("_prices").list.len()
    empty = lambda c: pl.col(c).is_null() | (pl.col(c).str.strip_chars() == "")  # noqa: E731
    checks: list[tuple[pl.Expr, str | pl.Expr]] = [
        (empty("user_id"), "column user_id is empty; expected a user id"),
        (empty("session_id"), "column session_id is empty; expected a session id"),
        (pl.col("timestamp").is_null(), "column timestamp is not an integer; expected Unix seconds"),
        (pl.col("timestamp") < 0, "column timestamp is negative; expected Unix seconds >= 0"),
        (
            pl.col("action").is_null(),
            pl.format(
                "column action_type: unknown action '{}'; expected one of " + ", ".join(ACTIONS),
                pl.col("action_type").fill_null("null"),
            ),
        ),
        (empty("reference"), "column reference is empty"),
        (
            (pl.col("_kind") == "item") & ~pl.col("reference").str.contains(numeric),
            pl.format(
                "column reference: '{}' is not a numeric item id (expected one for action_type '{}')",
                pl.col("reference"),
                pl.col("action_type"),
            ),
        ),
        (
            is_click & (empty("impressions") | empty("prices")),
            "clickout without an impressions or prices list",
        ),
        (is_click & ~items_ok, "column impressions: expected pipe-separated numeric item ids"),
        (is_click & ~price_ok, "column prices: expected pipe-separated non-negative numbers"),
        (
            is_click & (n_items != n_prices),
            pl.format(
                "column impressions has {} items but prices has {} values; expected the same length",
                n_items,
                n_prices,
            ),
        ),
        (is_click & (pl.col("_items").list.n_unique() != n_items), "column impressions repeats an item"),
    ]
    return df.with_columns(first_reason(checks).alias("reason"))


def _row_text() -> pl.Expr:
    cols = ["user_id", "session_id", "timestamp", "step", "action_type", "reference", "impressions", "prices"]
    return pl.concat_str(
        [pl.format(f"{c}={{}}", pl.col(c).cast(pl.String).fill_null("null")) for c in cols], separator=", "
    ).alias("text")


def _impressions(clickouts: pl.DataFrame) -> pl.DataFrame:
    base = pl.concat_str(pl.col("session_id"), pl.lit(":"), pl.col("step").cast(pl.String))
    reqs = clickouts.sort("row").with_columns(
        pl.when(base.is_duplicated())
        .then(pl.concat_str(base, pl.lit(":r"), pl.col("row").cast(pl.String)))
        .otherwise(base)
        .alias("request_id"),
        pl.int_ranges(1, pl.col("_items").list.len() + 1, dtype=pl.Int32).alias("position"),
    )
    return (
        reqs.select(
            "request_id",
            "user_id",
            pl.col("timestamp").cast(pl.Int64).alias("ts"),
            pl.col("_items").alias("listing_id"),
            "reference",
            "position",
            pl.col("_query").alias("query"),
            pl.col("_prices").alias("f_price"),
            pl.col("device").alias("c_device"),
            pl.col("platform").alias("c_platform"),
        )
        .explode("listing_id", "position", "f_price")
        .with_columns(
            (pl.col("listing_id") == pl.col("reference")).cast(pl.Int8).alias("clicked"),
            pl.col("f_price").log1p().alias("f_log_price"),
        )
        .select(
            "request_id",
            "user_id",
            "ts",
            "listing_id",
            "clicked",
            "position",
            "query",
            "f_price",
            "f_log_price",
            "c_device",
            "c_platform",
        )
    )


def _listings(rows: pl.DataFrame, clickouts: pl.DataFrame) -> pl.DataFrame:
    shown = clickouts.select(
        "timestamp", "row", "city", pl.col("_items").alias("listing_id"), pl.col("_prices").alias("price")
    ).explode("listing_id", "price")
    from_lists = (
        shown.sort("timestamp", "row")
        .group_by("listing_id", maintain_order=True)
        .agg(pl.col("city").first().alias("taxonomy_id"), pl.col("price").median().alias("price"))
    )
    referenced = (
        rows.filter(pl.col("_kind") == "item")
        .sort("timestamp", "row")
        .group_by(pl.col("reference").alias("listing_id"), maintain_order=True)
        .agg(pl.col("city").first().alias("ref_city"))
    )
    return (
        from_lists.join(referenced, on="listing_id", how="full", coalesce=True)
        .select(
            "listing_id",
            pl.coalesce("taxonomy_id", "ref_city").alias("taxonomy_id"),
            pl.col("price").cast(pl.Float64),
        )
        .sort("listing_id")
    )


def _events(rows: pl.DataFrame, listings: pl.DataFrame) -> pl.DataFrame:
    is_item = pl.col("_kind") == "item"
    return (
        rows.select(
            "user_id",
            pl.col("timestamp").cast(pl.Int64).alias("ts"),
            "action",
            pl.when(is_item).then(pl.col("reference")).otherwise(None).alias("listing_id"),
            pl.when(~is_item).then(pl.col("reference")).otherwise(None).alias("query"),
            "session_id",
            "step",
            "row",
        )
        .join(
            listings.select("listing_id", "taxonomy_id"), on="listing_id", how="left", maintain_order="left"
        )
        .sort("user_id", "ts", "session_id", "step", "row")
        .select("user_id", "ts", "action", "listing_id", "taxonomy_id", "query")
    )
