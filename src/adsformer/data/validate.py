"""Check a dataset directory against the data contract and name every problem; read it once it passes.

Each :class:`Problem` says which file, which column, which rows (0-based, the first few plus a count)
and what was expected. ``adsformer validate DIR`` prints them and exits non-zero when any is an error.

Beyond the column types the contract promises what training relies on, so a dataset that validates also
trains: integer ids are accepted (read as their decimal text, as :func:`read_dataset` does), float ids are refused by name; times are Unix *seconds* in [0, 2100-01-01) (values that look like
milliseconds, microseconds or nanoseconds are said to be); numbers are finite; every value fits its contract
type; there are events, some of them on listings; ``dataset.json`` has the right types.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from adsformer.data.schema import (
    EVENTS,
    IMPRESSIONS,
    LISTINGS,
    MANIFEST,
    TABLES,
    ColumnSpec,
    Dataset,
    DatasetMeta,
    column_spec,
    conform_column,
    conform_table,
    id_like,
    manifest_problems,
    read_meta,
)
from adsformer.errors import UserError

T = TypeVar("T")

MAX_ROWS_SHOWN = 5
#: Times are Unix seconds before 2100-01-01 (the sequence index packs time spans into 32 bits; see
#: adsformer.config.MAX_WINDOW_S)
MAX_TS = 4_102_444_800
#: The largest magnitude of a number column (beyond it, standardizing features overflows float64 sums)
MAX_ABS_NUMBER = 1e15


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
            where += f", {'key' if self.file == MANIFEST else 'column'} '{self.column}'"
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


class DatasetError(UserError):
    """A dataset that breaks the contract; ``str()`` lists every problem."""

    def __init__(self, report: ValidationReport) -> None:
        self.report = report
        lines = [f"{report.directory}: {len(report.errors)} problem(s) with the dataset"]
        lines += [f"  {p}" for p in report.errors]
        super().__init__("\n".join(lines))

    def one_line(self) -> str:
        errors = self.report.errors
        first = str(errors[0]).removeprefix("error: ") if errors else "unknown problem"
        if len(errors) == 1:
            if errors[0].file == str(self.report.directory):  # the directory itself (missing, a file)
                return first
            return f"{self.report.directory}/{first}"
        return (
            f"{self.report.directory}: {len(errors)} problems with the dataset, first {first}; "
            f"run `adsformer validate {self.report.directory}` to list them all"
        )


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
        """The table with every column that fits the contract cast to its contract type (what
        ``read_dataset`` returns), or None when the file cannot be read; problems are recorded."""
        file = f"{table}.parquet"
        path = self.directory / file
        if not path.exists():
            self.add(file, "file is missing")
            return None
        if not path.is_file():
            self.add(file, "is not a file; expected a Parquet file")
            return None
        if path.stat().st_size == 0:
            self.add(file, "file is empty (0 bytes); expected a Parquet file")
            return None
        try:
            arrow = pq.read_table(path)
        except (pa.ArrowException, OSError, ValueError) as exc:
            self.add(file, f"not a readable Parquet file ({' '.join(str(exc).split())})")
            return None
        self.report.rows[table] = arrow.num_rows
        repeated = sorted(n for n, k in Counter(arrow.column_names).items() if k > 1)
        for name in repeated:
            self.add(file, "column appears more than once; expected each column once", name)
        cols: dict[str, pa.ChunkedArray] = {}
        for name in arrow.column_names:
            if name in repeated or name in cols:
                continue
            spec = column_spec(table, name)
            if spec is None:
                self.add(file, "column is not part of the data contract (ignored)", name, severity="warning")
                continue
            col = self._conform(file, table, spec, arrow.column(name))
            if col is not None:
                cols[name] = col
        for spec in _required(table):
            if spec.name not in arrow.column_names:
                self.add(file, f"required column is missing (expected {spec.type})", spec.name)
        df = pl.from_arrow(pa.table(cols)) if cols else pl.DataFrame()
        assert isinstance(df, pl.DataFrame)
        if arrow.num_rows == 0:
            need = "; the sequence models read the users' actions: add events" if table == EVENTS else ""
            self.add(file, f"table has no rows{need}")
        for name in cols:
            spec = column_spec(table, name)
            assert spec is not None
            if not spec.nullable:
                self.add(file, "null value in a required id/time column", name, df, pl.col(name).is_null())
            if id_like(name) and pa.types.is_string(spec.type):
                self.add(file, "empty id; expected a non-empty string", name, df, pl.col(name) == "")
            if pa.types.is_floating(spec.type):
                bad = pl.col(name).is_not_null() & (
                    pl.col(name).is_nan() | (pl.col(name).abs() > MAX_ABS_NUMBER)
                )
                self.add(file, f"expected a finite number with |x| <= {MAX_ABS_NUMBER:g}", name, df, bad)
        return df

    def _conform(
        self, file: str, table: str, spec: ColumnSpec, col: pa.ChunkedArray
    ) -> pa.ChunkedArray | None:
        """``col`` in its contract type, or None (with the problem recorded) when its type or a value does
        not fit."""
        if not self._type_ok(file, spec, col.type, col):
            return None
        try:
            return conform_column(table, spec.name, col)
        except (pa.ArrowException, NotImplementedError, ValueError, OverflowError):
            pass
        # a value does not fit the contract type: name the rows (integers out of range)
        expected = spec.type
        if pa.types.is_integer(expected) and pa.types.is_integer(col.type):
            lo, hi = _int_range(expected)
            df = pl.from_arrow(pa.table({"v": col}))
            assert isinstance(df, pl.DataFrame)
            rows, n = _rows_where(df, (pl.col("v") < lo) | (pl.col("v") > hi))
            if n:
                message = f"value out of range for {expected} ({lo} .. {hi})"
                self.report.problems.append(Problem(file, message, spec.name, rows, n))
                return None
        self.add(file, f"values cannot be read as {expected} (found {col.type})", spec.name)
        return None

    def _type_ok(self, file: str, spec: ColumnSpec, actual: pa.DataType, col: pa.ChunkedArray) -> bool:
        expected = spec.type
        if pa.types.is_string(expected):
            good = _is_text(actual)
            if not good and id_like(spec.name):
                if pa.types.is_integer(actual):
                    return True  # read as the decimal text of each id
                if pa.types.is_floating(actual):
                    self.add(
                        file,
                        f"ids are floating-point numbers ({actual}); expected strings or integers (a float id "
                        f"such as 12.0 would not match the id 12): write the column as integers or strings",
                        spec.name,
                    )
                    return False
        elif pa.types.is_integer(expected):
            good = pa.types.is_integer(actual) or (pa.types.is_boolean(actual) and spec.name in LABELS)
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
            good = (pa.types.is_list(actual) or pa.types.is_large_list(actual)) and _is_text(
                actual.value_type
            )
        else:  # pragma: no cover - every contract type is one of the above
            good = actual == expected
        if not good:
            hint = (
                " (integer ids are fine too)" if id_like(spec.name) and pa.types.is_string(expected) else ""
            )
            self.add(file, f"expected type {expected}{hint}, found {actual}", spec.name)
        return good

    def check_listings(self, df: pl.DataFrame) -> None:
        f = "listings.parquet"
        if "listing_id" in df.columns:
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
        if "ts" not in df.columns:
            return
        self.add(file, "expected Unix seconds >= 0, found a negative value", "ts", df, pl.col("ts") < 0)
        late = pl.col("ts") >= MAX_TS
        top = df.select(pl.col("ts").max()).item()
        if top is None or top < MAX_TS:
            return
        for unit, factor in (("milliseconds", 10**3), ("microseconds", 10**6), ("nanoseconds", 10**9)):
            if top // factor < MAX_TS:
                message = f"times look like Unix {unit} (largest {top}); expected Unix seconds: divide by {factor:,}"
                break
        else:
            message = f"expected Unix seconds before 2100-01-01 (< {MAX_TS}), found up to {top}"
        self.add(file, message, "ts", df, late)

    def check_events(self, df: pl.DataFrame, meta: DatasetMeta) -> None:
        f = "events.parquet"
        self.check_time(f, df)
        if df.height and "listing_id" in df.columns and df["listing_id"].null_count() == df.height:
            self.add(
                f,
                "no event names a listing; the sequence models read the users' listing actions (view, "
                "favorite, ...): add them",
                "listing_id",
            )
        elif df.height and "listing_id" not in df.columns and not self._has_problem(f, "listing_id"):
            self.add(
                f,
                "no listing_id column; the sequence models read the users' listing actions (view, "
                "favorite, ...): add the column",
                "listing_id",
            )
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

    def check_overlap(self, events: pl.DataFrame, impressions: pl.DataFrame) -> None:
        """Some listing event must come before the last impression, or every sequence is empty (events and
        impressions in different time units, or years apart)."""
        if not {"ts", "listing_id"} <= set(events.columns) or "ts" not in impressions.columns:
            return
        if self._has_problem("events.parquet", "ts") or self._has_problem("impressions.parquet", "ts"):
            return
        first = events.filter(pl.col("listing_id").is_not_null())["ts"].min()
        last = impressions["ts"].max()
        if isinstance(first, int) and isinstance(last, int) and first >= last:
            self.add(
                "events.parquet",
                f"no listing event comes before the last impression (first listing event at ts {first}, last "
                f"impression at ts {last}): every user sequence would be empty; check both tables' times",
                "ts",
                severity="error" if first > last else "warning",
            )

    def _has_problem(self, file: str, column: str) -> bool:
        return any(p.file == file and p.column == column for p in self.report.problems)

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


#: Label columns that may be stored as booleans (read as 0 / 1)
LABELS = ("clicked", "purchased")


def _int_range(t: pa.DataType) -> tuple[int, int]:
    bits = t.bit_width
    if pa.types.is_unsigned_integer(t):
        return 0, 2**bits - 1
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def _is_text(t: pa.DataType) -> bool:
    """Plain, large, view or dictionary-encoded strings."""
    if pa.types.is_dictionary(t):
        return _is_text(t.value_type)
    return pa.types.is_string(t) or pa.types.is_large_string(t) or _is_string_view(t)


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
        checker.add(
            str(directory), "not a directory" if not directory.exists() else "is a file, not a directory"
        )
        return checker.report
    meta = DatasetMeta(name=directory.name, source="unknown")
    manifest = directory / MANIFEST
    if manifest.exists():
        meta = _check_manifest(checker, manifest, meta)
    else:
        checker.add(MANIFEST, "manifest missing: defaults used (no extra actions)", severity="warning")
    if meta.protocol.get("catalog_only"):  # a product catalog (fashion): listings for representations only
        listings = _guarded(checker, LISTINGS, checker.load, LISTINGS)
        if listings is not None:
            _guarded(checker, LISTINGS, checker.check_listings, listings)
        return checker.report
    listings = _guarded(checker, LISTINGS, checker.load, LISTINGS)
    events = _guarded(checker, EVENTS, checker.load, EVENTS)
    impressions = _guarded(checker, IMPRESSIONS, checker.load, IMPRESSIONS)
    if listings is not None:
        _guarded(checker, LISTINGS, checker.check_listings, listings)
    if events is not None:
        _guarded(checker, EVENTS, checker.check_events, events, meta)
    if impressions is not None:
        _guarded(checker, IMPRESSIONS, checker.check_impressions, impressions, listings)
    if events is not None and impressions is not None:
        _guarded(checker, EVENTS, checker.check_overlap, events, impressions)
    return checker.report


def _check_manifest(checker: _Checker, path: Path, default: DatasetMeta) -> DatasetMeta:
    """The manifest, with each key of the wrong type reported (``column`` = the key); ``default`` when it
    cannot be used."""
    try:
        obj = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        checker.add(MANIFEST, f"not valid JSON ({' '.join(str(exc).split())})")
        return default
    problems = manifest_problems(obj)
    for key, message in problems:
        checker.add(MANIFEST, message, key)
    return default if problems else DatasetMeta.from_json(obj)


def _guarded(checker: _Checker, table: str, check: Callable[..., T], *args: Any) -> T | None:
    """Run one table's check; anything it did not foresee is reported as a problem of that file, so the
    validator itself never fails on strange data."""
    try:
        return check(*args)
    except Exception as exc:  # reported, with its type, as a problem of the file
        checker.add(
            f"{table}.parquet", f"cannot be checked ({type(exc).__name__}: {' '.join(str(exc).split())})"
        )
        return None


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
    out = pl.from_arrow(conform_table(LISTINGS, arrow))
    assert isinstance(out, pl.DataFrame)
    return out


def read_dataset(directory: str | Path, *, validate: bool = True) -> Dataset:
    """Load a dataset directory. With ``validate`` (default) a broken dataset raises
    :class:`DatasetError` naming every problem."""
    directory = Path(directory)
    if validate:
        report = validate_dataset(directory)
        if not report.ok:
            raise DatasetError(report)
    tables = {}
    for name in TABLES:
        arrow = pq.read_table(directory / f"{name}.parquet")
        tables[name] = pl.from_arrow(conform_table(name, arrow))
    return Dataset(
        listings=tables[LISTINGS],  # type: ignore[arg-type]
        events=tables[EVENTS],  # type: ignore[arg-type]
        impressions=tables[IMPRESSIONS],  # type: ignore[arg-type]
        meta=read_meta(directory),
    )
