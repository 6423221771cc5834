"""Fashion Product Images (small): a product catalog for the text, visual and AIR representations.

Input folder: ``styles.csv`` (``id, gender, masterCategory, subCategory, articleType, baseColour, season,
year, usage``), ``styles_text.csv`` (one ``productDisplayName`` per row, same order) and ``images/ID.jpg``.

The catalog has no behaviour, so the output is a *catalog-only* dataset: ``listings.parquet`` (plus empty
events and impressions, and ``protocol.catalog_only = true`` in ``dataset.json``) with

- ``taxonomy_id`` = ``masterCategory/subCategory/articleType``; ``title`` = the display name;
  ``tags`` = gender, season, usage;
- ``c_gender``, ``c_color`` (baseColour), ``c_subcategory``, ``c_article_type``, ``c_usage``, ``c_season``
  (the visual model's classification labels) and ``f_year``;
- ``image_path`` = ``images/ID.jpg`` where the image exists (images are copied into the dataset).

Rows whose line is malformed (wrong number of fields, non-numeric id, duplicate id) are skipped and
reported.
"""

from __future__ import annotations

import shutil
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
from adsformer.data.schema import DatasetMeta, empty_table

NAME = "fashion"
COLUMNS = [
    "id",
    "gender",
    "masterCategory",
    "subCategory",
    "articleType",
    "baseColour",
    "season",
    "year",
    "usage",
]
LABELS = {
    "c_gender": "gender",
    "c_color": "baseColour",
    "c_subcategory": "subCategory",
    "c_article_type": "articleType",
    "c_usage": "usage",
    "c_season": "season",
}


def prepare_fashion(
    path: str | Path, out: str | Path, *, images: bool = True, progress: Progress | None = None
) -> AdapterResult:
    """``path``: the fashion folder. Writes the catalog-only dataset to ``out`` atomically."""
    path, out = Path(path), Path(out)
    say = progress_or_noop(progress)
    styles_file, titles_file = path / "styles.csv", path / "styles_text.csv"
    for f in (styles_file, titles_file):
        if not f.exists():
            raise AdapterError(f"{f}: file is missing (expected the Fashion Product Images folder)")
    say(f"reading {styles_file.name}")
    styles, skipped = _styles(styles_file)
    titles = _titles(titles_file)
    if titles.height != styles.height + len(skipped):
        raise AdapterError(
            f"{titles_file.name}: {titles.height} titles but {styles.height + len(skipped)} rows in "
            f"{styles_file.name}; expected one title per row, in the same order"
        )
    frame = styles.join(titles, on="line_no", how="left")
    dup = frame.filter(pl.col("line_no") != pl.col("line_no").min().over("id"))
    skipped += [
        SkippedLine(styles_file.name, int(ln), "duplicate id (the first row is kept)", str(i))
        for ln, i in dup.select("line_no", "id").iter_rows()
    ]
    frame = frame.filter(pl.col("line_no") == pl.col("line_no").min().over("id"))
    image_dir = path / "images"
    have = {p.stem for p in image_dir.glob("*.jpg")} if images and image_dir.is_dir() else set()
    listings = frame.select(
        pl.col("id").alias("listing_id"),
        pl.concat_str(["masterCategory", "subCategory", "articleType"], separator="/").alias("taxonomy_id"),
        pl.col("title"),
        pl.concat_list([pl.col(c).fill_null("") for c in ("gender", "season", "usage")])
        .list.eval(pl.element().filter(pl.element() != ""))
        .alias("tags"),
        *[pl.col(src).alias(dst) for dst, src in LABELS.items()],
        pl.col("year").cast(pl.Float64, strict=False).alias("f_year"),
        pl.when(pl.col("id").is_in(list(have)))
        .then(pl.lit("images/") + pl.col("id") + pl.lit(".jpg"))
        .otherwise(None)
        .alias("image_path"),
    )
    n_images = int(listings["image_path"].is_not_null().sum())
    notes = [
        "Catalog only: no events and no impressions (for `adsformer represent text|visual|air`).",
        f"{listings.height:,} products, {n_images:,} with an image; taxonomy = masterCategory/subCategory/"
        "articleType.",
        *skipped_notes(skipped),
    ]
    meta = DatasetMeta(
        name=NAME,
        source="Fashion Product Images (small)",
        has_conversions=False,
        notes=notes,
        protocol={"catalog_only": True, "source_files": [styles_file.name, titles_file.name, "images/"]},
    )

    def copy_images(tmp: Path) -> None:
        (tmp / "images").mkdir()
        for rel in listings["image_path"].drop_nulls():
            shutil.copyfile(path / rel, tmp / rel)

    return publish(
        (listings, empty_table("events"), empty_table("impressions")),
        meta,
        out,
        say,
        skipped,
        extra=copy_images if n_images else None,
        writing=f" (copying {n_images:,} images)" if n_images else "",
    )


def _styles(file: Path) -> tuple[pl.DataFrame, list[SkippedLine]]:
    lines = read_lines(file)
    if lines.height == 0:
        raise AdapterError(f"{file.name}: file is empty; expected a header line {','.join(COLUMNS)}")
    header = lines["text"][0].split(",")
    if header != COLUMNS:
        raise AdapterError(f"{file.name}, line 1: header is {header}; expected {COLUMNS}")
    body = lines.slice(1).with_columns(pl.col("text").str.split(",").alias("fields"))
    n_fields = pl.col("fields").list.len()
    reason = first_reason(
        [
            (pl.col("bad_encoding"), "not valid UTF-8"),
            (
                n_fields != len(COLUMNS),
                pl.format("expected {} fields, found {}", pl.lit(len(COLUMNS)), n_fields),
            ),
            (~pl.col("fields").list.first().str.contains(r"^\d+$"), "id is not a number"),
        ]
    )
    body = body.with_columns(reason.alias("reason"))
    bad = body.filter(pl.col("reason").is_not_null())
    good = body.filter(pl.col("reason").is_null()).select(
        "line_no", *[pl.col("fields").list.get(i).alias(c) for i, c in enumerate(COLUMNS)]
    )
    good = good.with_columns(
        [pl.when(pl.col(c) == "").then(None).otherwise(pl.col(c)).alias(c) for c in COLUMNS[1:]]
    )
    return good, skipped_lines(bad, file.name)


def _titles(file: Path) -> pl.DataFrame:
    try:
        titles = pl.read_csv(file, infer_schema=False, quote_char='"')
    except pl.exceptions.PolarsError as exc:
        raise AdapterError(f"{file.name}: not a readable CSV ({exc})") from exc
    if titles.columns != ["productDisplayName"]:
        raise AdapterError(f"{file.name}: columns {titles.columns}; expected ['productDisplayName']")
    return titles.select(
        (pl.int_range(pl.len()) + 2).cast(pl.Int64).alias("line_no"),  # data rows start on line 2
        pl.col("productDisplayName").alias("title"),
    )
