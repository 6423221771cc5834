"""The canonical dataset: three Parquet files and a small JSON manifest (SPEC section 5).

A dataset directory holds::

    listings.parquet     one row per listing
    events.parquet       one row per user action (the source of the short-term sequences)
    impressions.parquet  one row per ad shown (the labelled examples)
    dataset.json         name, source, extra action words, whether conversions exist, counts, notes

Ids are strings (integer ids are read as their decimal text), times are integer Unix seconds (UTC). Columns named ``f_*`` are numeric features,
``c_*`` categorical (string) features. The Arrow types below are what :func:`write_dataset` writes and what
:func:`adsformer.data.validate.read_dataset` returns, after checking the directory against them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from adsformer.errors import UserError
from adsformer.io import atomic_dir

FORMAT_VERSION = 1

LISTINGS = "listings"
EVENTS = "events"
IMPRESSIONS = "impressions"
TABLES = (LISTINGS, EVENTS, IMPRESSIONS)
MANIFEST = "dataset.json"

#: Actions every dataset may use without declaring them. Others must be listed in ``dataset.json``.
STANDARD_ACTIONS = ("view", "favorite", "cart_add", "purchase", "search")

#: Entity name -> the id column that carries it in events and listings.
ENTITY_COLUMNS = {"listing": "listing_id", "shop": "shop_id", "taxonomy": "taxonomy_id", "query": "query"}

FEATURE_PREFIX_NUMERIC = "f_"
FEATURE_PREFIX_CATEGORICAL = "c_"


@dataclass(frozen=True)
class ColumnSpec:
    """One column of the contract: its Arrow type and whether it must be present and non-null."""

    name: str
    type: pa.DataType
    required: bool = False
    nullable: bool = True


def _spec(*cols: ColumnSpec) -> dict[str, ColumnSpec]:
    return {c.name: c for c in cols}


COLUMNS: dict[str, dict[str, ColumnSpec]] = {
    LISTINGS: _spec(
        ColumnSpec("listing_id", pa.string(), required=True, nullable=False),
        ColumnSpec("shop_id", pa.string()),
        ColumnSpec("taxonomy_id", pa.string()),
        ColumnSpec("title", pa.string()),
        ColumnSpec("tags", pa.list_(pa.string())),
        ColumnSpec("price", pa.float64()),
        ColumnSpec("image_path", pa.string()),
        ColumnSpec("budget", pa.float64()),
    ),
    EVENTS: _spec(
        ColumnSpec("user_id", pa.string(), required=True, nullable=False),
        ColumnSpec("ts", pa.int64(), required=True, nullable=False),
        ColumnSpec("action", pa.string(), required=True, nullable=False),
        ColumnSpec("listing_id", pa.string()),
        ColumnSpec("shop_id", pa.string()),
        ColumnSpec("taxonomy_id", pa.string()),
        ColumnSpec("query", pa.string()),
    ),
    IMPRESSIONS: _spec(
        ColumnSpec("request_id", pa.string(), required=True, nullable=False),
        ColumnSpec("user_id", pa.string(), required=True, nullable=False),
        ColumnSpec("ts", pa.int64(), required=True, nullable=False),
        ColumnSpec("listing_id", pa.string(), required=True, nullable=False),
        ColumnSpec("clicked", pa.int8(), required=True, nullable=False),
        ColumnSpec("position", pa.int32()),
        ColumnSpec("query", pa.string()),
        ColumnSpec("purchased", pa.int8()),
        ColumnSpec("bid", pa.float64()),
    ),
}


def column_spec(table: str, name: str) -> ColumnSpec | None:
    """The contract for ``table.name``, including the open-ended ``f_*`` / ``c_*`` feature columns."""
    spec = COLUMNS[table].get(name)
    if spec is None and table in (LISTINGS, IMPRESSIONS):
        if name.startswith(FEATURE_PREFIX_NUMERIC):
            spec = ColumnSpec(name, pa.float64())
        elif name.startswith(FEATURE_PREFIX_CATEGORICAL):
            spec = ColumnSpec(name, pa.string())
    return spec


def id_like(name: str) -> bool:
    """Columns of ids and categories (``*_id``, ``c_*``): integer values are read as their decimal text."""
    return name.endswith("_id") or name.startswith(FEATURE_PREFIX_CATEGORICAL)


def conform_column(table: str, name: str, col: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """``col`` cast to the contract type of ``table.name``: integer ids to their decimal text, ``bool``
    labels to 0/1, integer numbers to float, large and dictionary strings to plain ones. Raises
    ``pyarrow.ArrowInvalid`` (or ``NotImplementedError``) when a value does not fit (e.g. 300 as int8)."""
    spec = column_spec(table, name)
    if spec is None:
        raise ValueError(f"{table}: column {name!r} is not part of the data contract")
    if pa.types.is_floating(spec.type) and pa.types.is_integer(col.type):
        return col.cast(spec.type, safe=False)  # 2^60 as a float: rounded, not refused
    return col.cast(spec.type)


def conform_table(table: str, arrow: pa.Table) -> pa.Table:
    """The contract's columns of ``arrow`` cast to their types (:func:`conform_column`); columns outside
    the contract are left out (``validate`` warns about them: "ignored")."""
    names = [n for n in arrow.column_names if column_spec(table, n) is not None]
    cols = [conform_column(table, name, arrow.column(name)) for name in names]
    return pa.Table.from_arrays(cols, schema=arrow_schema(table, names))


def arrow_schema(table: str, columns: list[str]) -> pa.Schema:
    """The canonical Arrow schema for the given columns of ``table`` (unknown columns raise)."""
    fields = []
    for name in columns:
        spec = column_spec(table, name)
        if spec is None:
            raise ValueError(f"{table}: column {name!r} is not part of the data contract")
        fields.append(pa.field(name, spec.type, nullable=spec.nullable))
    return pa.schema(fields)


@dataclass
class DatasetMeta:
    """What ``dataset.json`` says about a dataset."""

    name: str
    source: str
    actions: list[str] = field(default_factory=list)  # extra action words beyond STANDARD_ACTIONS
    has_conversions: bool = True
    notes: list[str] = field(default_factory=list)
    protocol: dict[str, Any] = field(default_factory=dict)  # how impressions/labels were made, with seeds
    counts: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    @property
    def allowed_actions(self) -> set[str]:
        return set(STANDARD_ACTIONS) | set(self.actions)

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "name": self.name,
            "source": self.source,
            "actions": list(self.actions),
            "has_conversions": self.has_conversions,
            "notes": list(self.notes),
            "protocol": self.protocol,
            "counts": self.counts,
        }

    @classmethod
    def from_json(cls, obj: Any) -> DatasetMeta:
        """The manifest from its parsed JSON; :class:`ManifestError` names the first key of the wrong type
        (see :func:`manifest_problems`)."""
        problems = manifest_problems(obj)
        if problems:
            key, message = problems[0]
            raise ManifestError(f"{MANIFEST}: {key!r} {message}" if key else f"{MANIFEST}: {message}")
        return cls(
            name=obj.get("name", ""),
            source=obj.get("source", ""),
            actions=list(obj.get("actions", [])),
            has_conversions=obj.get("has_conversions", True),
            notes=list(obj.get("notes", [])),
            protocol=dict(obj.get("protocol", {})),
            counts=dict(obj.get("counts", {})),
            format_version=obj.get("format_version", FORMAT_VERSION),
        )


class ManifestError(UserError):
    """A ``dataset.json`` that is not valid JSON or has a key of the wrong type."""


def manifest_problems(obj: Any) -> list[tuple[str | None, str]]:
    """``(key, what is wrong)`` for every key of a parsed ``dataset.json`` with the wrong type (key None:
    the whole document). Unknown keys are allowed (adapters record extra facts)."""
    if not isinstance(obj, dict):
        return [(None, f"expected a JSON object at the top level, found {type(obj).__name__}")]
    out: list[tuple[str | None, str]] = []

    def strings(value: Any) -> bool:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)

    for key in ("name", "source"):
        if key in obj and not isinstance(obj[key], str):
            out.append((key, f"expected a string, found {obj[key]!r}"))
    if "actions" in obj:
        actions = obj["actions"]
        if isinstance(actions, str):
            out.append(
                (
                    "actions",
                    f'expected a list of action words, e.g. ["{actions}"], found the string {actions!r}',
                )
            )
        elif not strings(actions) or not all(a.strip() for a in actions):
            out.append(("actions", f"expected a list of non-empty action words, found {actions!r}"))
    if "has_conversions" in obj and not isinstance(obj["has_conversions"], bool):
        out.append(("has_conversions", f"expected true or false, found {obj['has_conversions']!r}"))
    if "notes" in obj and not strings(obj["notes"]):
        out.append(("notes", f"expected a list of strings, found {obj['notes']!r}"))
    for key in ("protocol", "counts"):
        if key in obj and not isinstance(obj[key], dict):
            out.append((key, f"expected a JSON object, found {obj[key]!r}"))
    if "format_version" in obj:
        version = obj["format_version"]
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            out.append(("format_version", f"expected a positive integer, found {version!r}"))
        elif version > FORMAT_VERSION:
            out.append(
                (
                    "format_version",
                    f"is {version}, newer than this adsformer reads ({FORMAT_VERSION}); upgrade adsformer",
                )
            )
    return out


@dataclass
class Dataset:
    """The three canonical tables in memory (polars) plus the manifest."""

    listings: pl.DataFrame
    events: pl.DataFrame
    impressions: pl.DataFrame
    meta: DatasetMeta

    def table(self, name: str) -> pl.DataFrame:
        return {LISTINGS: self.listings, EVENTS: self.events, IMPRESSIONS: self.impressions}[name]

    def summary(self) -> dict[str, Any]:
        """Headline counts: users, listings, events, impressions, clicks, CTR (and purchases where known)."""
        imp = self.impressions
        n_imp = imp.height
        clicks = int(imp["clicked"].sum()) if n_imp else 0
        users = pl.concat([self.events["user_id"], imp["user_id"]]).n_unique()
        out: dict[str, Any] = {
            "users": users,
            "listings": self.listings.height,
            "events": self.events.height,
            "impressions": n_imp,
            "requests": imp["request_id"].n_unique() if n_imp else 0,
            "clicks": clicks,
            "ctr": clicks / n_imp if n_imp else 0.0,
        }
        if self.meta.has_conversions and "purchased" in imp.columns:
            purchases = int(imp["purchased"].fill_null(0).sum())
            out["purchases"] = purchases
            out["cvr_per_click"] = purchases / clicks if clicks else 0.0
        if self.events.height:
            out["actions"] = dict(
                self.events.group_by("action").len().sort("len", descending=True).iter_rows()
            )
        return out


def empty_table(table: str) -> pl.DataFrame:
    """A table with its required columns and no rows (a catalog-only dataset's events and impressions)."""
    names = [spec.name for spec in COLUMNS[table].values() if spec.required]
    out = pl.from_arrow(arrow_schema(table, names).empty_table())
    assert isinstance(out, pl.DataFrame)
    return out


def to_arrow(table: str, df: pl.DataFrame) -> pa.Table:
    """Cast a polars frame to the canonical Arrow schema of ``table`` (raises on a lossy or unknown cast)."""
    arrow = df.to_arrow()
    schema = arrow_schema(table, df.columns)
    # polars writes large_string / large_list; the contract uses the plain variants.
    return arrow.cast(schema, safe=True)


def write_tables(ds: Dataset, directory: Path) -> None:
    """Write the tables and manifest into an existing directory (use inside :func:`atomic_dir`)."""
    for name in TABLES:
        pq.write_table(to_arrow(name, ds.table(name)), directory / f"{name}.parquet", compression="zstd")
    meta = ds.meta
    meta.counts = ds.summary()
    (directory / MANIFEST).write_text(json.dumps(meta.to_json(), indent=2) + "\n")


def write_dataset(ds: Dataset, out_dir: str | Path) -> Path:
    """Write ``ds`` as a canonical dataset directory, atomically. Returns the directory."""
    out = Path(out_dir)
    with atomic_dir(out) as tmp:
        write_tables(ds, tmp)
    return out


def read_meta(directory: str | Path) -> DatasetMeta:
    """The manifest of a dataset directory (defaults when it has none); :class:`ManifestError` when it is
    unreadable, not JSON, or has a key of the wrong type."""
    path = Path(directory) / MANIFEST
    if not path.exists():
        return DatasetMeta(name=Path(directory).name, source="unknown")
    try:
        obj = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path}: not a readable JSON file ({exc})") from exc
    try:
        return DatasetMeta.from_json(obj)
    except ManifestError as exc:
        raise ManifestError(f"{Path(directory)}/{exc}") from None
