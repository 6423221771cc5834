"""A feature store on disk, and training data streamed from it with bounded memory.

``adsformer features`` (the feature job, local or Spark engine) writes every model input of every
impression once::

    FEAT_DIR/
      features.parquet   one row per impression, in row groups of ``row_group_rows``
      store.json         format, data config, feature names, statistics, row counts per split and task
      vocab/             the vocabularies (adsformer.data.vocab)

Columns: ``clicked``, ``purchased`` (when the data has conversions), ``ts``, ``position``, ``split`` (0 train,
1 validation, 2 test), ``train_keep`` (negative down-sampling), ``t:<entity>`` (target listing ids),
``c:<name>`` (query and ``c_*`` ids), ``dense`` (F standardized floats) and ``s:<entity>:<action>`` (the
sequence: a list of ids, newest first, at most M).

:class:`StreamSource` feeds :func:`adsformer.training.loop.train` from the store: each epoch it visits the
row groups holding training rows in a shuffled order, reads ``buffer_rows`` of them at a time (only the
training rows are kept), shuffles inside the buffer and yields full batches; the few rows left over are
carried into the next buffer, so every training row is seen once per epoch and every batch but the last is
full. Memory is the buffer plus the model, whatever the size of the file. Validation streams the same way.

Letters: N impressions, n rows of a chunk, F dense features, M max sequence length.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from adsformer.config import ConfigError, DataConfig, Task, from_dict, to_dict
from adsformer.data.features import FeatureInfo, FeatureSet
from adsformer.data.sequences import SequenceColumn
from adsformer.data.splits import TEST, TRAIN, VAL, Split
from adsformer.data.vocab import Vocabularies
from adsformer.io import atomic_dir

FORMAT_VERSION = 1
DATA_FILE, META_FILE = "features.parquet", "store.json"
SPLITS = {"train": TRAIN, "val": VAL, "test": TEST}


class StoreError(ConfigError):
    """A feature store that cannot be read; the message names the directory and the problem."""


def is_store(path: str | Path) -> bool:
    """Whether ``path`` is a feature store (rather than a canonical dataset directory)."""
    return (Path(path) / META_FILE).is_file() and (Path(path) / DATA_FILE).is_file()


def _counts(fs: FeatureSet) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for task in ("ctr", "pccvr"):
        if task == "pccvr" and fs.purchased is None:
            continue
        rows = {name: fs.rows(name, task) for name in SPLITS}
        labels = fs.labels(task)
        out[task] = {name: int(r.size) for name, r in rows.items()}
        out[task]["train_positives"] = int(labels[rows["train"]].sum())
    return out


def _table(fs: FeatureSet, lo: int, hi: int) -> pa.Table:
    """Rows [lo, hi) of ``fs`` as an Arrow table in the store's layout."""
    rows = np.arange(lo, hi)
    cols: dict[str, pa.Array] = {
        "clicked": pa.array(fs.clicked[lo:hi]),
        "ts": pa.array(fs.ts[lo:hi]),
        "position": pa.array(fs.position[lo:hi]),
        "split": pa.array(fs.split.split[lo:hi]),
        "train_keep": pa.array(fs.train_keep[lo:hi]),
    }
    if fs.purchased is not None:
        cols["purchased"] = pa.array(fs.purchased[lo:hi])
    cols |= {f"t:{k}": pa.array(v[lo:hi]) for k, v in fs.target.items()}
    cols |= {f"c:{k}": pa.array(v[lo:hi]) for k, v in fs.categorical.items()}
    dense = np.ascontiguousarray(fs.dense[lo:hi], dtype=np.float32)  # (n, F)
    if dense.shape[1] == 0:  # no dense feature: a width-1 column of zeros keeps the layout the same
        dense = np.zeros((hi - lo, 1), np.float32)
    cols["dense"] = pa.FixedSizeListArray.from_arrays(pa.array(dense.ravel()), dense.shape[1])
    touch = np.ascontiguousarray(fs.touch[lo:hi], dtype=np.float32).reshape(hi - lo, -1)  # (n, 2P)
    if touch.shape[1]:
        cols["touch"] = pa.FixedSizeListArray.from_arrays(pa.array(touch.ravel()), touch.shape[1])
    for name, column in fs.sequences.items():
        ids, lengths = column.padded(rows, trim=True)  # (n, M_b) newest first, (n,)
        valid = np.arange(ids.shape[1])[None, :] < lengths[:, None]  # (n, M_b)
        offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int32)
        cols[f"s:{name}"] = pa.ListArray.from_arrays(pa.array(offsets), pa.array(ids[valid]))
    return pa.table(cols)


