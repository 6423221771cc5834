"""Top-K vocabularies: string ids -> dense indices for embedding tables (paper section 2.7.1).

Index layout of every vocabulary::

    0                      padding (also: a missing id, e.g. an impression without a query)
    1 .. num_oov           out-of-vocabulary buckets (an id never seen in training, or beyond the top K)
    num_oov + 1 ..         the top-K most frequent training ids, most frequent first (ties: by id)

Vocabularies are fit on the training split only and saved with every run, so training and serving map the
same id to the same row. With ``num_oov > 1`` unseen ids are spread over the buckets by a stable hash
(CRC32 of the UTF-8 id), identical across processes and machines.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from adsformer.io import atomic_dir

PAD = 0


def oov_bucket(value: str, num_oov: int) -> int:
    """The out-of-vocabulary row of an unseen ``value``: ``1 + CRC32(UTF-8 value) % num_oov``, the same in every
    process and on every machine (1 when there is one bucket). Offline encoding, serving and the retrieval
    token vocabulary all hash through this one function."""
    return 1 if num_oov == 1 else 1 + zlib.crc32(value.encode()) % num_oov


@dataclass(frozen=True)
class Vocabulary:
    """Maps the string ids of one entity (listing, shop, taxonomy, query, a ``c_*`` feature) to indices."""

    name: str
    ids: tuple[str, ...]  # in index order, starting at index num_oov + 1
    num_oov: int = 1

    @property
    def size(self) -> int:
        """Rows an embedding table needs: padding + OOV buckets + ids."""
        return 1 + self.num_oov + len(self.ids)

    @property
    def first_id_index(self) -> int:
        return 1 + self.num_oov

    @classmethod
    def fit(cls, name: str, values: Iterable[pl.Series], top_k: int, num_oov: int = 1) -> Vocabulary:
        """The ``top_k`` most frequent non-null ids over the given columns (ties broken by id)."""
        if num_oov < 1:
            raise ValueError(f"vocabulary {name!r}: num_oov must be >= 1, got {num_oov}")
        cols = [s.cast(pl.String).rename("id") for s in values]
        if not cols:
            return cls(name, (), num_oov)
        counts = (
            pl.concat(cols)
            .drop_nulls()
            .value_counts(name="n")
            .sort(["n", "id"], descending=[True, False])
            .head(max(int(top_k), 0))
        )
        return cls(name, tuple(counts["id"].to_list()), num_oov)

    def _table(self) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "id": pl.Series(self.ids, dtype=pl.String),
                "index": np.arange(self.first_id_index, self.size, dtype=np.int32),
            }
        )

    def encode(self, values: pl.Series | Iterable[str | None]) -> np.ndarray:
        """int32 indices: known ids -> their index, unseen -> an OOV bucket, null -> padding (0)."""
        series = values if isinstance(values, pl.Series) else pl.Series(list(values), dtype=pl.String)
        frame = pl.DataFrame({"id": series.cast(pl.String)})
        joined = frame.join(self._table(), on="id", how="left", maintain_order="left")
        index = joined["index"]
        is_null = frame["id"].is_null().to_numpy()
        out = index.fill_null(1).to_numpy().astype(np.int32)
        if self.num_oov > 1:
            unseen = index.is_null().to_numpy() & ~is_null
            if unseen.any():
                out[unseen] = self._oov_buckets(frame["id"].filter(pl.Series(unseen)))
        out[is_null] = PAD
        return out

    def _oov_buckets(self, unseen: pl.Series) -> np.ndarray:
        uniques = unseen.unique()
        buckets = np.array([oov_bucket(u, self.num_oov) for u in uniques.to_list()], np.int32)
        lut = pl.DataFrame({"id": uniques, "b": buckets})
        return (
            pl.DataFrame({"id": unseen}).join(lut, on="id", how="left", maintain_order="left")["b"].to_numpy()
        )

    def decode(self, indices: np.ndarray) -> list[str | None]:
        """Inverse of :meth:`encode` for known ids; padding -> None, OOV -> ``"<oov>"``."""
        out: list[str | None] = []
        for i in np.asarray(indices).tolist():
            if i == PAD:
                out.append(None)
            elif i < self.first_id_index:
                out.append("<oov>")
            else:
                out.append(self.ids[i - self.first_id_index])
        return out


@dataclass(frozen=True)
class Vocabularies:
    """The vocabularies of one run, by name."""

    by_name: dict[str, Vocabulary]

    def __getitem__(self, name: str) -> Vocabulary:
        try:
            return self.by_name[name]
        except KeyError:
            raise KeyError(f"no vocabulary {name!r}; have {sorted(self.by_name)}") from None

    def __contains__(self, name: str) -> bool:
        return name in self.by_name

    def sizes(self) -> dict[str, int]:
        return {k: v.size for k, v in self.by_name.items()}

    def save(self, directory: str | Path) -> Path:
        """One Parquet file per vocabulary plus ``vocab.json`` (written atomically)."""
        directory = Path(directory)
        with atomic_dir(directory) as tmp:
            manifest = {}
            for name, vocab in self.by_name.items():
                vocab._table().write_parquet(tmp / f"{name}.parquet")
                manifest[name] = {"num_oov": vocab.num_oov, "size": vocab.size, "n_ids": len(vocab.ids)}
            (tmp / "vocab.json").write_text(json.dumps(manifest, indent=2) + "\n")
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> Vocabularies:
        directory = Path(directory)
        manifest = json.loads((directory / "vocab.json").read_text())
        by_name = {}
        for name, info in manifest.items():
            table = pl.read_parquet(directory / f"{name}.parquet").sort("index")
            by_name[name] = Vocabulary(name, tuple(table["id"].to_list()), int(info["num_oov"]))
        return cls(by_name)
