"""Check a dataset directory against the data contract and name every problem.

Each :class:`Problem` says which file, which column, which rows (0-based, the first few plus a count)
and what was expected. ``adsformer validate DIR`` prints them and exits non-zero when any is an error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from adsformer.data.schema import (
    EVENTS,
    LISTINGS,
    MANIFEST,
    TABLES,
    ColumnSpec,
    DatasetMeta,
    arrow_schema,
    column_spec,
)

MAX_ROWS_SHOWN = 5


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset, located as precisely as the data allows."""

    file: str
    message: str
    column: str | None = None
    rows: tuple[int, ...] = ()
    n_rows: int = 0
    severity: str = "error"  # "error" or "warning"

    def __str__(self) -> str:
        where = self.file
        if self.column is not None:
            where += f", column '{self.column}'"
        if self.n_rows:
            shown = ", ".join(str(r) for r in self.rows)
            more = f" ... ({self.n_rows} rows)" if self.n_rows > len(self.rows) else ""
            where += f", row{'s' if self.n_rows > 1 else ''} {shown}{more}"
        return f"{self.severity}: {where}: {self.message}"


@dataclass
class ValidationReport:
    directory: Path
    problems: list[Problem] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors


class DatasetError(ValueError):
    """A dataset that breaks the contract; ``str()`` lists every problem."""

    def __init__(self, report: ValidationReport) -> None:
        self.report = report
        lines = [f"{report.directory}: {len(report.errors)} problem(s) with the dataset"]
        lines += [f"  {p}" for p in report.errors]
        super().__init__("\n".join(lines))


def _rows_where(df: pl.DataFrame, mask: pl.Expr) -> tuple[tuple[int, ...], int]:
    idx = df.with_row_index("__row").filter(mask)["__row"]
    return tuple(int(i) for i in idx.head(MAX_ROWS_SHOWN)), idx.len()


class _Checker:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.report = ValidationReport(directory)

    def add(
        self,
        file: str,
        message: str,
        column: str | None = None,
        mask_df=None,
        mask=None,
        severity: str = "error",
    ) -> None:
        rows: tuple[int, ...] = ()
        n = 0
        if mask_df is not None and mask is not None:
            rows, n = _rows_where(mask_df, mask)
            if n == 0:
                return
        self.report.problems.append(Problem(file, message, column, rows, n, severity))

    # -- per-table checks -------------------------------------------------------------------------
    def load(self, table: str) -> pl.DataFrame | None:
        file = f"{table}.parquet"
        path = self.directory / file
        if not path.exists():
            self.add(file, "file is missing")
            return None
        if path.stat().st_size == 0:
            self.add(file, "file is empty (0 bytes); expected a Parquet file")
            return None
        try:
            arrow = pq.read_table(path)
        except (pa.ArrowInvalid, OSError) as exc:
            self.add(file, f"not a readable Parquet file ({exc})")
            return None
        self.report.rows[table] = arrow.num_rows
        ok_cols = []
        for name in arrow.column_names:
            spec = column_spec(table, name)
            if spec is None:
                self.add(file, "column is not part of the data contract (ignored)", name, severity="warning")
                continue
            if self._type_ok(file, spec, arrow.schema.field(name).type, arrow.column(name)):
                ok_cols.append(name)
        for spec in _required(table):
            if spec.name not in arrow.column_names:
                self.add(file, f"required column is missing (expected {spec.type})", spec.name)
        df = pl.from_arrow(arrow.select(ok_cols))
        assert isinstance(df, pl.DataFrame)
        if df.height == 0:
            self.add(file, "table has no rows", severity="error" if table != EVENTS else "warning")
        for name in ok_cols:
            spec = column_spec(table, name)
            assert spec is not None
            if not spec.nullable:
                self.add(file, "null value in a required id/time column", name, df, pl.col(name).is_null())
        return df

    def _type_ok(self, file: str, spec: ColumnSpec, actual: pa.DataType, col: pa.ChunkedArray) -> bool:
        expected = spec.type
        if pa.types.is_string(expected):
            good = pa.types.is_string(actual) or pa.types.is_large_string(actual) or _is_string_view(actual)
        elif pa.types.is_integer(expected):
            good = pa.types.is_integer(actual)
            if not good and pa.types.is_floating(actual):
                df = pl.from_arrow(pa.table({"v": col}))
                assert isinstance(df, pl.DataFrame)
                frac = pl.col("v").is_not_null() & (pl.col("v") != pl.col("v").floor())
                rows, n = _rows_where(df, frac)
                detail = f"; {n} row(s) are not whole numbers, e.g. rows {list(rows)}" if n else ""
                self.report.problems.append(
                    Problem(
                        file,
                        f"expected integer type ({expected}), found {actual}{detail}",
                        spec.name,
                        rows,
                        n,
                    )
                )
                return False
        elif pa.types.is_floating(expected):
            good = pa.types.is_integer(actual) or pa.types.is_floating(actual)
        elif pa.types.is_list(expected):
            good = (pa.types.is_list(actual) or pa.types.is_large_list(actual)) and (
                pa.types.is_string(actual.value_type) or pa.types.is_large_string(actual.value_type)
            )
        else:  # pragma: no cover - every contract type is one of the above
            good = actual == expected
        if not good:
            self.add(file, f"expected type {expected}, found {actual}", spec.name)
        return good

    def check_listings(self, df: pl.DataFrame) -> None:
        f = "listings.parquet"
        dup = pl.col("listing_id").is_duplicated() & pl.col("listing_id").is_not_null()
        self.add(f, "listing_id is not unique", "listing_id", df, dup)
        for col in ("price", "budget"):
            if col in df.columns:
                self.add(f, "expected a value >= 0", col, df, pl.col(col) < 0)
        if "image_path" in df.columns:
            paths = df.select(pl.col("image_path")).with_row_index("__row").drop_nulls("image_path")
            absolute = paths.filter(pl.col("image_path").str.starts_with("/"))
            if absolute.height:
                self.report.problems.append(
                    Problem(
                        f,
                        "image_path must be relative to the dataset directory",
                        "image_path",
                        tuple(int(r) for r in absolute["__row"].head(MAX_ROWS_SHOWN)),
                        absolute.height,
                    )
                )
            missing = [
                int(r)
                for r, p in paths.iter_rows()
                if not p.startswith("/") and not (self.directory / p).is_file()
            ]
            if missing:
                self.report.problems.append(
                    Problem(
                        f,
                        "image file does not exist",
                        "image_path",
                        tuple(missing[:MAX_ROWS_SHOWN]),
                        len(missing),
                    )
                )

    def check_time(self, file: str, df: pl.DataFrame) -> None:
        if "ts" in df.columns:
            self.add(file, "expected Unix seconds >= 0, found a negative value", "ts", df, pl.col("ts") < 0)

    def check_events(self, df: pl.DataFrame, meta: DatasetMeta) -> None:
        f = "events.parquet"
        self.check_time(f, df)
        if "action" in df.columns:
            allowed = sorted(meta.allowed_actions)
            bad = pl.col("action").is_not_null() & ~pl.col("action").is_in(allowed)
            unknown = df.filter(bad)["action"].unique().sort().head(10).to_list()
            self.add(
                f,
                f"unknown action {unknown}; expected one of {allowed} "
                f"(declare extra actions in {MANIFEST} 'actions')",
                "action",
                df,
                bad,
            )

    def check_impressions(self, df: pl.DataFrame, listings: pl.DataFrame | None) -> None:
        f = "impressions.parquet"
        self.check_time(f, df)
        for col in ("clicked", "purchased"):
            if col in df.columns:
                self.add(
                    f, "expected 0 or 1", col, df, pl.col(col).is_not_null() & ~pl.col(col).is_in([0, 1])
                )
        if {"clicked", "purchased"} <= set(df.columns):
            self.add(
                f,
                "purchased = 1 on an impression that was not clicked (purchases are post-click)",
                "purchased",
                df,
                (pl.col("purchased") == 1) & (pl.col("clicked") == 0),
            )
        if "position" in df.columns:
            self.add(f, "expected a position >= 1 (1 = top slot)", "position", df, pl.col("position") < 1)
        if "bid" in df.columns:
            self.add(f, "expected a bid >= 0", "bid", df, pl.col("bid") < 0)
        if {"request_id", "user_id", "ts"} <= set(df.columns):
            inconsistent = (pl.col("user_id").n_unique().over("request_id") > 1) | (
                pl.col("ts").n_unique().over("request_id") > 1
            )
            self.add(
                f, "impressions of one request_id must share user_id and ts", "request_id", df, inconsistent
            )
        if listings is not None and "listing_id" in df.columns and "listing_id" in listings.columns:
            unknown = pl.col("listing_id").is_not_null() & ~pl.col("listing_id").is_in(
                listings["listing_id"].implode()
            )
            self.add(f, "listing_id not found in listings.parquet", "listing_id", df, unknown)