def write_store(
    fs: FeatureSet,
    out: str | Path,
    data_cfg: DataConfig,
    *,
    dataset: str = "",
    engine: str = "local",
    row_group_rows: int = 65_536,
) -> Path:
    """Write ``fs`` as a feature store directory (atomically), one row group per ``row_group_rows`` rows."""
    if row_group_rows < 1:
        raise ValueError(f"row_group_rows must be >= 1, got {row_group_rows}")
    out = Path(out)
    meta = {
        "format_version": FORMAT_VERSION,
        "dataset": dataset,
        "engine": engine,
        "n": fs.n,
        "row_group_rows": row_group_rows,
        "data": to_dict(data_cfg),
        "dense_names": fs.dense_names,
        "dense_width": int(fs.dense.shape[1]),
        "targets": list(fs.target),
        "categorical": list(fs.categorical),
        "split": {
            "val_start": fs.split.val_start,
            "test_start": fs.split.test_start,
            "mode": fs.split.mode,
            "end": fs.split.end,
            "train_start": fs.split.train_start,
        },
        "info": fs.info.to_dict(),
        "counts": _counts(fs),
    }
    with atomic_dir(out) as tmp:
        writer: pq.ParquetWriter | None = None
        for lo in range(0, max(fs.n, 1), row_group_rows):
            table = _table(fs, lo, min(fs.n, lo + row_group_rows))
            if writer is None:
                writer = pq.ParquetWriter(tmp / DATA_FILE, table.schema)
            writer.write_table(table, row_group_size=row_group_rows)
        if writer is not None:
            writer.close()
        fs.vocabs.save(tmp / "vocab")
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, default=_json) + "\n")
    return out


def _json(obj: Any) -> Any:
    if isinstance(obj, np.generic | np.ndarray):
        return obj.tolist()
    raise TypeError(type(obj).__name__)


