"""A representation table on disk: listing ids and vectors, plus the settings that made them.

    TABLE_DIR/                      format "parquet" (the default)
      vectors.parquet   listing_id: string, vector: fixed_size_list<float32>[d]
      table.json        {"name", "kind", "dim", "n", "settings": {...}, "format", "dtype"}

    TABLE_DIR/                      format "npy": for big tables (millions of rows)
      vectors.npy       (n, d) float32 or float16, loaded memory-mapped (np.load(mmap_mode="r"))
      ids.parquet       listing_id: string, in row order
      table.json

A memory-mapped table costs no memory to load: pages are read when rows are looked up (and are the page
cache's to drop), and with ``dtype="float16"`` the file is half the size. :func:`vocabulary_rows` maps a run's
listing vocabulary to table rows so ADPM component 2 can read such a table in place;
:func:`align_to_vocabulary` copies a table into vocabulary order (float32) instead.

Letters: n table rows, d width, V vocabulary rows.
"""

from __future__ import annotations

import json
import mmap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from adsformer.data.vocab import Vocabulary
from adsformer.errors import UserError
from adsformer.io import atomic_dir

TABLE_FORMATS = ("parquet", "npy")
TABLE_DTYPES = ("float32", "float16")
NPY_CHUNK_ROWS = 65_536


class TableError(UserError):
    """A representation table that cannot be used; the message names the table and the problem."""


@dataclass
class RepresentationTable:
    name: str
    kind: str
    ids: list[str]
    vectors: np.ndarray  # (n, d) float32; npy tables: float32 or float16, memory-mapped
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def memory_mapped(self) -> bool:
        return isinstance(self.vectors, np.memmap)

    def save(
        self,
        directory: str | Path,
        extra: Callable[[Path], None] | None = None,
        *,
        format: str = "parquet",
        dtype: str = "float32",
    ) -> Path:
        """Write the table atomically; ``extra(tmp_dir)`` may add files (a quality report) to the same write.

        ``format="npy"`` writes ``vectors.npy`` (memory-mapped on load) in ``dtype`` float32 or float16."""
        if len(self.ids) != self.vectors.shape[0]:
            raise TableError(f"table {self.name!r}: {len(self.ids)} ids but {self.vectors.shape[0]} vectors")
        if (
            format not in TABLE_FORMATS
            or dtype not in TABLE_DTYPES
            or (format == "parquet" and dtype != "float32")
        ):
            raise TableError(
                f"table {self.name!r}: format must be one of {TABLE_FORMATS} and dtype one of {TABLE_DTYPES} "
                f"(parquet holds float32 only); got {format!r}, {dtype!r}"
            )
        directory = Path(directory)
        with atomic_dir(directory) as tmp:
            ids = pa.array(self.ids, pa.string())
            if format == "npy":
                out = np.lib.format.open_memmap(
                    tmp / "vectors.npy", "w+", np.dtype(dtype), self.vectors.shape
                )
                for lo in range(0, len(self.ids), NPY_CHUNK_ROWS):  # bounded temporaries
                    out[lo : lo + NPY_CHUNK_ROWS] = self.vectors[lo : lo + NPY_CHUNK_ROWS]
                out.flush()
                del out
                pq.write_table(pa.table({"listing_id": ids}), tmp / "ids.parquet")
            else:
                vec = np.ascontiguousarray(self.vectors, dtype=np.float32)
                arr = pa.FixedSizeListArray.from_arrays(pa.array(vec.ravel()), self.dim)
                pq.write_table(pa.table({"listing_id": ids, "vector": arr}), tmp / "vectors.parquet")
            meta = {
                "name": self.name,
                "kind": self.kind,
                "dim": self.dim,
                "n": len(self.ids),
                "settings": self.settings,
                "format": format,
                "dtype": dtype,
            }
            (tmp / "table.json").write_text(json.dumps(meta, indent=2) + "\n")
            if extra is not None:
                extra(tmp)
        return directory

    @classmethod
    def load(cls, directory: str | Path, *, mmap: bool = True) -> RepresentationTable:
        """Read a table; an npy table is memory-mapped (``mmap=False`` reads it into memory)."""
        directory = Path(directory)
        meta = (
            json.loads((directory / "table.json").read_text()) if (directory / "table.json").exists() else {}
        )
        if (directory / "vectors.npy").exists():
            return cls._load_npy(directory, meta, mmap)
        if not (directory / "vectors.parquet").exists():
            raise TableError(f"{directory}: not a representation table (no vectors.parquet or vectors.npy)")
        t = pq.read_table(directory / "vectors.parquet")
        if "listing_id" not in t.column_names or "vector" not in t.column_names:
            raise TableError(
                f"{directory}/vectors.parquet: expected columns listing_id, vector; found {t.column_names}"
            )
        ids = t.column("listing_id").to_pylist()
        vec = np.asarray(
            t.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False), dtype=np.float32
        )
        n = len(ids)
        if n == 0:
            raise TableError(f"{directory}: the table is empty")
        vectors = vec.reshape(n, -1)
        return cls(
            meta.get("name", directory.name),
            meta.get("kind", "unknown"),
            ids,
            vectors,
            meta.get("settings", {}),
        )

    @classmethod
    def _load_npy(cls, directory: Path, meta: dict[str, Any], mmap: bool) -> RepresentationTable:
        if not (directory / "ids.parquet").exists():
            raise TableError(f"{directory}: vectors.npy without ids.parquet")
        vectors = np.load(directory / "vectors.npy", mmap_mode="r" if mmap else None)
        if mmap:
            _advise_random(vectors)
        ids = pq.read_table(directory / "ids.parquet").column("listing_id").to_pylist()
        if vectors.ndim != 2 or vectors.shape[0] != len(ids) or vectors.dtype not in (np.float32, np.float16):
            raise TableError(
                f"{directory}: vectors.npy is {vectors.dtype} {vectors.shape}; expected float32 or float16 "
                f"({len(ids)}, d) matching ids.parquet"
            )
        if not ids:
            raise TableError(f"{directory}: the table is empty")
        kind, settings = meta.get("kind", "unknown"), meta.get("settings", {})
        return cls(meta.get("name", directory.name), kind, ids, vectors, settings)