def _required(table: str) -> list[ColumnSpec]:
    from adsformer.data.schema import COLUMNS

    return [c for c in COLUMNS[table].values() if c.required]


def _is_string_view(t: pa.DataType) -> bool:
    return bool(getattr(pa.types, "is_string_view", lambda _t: False)(t))


def validate_dataset(directory: str | Path) -> ValidationReport:
    """Check every file of a dataset directory; never raises for bad data, only reports."""
    directory = Path(directory)
    checker = _Checker(directory)
    if not directory.is_dir():
        checker.add(str(directory), "not a directory")
        return checker.report
    meta = DatasetMeta(name=directory.name, source="unknown")
    manifest = directory / MANIFEST
    if manifest.exists():
        try:
            meta = DatasetMeta.from_json(json.loads(manifest.read_text()))
        except (json.JSONDecodeError, TypeError, ValueError) as exc:
            checker.add(MANIFEST, f"not valid JSON ({exc})")
    else:
        checker.add(MANIFEST, "manifest missing: defaults used (no extra actions)", severity="warning")
    if meta.protocol.get("catalog_only"):  # a product catalog (fashion): listings for representations only
        listings = checker.load(LISTINGS)
        if listings is not None:
            checker.check_listings(listings)
        return checker.report
    listings, events, impressions = (checker.load(name) for name in TABLES)
    if listings is not None:
        checker.check_listings(listings)
    if events is not None:
        checker.check_events(events, meta)
    if impressions is not None:
        checker.check_impressions(impressions, listings)
    return checker.report


def read_listings(directory: str | Path) -> pl.DataFrame:
    """The validated ``listings.parquet`` of a dataset or catalog directory (what representations need);
    raises :class:`DatasetError` naming the problems."""
    directory = Path(directory)
    checker = _Checker(directory)
    if not directory.is_dir():
        checker.add(str(directory), "not a directory")
        raise DatasetError(checker.report)
    listings = checker.load(LISTINGS)
    if listings is not None:
        checker.check_listings(listings)
    if not checker.report.ok:
        raise DatasetError(checker.report)
    arrow = pq.read_table(directory / f"{LISTINGS}.parquet")
    out = pl.from_arrow(arrow.cast(arrow_schema(LISTINGS, arrow.column_names)))
    assert isinstance(out, pl.DataFrame)
    return out