@dataclass
class FeatureStore:
    """An opened feature store: its metadata and vocabularies; row groups are read on demand."""

    path: Path
    meta: dict[str, Any]
    vocabs: Vocabularies
    file: pq.ParquetFile

    @classmethod
    def open(cls, path: str | Path) -> FeatureStore:
        path = Path(path)
        if not is_store(path):
            raise StoreError(f"{path}: not a feature store (needs {DATA_FILE} and {META_FILE})")
        meta = json.loads((path / META_FILE).read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise StoreError(f"{path}: store format {meta.get('format_version')}, expected {FORMAT_VERSION}")
        return cls(path, meta, Vocabularies.load(path / "vocab"), pq.ParquetFile(path / DATA_FILE))

    @property
    def data_config(self) -> DataConfig:
        return from_dict(DataConfig, self.meta["data"])

    def count(self, split: str, task: str) -> int:
        return int(self._task_counts(task)[split])

    def base_rate(self, task: str) -> float:
        c = self._task_counts(task)
        return c["train_positives"] / max(c["train"], 1)

    def train_positives(self, task: str) -> int:
        """Positive labels in the training split of ``task``."""
        return int(self._task_counts(task)["train_positives"])

    def _task_counts(self, task: str) -> dict[str, int]:
        if task not in self.meta["counts"]:
            raise StoreError(f"{self.path}: no {task} rows (the dataset has no conversions)")
        return self.meta["counts"][task]

    def row_groups(self, split: str) -> list[int]:
        """Row groups that may hold rows of ``split`` (from the split column's min / max statistics)."""
        which = SPLITS[split]
        col = self.file.schema_arrow.get_field_index("split")
        out = []
        for i in range(self.file.num_row_groups):
            stats = self.file.metadata.row_group(i).column(col).statistics
            if stats is None or not stats.has_min_max or stats.min <= which <= stats.max:
                out.append(i)
        return out

    def read(self, groups: list[int], split: str, task: str) -> pa.Table:
        """The rows of ``split`` for ``task`` in the given row groups (CTR training: kept rows only)."""
        table = self.file.read_row_groups(groups)
        mask = pc.equal(table["split"], SPLITS[split])
        if task == "ctr" and split == "train":
            mask = pc.and_(mask, table["train_keep"])
        elif task == "pccvr":
            mask = pc.and_(mask, pc.equal(table["clicked"], 1))
        return table.filter(mask)

    def chunk(self, table: pa.Table) -> FeatureSet:
        """Rows of the store (an Arrow table in its layout) as an in-memory :class:`FeatureSet`."""
        n = table.num_rows
        info = FeatureInfo.from_dict(self.meta["info"])
        s = self.meta["split"]
        split = Split(_np(table["split"], np.int8), s["val_start"], s["test_start"], s["mode"], s["end"])
        width = table.schema.field("dense").type.list_size
        dense = _np(table["dense"].combine_chunks().flatten(), np.float32).reshape(n, width)  # (n, F or 1)
        sequences = {pair: _sequence_column(table[f"s:{pair}"], info.max_len) for pair in info.pairs}
        purchased = _np(table["purchased"], np.int8) if "purchased" in table.column_names else None
        touch = np.zeros((n, 0, 2), np.float32)
        if "touch" in table.column_names:  # (n, P, 2) raw touch signals, in the pairs' order
            pairs = table.schema.field("touch").type.list_size // 2
            touch = _np(table["touch"].combine_chunks().flatten(), np.float32).reshape(n, pairs, 2)
        return FeatureSet(
            clicked=_np(table["clicked"], np.int8),
            purchased=purchased,
            ts=_np(table["ts"], np.int64),
            position=_np(table["position"], np.int32),
            split=split,
            train_keep=_np(table["train_keep"], bool),
            target={k: _np(table[f"t:{k}"], np.int32) for k in self.meta["targets"]},
            categorical={k: _np(table[f"c:{k}"], np.int32) for k in self.meta["categorical"]},
            dense=dense[:, : self.meta["dense_width"]],
            dense_names=list(self.meta["dense_names"]),
            sequences=sequences,
            vocabs=self.vocabs,
            info=info,
            touch=touch,
            touch_pairs=list(info.pairs) if touch.shape[1] else [],
        )

    def schema(self) -> FeatureSet:
        """A zero-row :class:`FeatureSet` with the store's features (for building the model)."""
        return self.chunk(self.file.schema_arrow.empty_table())

    def load(self, splits: tuple[str, ...] = ("train", "val", "test")) -> FeatureSet:
        """Every row of the given splits in memory (evaluation reads just ``("test",)``)."""
        wanted = [SPLITS[s] for s in splits]
        groups = sorted({g for s in splits for g in self.row_groups(s)})
        table = self.file.read_row_groups(groups) if groups else self.file.schema_arrow.empty_table()
        return self.chunk(table.filter(pc.is_in(table["split"], pa.array(wanted, pa.int8()))))


def _np(column: pa.ChunkedArray | pa.Array, dtype: Any) -> np.ndarray:
    return np.asarray(column.to_numpy(zero_copy_only=False)).astype(dtype, copy=False)


def _sequence_column(column: pa.ChunkedArray, max_len: int) -> SequenceColumn:
    """A list column (ids newest first) as a :class:`SequenceColumn`."""
    arr = column.combine_chunks()
    flat = arr.values.to_numpy(zero_copy_only=False) if len(arr) else np.zeros(0, np.int32)
    return SequenceColumn.from_lists(arr.offsets.to_numpy(), flat, max_len)


class StreamSource:
    """Training rows of a feature store, streamed (see the module docstring); a :class:`BatchSource`."""

    def __init__(self, store: FeatureStore, task: Task, buffer_rows: int = 262_144) -> None:
        self.store, self.task = store, task
        self.n_train = store.count("train", task)
        self.keep_rate = FeatureInfo.from_dict(store.meta["info"]).neg_keep_rate if task == "ctr" else 1.0
        rg = max(int(store.meta["row_group_rows"]), 1)
        self.groups_per_buffer = max(1, buffer_rows // rg)

    def train_batches(self, batch_size: int, seed: int) -> Iterator[tuple[FeatureSet, np.ndarray]]:
        rng = np.random.default_rng(seed)
        groups = self.store.row_groups("train")
        order = [groups[i] for i in rng.permutation(len(groups))]
        carry: pa.Table | None = None
        for start in range(0, len(order), self.groups_per_buffer):
            table = self.store.read(order[start : start + self.groups_per_buffer], "train", self.task)
            if carry is not None:
                table = pa.concat_tables([carry, table])
            perm = rng.permutation(table.num_rows)
            full = table.num_rows - table.num_rows % batch_size
            if full:
                chunk = self.store.chunk(table)  # batches gather their shuffled rows from it
                for lo in range(0, full, batch_size):
                    yield chunk, perm[lo : lo + batch_size]
                del chunk
            carry = table.take(perm[full:])  # fewer than batch_size rows, into the next buffer
        if carry is not None and carry.num_rows:
            yield self.store.chunk(carry), np.arange(carry.num_rows)

    def val_chunks(self) -> Iterator[tuple[FeatureSet, np.ndarray]]:
        groups = self.store.row_groups("val")
        for start in range(0, len(groups), self.groups_per_buffer):
            table = self.store.read(groups[start : start + self.groups_per_buffer], "val", self.task)
            if table.num_rows:
                yield self.store.chunk(table), np.arange(table.num_rows)
