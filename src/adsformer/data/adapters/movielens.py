"""Adapter for MovieLens-100k, in the original GroupLens layout or the RecBole atomic-file layout.

``path`` is a directory (or a file inside it); the layout is detected by the files present:

* **ml-100k** (GroupLens): ``u.data`` (tab-separated ``user_id, item_id, rating, timestamp``, no header) and
  ``u.item`` (``|``-separated, latin-1: ``movie id | title | release date | video release date | IMDb URL``
  then 19 genre flags ``unknown .. Western``).
* **RecBole**: ``<name>.inter`` (tab-separated with a typed header ``user_id:token  item_id:token
  rating:float  timestamp:float``) and ``<name>.item`` (``item_id:token  movie_title:token_seq
  release_year:token  class:token_seq``, genres space-separated). The RecBole package ships ml-100k in
  ``recbole/dataset_example/ml-100k/``. Columns are found by the name before ``:``.

The item file is optional (listings then carry ids only; a note says so). Malformed lines (wrong number of
fields, empty id, non-numeric rating, timestamp not a non-negative whole number, bad genre flags) are skipped
and reported with their 1-based line number; an empty ratings file or one without a valid line raises
:class:`AdapterError`.

Mapping (protocol)
------------------
* events: every rating is a ``view`` of the movie at its timestamp (the sequences are the user's earlier
  ratings, whatever the score), with the movie's ``taxonomy_id``;
* impressions: every rating is its own request (``request_id = "ml-<line number in the ratings file>"``) with
  one impression at ``position`` 1, ``clicked = 1`` when ``rating >= click_threshold`` (default 4);
* listings: ``title``, ``taxonomy_id`` = the first genre in the ml-100k genre order, ``tags`` = all its
  genres, ``f_year`` = release year;
* no conversions (``has_conversions = False``, no ``purchased`` column) and no shown-but-ignored items.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from adsformer.data.adapters.base import (
    AdapterError,
    AdapterResult,
    Progress,
    SkippedLine,
    first_reason,
    progress_or_noop,
    publish,
    read_lines,
    skipped_lines,
    skipped_notes,
)
from adsformer.data.schema import DatasetMeta

NAME = "movielens"
GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
ML100K_ITEM_FIELDS = ("movie_id", "title", "release_date", "video_release_date", "imdb_url", *GENRES)
NO_CONVERSIONS = "movielens has no conversions: PCCVR cannot be trained or evaluated on this dataset"


def prepare_movielens(
    path: Path,
    out: Path,
    *,
    click_threshold: float = 4.0,
    progress: Progress | None = None,
) -> AdapterResult:
    """Turn MovieLens-100k (GroupLens or RecBole layout) into the canonical dataset at ``out``.

    Args:
        path: the dataset directory (or a file in it: ``u.data`` / ``*.inter``).
        out: the dataset directory to write (replaced atomically).
        click_threshold: a rating ``>= click_threshold`` is a click (default 4, "liked").
        progress: called with one line per step.

    Raises:
        AdapterError: no recognised layout, empty or unusable ratings file, or a bad RecBole header.
    """
    say = progress_or_noop(progress)
    layout, ratings_file, item_file = _detect(Path(path))
    say(f"{layout} layout: reading {ratings_file.name}")
    if layout == "ml-100k":
        ratings, skipped = _ml100k_ratings(ratings_file)
    else:
        ratings, skipped = _recbole_ratings(ratings_file)
    notes: list[str] = []
    if item_file is not None:
        say(f"reading {item_file.name}")
        items, item_skipped = (_ml100k_items if layout == "ml-100k" else _recbole_items)(item_file)
        skipped += item_skipped
    else:
        items = pl.DataFrame(
            schema={
                "listing_id": pl.String,
                "title": pl.String,
                "taxonomy_id": pl.String,
                "tags": pl.List(pl.String),
                "f_year": pl.Float64,
            }
        )
        notes.append("no item file found: listings carry ids only (no title, genres or year)")
    say(f"{ratings.height:,} ratings, {items.height:,} movies, {len(skipped)} lines skipped")

    rated = ratings.select("listing_id").unique()
    missing = rated.join(items, on="listing_id", how="anti")
    if item_file is not None and missing.height:
        notes.append(
            f"{missing.height} rated movie id(s) are not in {item_file.name}: their listings have no "
            "title, genres or year"
        )
    listings = pl.concat([items, missing], how="diagonal_relaxed").sort("listing_id")
    tax = listings.select("listing_id", "taxonomy_id")
    events = (
        ratings.join(tax, on="listing_id", how="left", maintain_order="left")
        .sort("user_id", "ts", "line_no")
        .select("user_id", "ts", pl.lit("view").alias("action"), "listing_id", "taxonomy_id")
    )
    impressions = ratings.sort("line_no").select(
        pl.concat_str(pl.lit("ml-"), pl.col("line_no").cast(pl.String)).alias("request_id"),
        "user_id",
        "ts",
        "listing_id",
        (pl.col("rating") >= click_threshold).cast(pl.Int8).alias("clicked"),
        pl.lit(1, dtype=pl.Int32).alias("position"),
    )

    notes = [
        NO_CONVERSIONS,
        "MovieLens has no impressions: each rating is a one-impression request (position 1) labelled "
        f"clicked = rating >= {click_threshold:g}; nothing was shown and ignored, so 'CTR' is the share of "
        "liked ratings.",
        "Every rating is also a 'view' event: a user's sequence is their earlier ratings, whatever the score. "
        "Ratings come in batches (many share one second); events at the impression's own second are not in "
        "its sequence.",
        "listings.taxonomy_id is the movie's first genre (ml-100k genre order), tags are all its genres, f_year "
        "its release year.",
        *notes,
        *skipped_notes(skipped),
    ]
    protocol = {
        "layout": layout,
        "source_files": [ratings_file.name] + ([item_file.name] if item_file is not None else []),
        "events": "every rating -> action 'view' at its timestamp",
        "impressions": "one request per rating, one impression at position 1",
        "clicked": f"rating >= {click_threshold:g}",
        "click_threshold": click_threshold,
        "request_id": f"ml-<1-based line number in {ratings_file.name}>",
        "listing_taxonomy": "first genre in ml-100k genre order",
        "genre_order": list(GENRES),
        "has_conversions": False,
        "skipped_lines": len(skipped),
        "seed": None,
    }
    source = f"MovieLens-100k ({layout} layout)"
    meta = DatasetMeta(NAME, source, has_conversions=False, notes=notes, protocol=protocol)
    return publish((listings, events, impressions), meta, out, say, skipped)


# -- layout ---------------------------------------------------------------------------------------------


def _detect(path: Path) -> tuple[str, Path, Path | None]:
    if path.is_file():
        path = path.parent
    if not path.is_dir():
        raise AdapterError(
            f"{path}: not found; expected a MovieLens-100k directory (u.data + u.item, or "
            "RecBole <name>.inter + <name>.item)"
        )
    if (path / "u.data").is_file():
        item = path / "u.item"
        return "ml-100k", path / "u.data", item if item.is_file() else None
    inters = sorted(path.glob("*.inter"))
    if len(inters) == 1:
        item = inters[0].with_suffix(".item")
        return "recbole", inters[0], item if item.is_file() else None
    if len(inters) > 1:
        raise AdapterError(
            f"{path}: {len(inters)} RecBole *.inter files ({[p.name for p in inters]}); expected exactly one"
        )
    raise AdapterError(
        f"{path}: no MovieLens ratings file; expected u.data (ml-100k layout) or one *.inter "
        "file (RecBole layout)"
    )


# -- ratings --------------------------------------------------------------------------------------------


def _split(lines: pl.DataFrame, sep: str, names: list[str]) -> pl.DataFrame:
    """Split ``text`` on ``sep`` into ``names`` (stripped), with ``n_fields``."""
    parts = pl.col("text").str.split(sep)
    return lines.with_columns(parts.alias("_f")).with_columns(
        pl.col("_f").list.len().alias("n_fields"),
        *[pl.col("_f").list.get(i, null_on_oob=True).str.strip_chars().alias(n) for i, n in enumerate(names)],
    )


def _rating_checks(
    n_expected: int, sep_name: str, cols: dict[str, int]
) -> list[tuple[pl.Expr, str | pl.Expr]]:
    """Checks for a ratings line; ``cols`` maps user_id/item_id/rating/timestamp to 1-based column numbers."""
    return [
        (pl.col("bad_encoding"), "not valid text in the expected encoding"),
        (pl.col("text").str.strip_chars() == "", "empty line"),
        (
            pl.col("n_fields") != n_expected,
            pl.format(f"expected {n_expected} {sep_name}-separated fields, found {{}}", pl.col("n_fields")),
        ),
        (pl.col("user_id") == "", f"column {cols['user_id']} (user_id) is empty; expected an id"),
        (pl.col("item_id") == "", f"column {cols['item_id']} (item_id) is empty; expected an id"),
        (
            pl.col("rating_num").is_null() | ~pl.col("rating_num").is_finite(),
            pl.format(f"column {cols['rating']} (rating): '{{}}' is not a number", pl.col("rating")),
        ),
        (
            pl.col("ts_num").is_null()
            | ~pl.col("ts_num").is_finite()
            | (pl.col("ts_num") != pl.col("ts_num").floor())
            | (pl.col("ts_num") < 0),
            pl.format(
                f"column {cols['timestamp']} (timestamp): '{{}}' is not a whole number of Unix seconds >= 0",
                pl.col("timestamp"),
            ),
        ),
    ]


def _finish_ratings(df: pl.DataFrame, checks: list, file: Path) -> tuple[pl.DataFrame, list[SkippedLine]]:
    df = df.with_columns(
        pl.col("rating").cast(pl.Float64, strict=False).alias("rating_num"),
        pl.col("timestamp").cast(pl.Float64, strict=False).alias("ts_num"),
    )
    df = df.with_columns(first_reason(checks).alias("reason"))
    skipped = skipped_lines(df.filter(pl.col("reason").is_not_null()), file.name)
    good = df.filter(pl.col("reason").is_null()).select(
        "line_no",
        "user_id",
        pl.col("item_id").alias("listing_id"),
        pl.col("rating_num").alias("rating"),
        pl.col("ts_num").cast(pl.Int64).alias("ts"),
    )
    if good.height == 0:
        first = f"; first problem: {skipped[0]}" if skipped else ""
        raise AdapterError(
            f"{file.name}: no valid rating line (expected user_id, item_id, rating, timestamp){first}"
        )
    return good, skipped


def _ml100k_ratings(file: Path) -> tuple[pl.DataFrame, list[SkippedLine]]:
    lines = read_lines(file)
    if lines.height == 0:
        raise AdapterError(
            f"{file.name}: the file is empty; expected tab-separated lines "
            "user_id, item_id, rating, timestamp"
        )
    names = ["user_id", "item_id", "rating", "timestamp"]
    df = _split(lines, "\t", names)
    checks = _rating_checks(4, "tab", {n: i + 1 for i, n in enumerate(names)})
    return _finish_ratings(df, checks, file)


def _recbole_header(
    lines: pl.DataFrame, file: Path, required: tuple[str, ...]
) -> tuple[list[str], pl.DataFrame]:
    if lines.height == 0:
        raise AdapterError(
            f"{file.name}: the file is empty; expected a RecBole header line "
            f"({', '.join(f'{c}:<type>' for c in required)}) then tab-separated rows"
        )
    header = lines["text"][0] or ""
    names = [h.split(":", 1)[0].strip() for h in header.split("\t")]
    missing = [c for c in required if c not in names]
    if missing:
        raise AdapterError(
            f"{file.name}, line 1 (header): missing column(s) {missing}; expected "
            f"{', '.join(f'{c}:<type>' for c in required)}, found {header!r}"
        )
    return names, lines.slice(1)


def _recbole_ratings(file: Path) -> tuple[pl.DataFrame, list[SkippedLine]]:
    required = ("user_id", "item_id", "rating", "timestamp")
    names, body = _recbole_header(read_lines(file), file, required)
    df = _split(body, "\t", names)
    checks = _rating_checks(len(names), "tab", {c: names.index(c) + 1 for c in required})
    return _finish_ratings(df, checks, file)


# -- items ----------------------------------------------------------------------------------------------


def _finish_items(df: pl.DataFrame, checks: list, file: Path) -> tuple[pl.DataFrame, list[SkippedLine]]:
    """``df`` has line_no, text, movie_id, title, f_year, tags; drop bad and duplicate ids."""
    df = df.with_columns(first_reason(checks).alias("reason"))
    dup = pl.col("movie_id").is_duplicated() & (pl.int_range(pl.len()).over("movie_id") > 0)
    df = (
        df.with_columns(
            pl.when(pl.col("reason").is_null() & dup)
            .then(pl.format("item id {} appears on an earlier line (the first is kept)", pl.col("movie_id")))
            .otherwise(pl.col("reason"))
            .alias("reason")
        )
        if df.height
        else df
    )
    skipped = skipped_lines(df.filter(pl.col("reason").is_not_null()), file.name)
    items = df.filter(pl.col("reason").is_null()).select(
        pl.col("movie_id").alias("listing_id"),
        pl.when(pl.col("title") == "").then(None).otherwise(pl.col("title")).alias("title"),
        pl.col("tags").list.first().alias("taxonomy_id"),
        "tags",
        "f_year",
    )
    return items, skipped


def _ml100k_items(file: Path) -> tuple[pl.DataFrame, list[SkippedLine]]:
    lines = read_lines(file, encoding="latin-1")
    names = list(ML100K_ITEM_FIELDS)
    flag_cols = [f"_g{i}" for i in range(len(GENRES))]
    df = _split(
        lines, "|", ["movie_id", "title", "release_date", "video_release_date", "imdb_url", *flag_cols]
    )
    flags_ok = (
        pl.all_horizontal([pl.col(c).is_in(["0", "1"]) for c in flag_cols]) if flag_cols else pl.lit(True)
    )
    year = pl.coalesce(
        pl.col("release_date").str.extract(r"(\d{4})\s*$"),
        pl.col("title").str.extract(r"\((\d{4})\)\s*$"),
    ).cast(pl.Float64, strict=False)
    df = df.with_columns(
        year.alias("f_year"),
        pl.concat_list(
            [
                pl.when(pl.col(c) == "1").then(pl.lit(g)).otherwise(None)
                for c, g in zip(flag_cols, GENRES, strict=True)
            ]
        )
        .list.drop_nulls()
        .alias("tags"),
    )
    checks: list[tuple[pl.Expr, str | pl.Expr]] = [
        (pl.col("bad_encoding"), "not valid latin-1 text"),
        (pl.col("text").str.strip_chars() == "", "empty line"),
        (
            pl.col("n_fields") != len(names),
            pl.format(
                f"expected {len(names)} |-separated fields (movie id, title, release date, video release "
                "date, IMDb URL, 19 genre flags), found {}",
                pl.col("n_fields"),
            ),
        ),
        (pl.col("movie_id") == "", "column 1 (movie id) is empty; expected an id"),
        (~flags_ok, "columns 6-24 (genre flags): expected 0 or 1"),
    ]
    return _finish_items(df, checks, file)


def _recbole_items(file: Path) -> tuple[pl.DataFrame, list[SkippedLine]]:
    names, body = _recbole_header(read_lines(file), file, ("item_id",))
    df = _split(body, "\t", names)
    title = pl.col("movie_title") if "movie_title" in names else pl.lit(None, dtype=pl.String)
    year = pl.col("release_year") if "release_year" in names else pl.lit(None, dtype=pl.String)
    genres = (
        pl.col("class").str.split(" ").list.eval(pl.element().filter(pl.element() != ""))
        if "class" in names
        else pl.lit([], dtype=pl.List(pl.String))
    )
    df = df.with_columns(
        pl.col("item_id").alias("movie_id"),
        title.alias("title"),
        year.str.extract(r"(\d{4})").cast(pl.Float64, strict=False).alias("f_year"),
        genres.alias("tags"),
    )
    checks: list[tuple[pl.Expr, str | pl.Expr]] = [
        (pl.col("bad_encoding"), "not valid UTF-8"),
        (pl.col("text").str.strip_chars() == "", "empty line"),
        (
            pl.col("n_fields") != len(names),
            pl.format(f"expected {len(names)} tab-separated fields, found {{}}", pl.col("n_fields")),
        ),
        (pl.col("movie_id") == "", f"column {names.index('item_id') + 1} (item_id) is empty; expected an id"),
    ]
    return _finish_items(df, checks, file)
