"""A representation table on disk: listing ids and float32 vectors, plus the settings that made them.

    TABLE_DIR/
      vectors.parquet   listing_id: string, vector: fixed_size_list<float32>[d]
      table.json        {"name", "kind", "dim", "n", "settings": {...}}

:func:`align_to_vocabulary` re-indexes a table to a run's listing vocabulary for ADPM component 2.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from adsformer.data.vocab import Vocabulary
from adsformer.io import atomic_dir


class TableError(ValueError):
    """A representation table that cannot be used; the message names the table and the problem."""


@dataclass
class RepresentationTable:
    name: str
    kind: str
    ids: list[str]
    vectors: np.ndarray  # (n, d) float32
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def save(self, directory: str | Path, extra: Callable[[Path], None] | None = None) -> Path:
        """Write the table atomically; ``extra(tmp_dir)`` may add files (a quality report) to the same write."""
        if len(self.ids) != self.vectors.shape[0]:
            raise TableError(f"table {self.name!r}: {len(self.ids)} ids but {self.vectors.shape[0]} vectors")
        directory = Path(directory)
        vec = np.ascontiguousarray(self.vectors, dtype=np.float32)
        arr = pa.FixedSizeListArray.from_arrays(pa.array(vec.ravel()), self.dim)
        with atomic_dir(directory) as tmp:
            pq.write_table(
                pa.table({"listing_id": pa.array(self.ids, pa.string()), "vector": arr}),
                tmp / "vectors.parquet",
            )
            meta = {
                "name": self.name,
                "kind": self.kind,
                "dim": self.dim,
                "n": len(self.ids),
                "settings": self.settings,
            }
            (tmp / "table.json").write_text(json.dumps(meta, indent=2) + "\n")
            if extra is not None:
                extra(tmp)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> RepresentationTable:
        directory = Path(directory)
        if not (directory / "vectors.parquet").exists():
            raise TableError(f"{directory}: not a representation table (no vectors.parquet)")
        meta = (
            json.loads((directory / "table.json").read_text()) if (directory / "table.json").exists() else {}
        )
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


def align_to_vocabulary(table: RepresentationTable, vocab: Vocabulary) -> tuple[np.ndarray, np.ndarray]:
    """Vectors (V, d) in vocabulary order and ``present`` (V,): rows for padding, OOV and listings the table
    lacks are zero and marked absent. Duplicate ids or a table sharing no id with the vocabulary are errors."""
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
    vectors = np.zeros((vocab.size, table.dim), np.float32)
    present = np.zeros(vocab.size, bool)
    vectors[index[known]] = table.vectors[known]
    present[index[known]] = True
    return vectors, present