def _advise_random(array: np.ndarray) -> None:
    """Tell the kernel that rows are read at random: no read-ahead around each page a lookup touches (by
    default every fault reads ~128 KiB around it, and scattered lookups soon pull in the whole file)."""
    mapping = getattr(array, "_mmap", None)  # np.memmap keeps its mmap.mmap here
    if mapping is not None and hasattr(mmap, "MADV_RANDOM"):
        mapping.madvise(mmap.MADV_RANDOM)


def vocabulary_rows(table: RepresentationTable, vocab: Vocabulary) -> np.ndarray:
    """For each vocabulary row, its table row (V,) int64, -1 where the table lacks it (padding, OOV, unseen
    listings). Duplicate ids or a table sharing no id with the vocabulary are errors."""
    ids = pl.Series("id", table.ids, dtype=pl.String)
    dup = ids.filter(ids.is_duplicated()).unique().head(5).to_list()
    if dup:
        raise TableError(f"table {table.name!r}: duplicate listing ids, e.g. {dup}")
    index = vocab.encode(ids)  # unseen -> OOV buckets
    known = index > vocab.num_oov
    if not known.any():
        raise TableError(
            f"table {table.name!r} shares no listing id with the run's listing vocabulary "
            f"({len(vocab.ids)} ids, e.g. {list(vocab.ids[:3])}; table ids e.g. {table.ids[:3]}): "
            f"was it built from another dataset?"
        )
    rows = np.full(vocab.size, -1, np.int64)
    rows[index[known]] = np.flatnonzero(known)
    return rows


def align_to_vocabulary(table: RepresentationTable, vocab: Vocabulary) -> tuple[np.ndarray, np.ndarray]:
    """Vectors (V, d) in vocabulary order and ``present`` (V,): rows for padding, OOV and listings the table
    lacks are zero and marked absent. Duplicate ids or a table sharing no id with the vocabulary are errors."""
    rows = vocabulary_rows(table, vocab)  # (V,)
    present = rows >= 0
    vectors = np.zeros((vocab.size, table.dim), np.float32)
    vectors[present] = table.vectors[rows[present]]
    return vectors, present
