"""Big-table format: npy vectors (float32 / float16) memory-mapped, read in place through a row index."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from adsformer.adpm.pretrained import FrozenTable
from adsformer.data.vocab import Vocabulary
from adsformer.representations.table import (
    RepresentationTable,
    TableError,
    align_to_vocabulary,
    vocabulary_rows,
)


@pytest.fixture
def table() -> RepresentationTable:
    rng = np.random.default_rng(0)
    ids = [f"l{i}" for i in range(300)]
    return RepresentationTable("air", "air", ids, rng.normal(size=(300, 8)).astype(np.float32), {"dim": 8})


@pytest.fixture
def vocab() -> Vocabulary:
    seen = [f"l{i}" for i in range(0, 400, 2)]  # half of the table, plus listings it lacks
    return Vocabulary.fit("listing", [pl.Series(seen)], top_k=1000, num_oov=2)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_npy_round_trip_is_memory_mapped(tmp_path, table, dtype):
    table.save(tmp_path / "t", format="npy", dtype=dtype)
    back = RepresentationTable.load(tmp_path / "t")
    assert back.memory_mapped and back.vectors.dtype == np.dtype(dtype) and back.ids == table.ids
    assert back.name == "air" and back.settings == {"dim": 8}
    np.testing.assert_allclose(back.vectors, table.vectors, atol=0 if dtype == "float32" else 2e-3)
    in_memory = RepresentationTable.load(tmp_path / "t", mmap=False)
    assert not in_memory.memory_mapped and np.array_equal(in_memory.vectors, back.vectors)
    assert not RepresentationTable.load(table.save(tmp_path / "p")).memory_mapped


def test_row_index_lookup_equals_aligned_copy(tmp_path, table, vocab):
    table.save(tmp_path / "t", format="npy")
    mapped = RepresentationTable.load(tmp_path / "t")
    rows = vocabulary_rows(mapped, vocab)
    assert rows.shape == (vocab.size,) and (rows[: 1 + vocab.num_oov] == -1).all()
    vectors, present = align_to_vocabulary(table, vocab)
    assert np.array_equal(rows >= 0, present) and present.sum() == 150
    aligned = FrozenTable("a", vectors, present)
    in_place = FrozenTable("b", mapped.vectors, rows >= 0, index=rows)
    assert in_place.vectors.data_ptr() == mapped.vectors.ctypes.data  # the memory map itself, not a copy
    ids = torch.randint(0, vocab.size, (16, 7))
    lengths = torch.randint(0, 8, (16,))
    assert torch.equal(aligned(ids, lengths), in_place(ids, lengths))
    state = in_place.state_dict()
    assert set(state) == {"vectors", "present", "index"}
    again = FrozenTable("c", state["vectors"], state["present"], state["index"])
    assert torch.equal(again(ids, lengths), in_place(ids, lengths))


def test_float16_lookup_is_close(tmp_path, table, vocab):
    table.save(tmp_path / "t", format="npy", dtype="float16")
    mapped = RepresentationTable.load(tmp_path / "t")
    rows = vocabulary_rows(mapped, vocab)
    half = FrozenTable("h", mapped.vectors, rows >= 0, index=rows)
    full = FrozenTable("f", *align_to_vocabulary(table, vocab))
    ids, lengths = torch.randint(0, vocab.size, (32, 5)), torch.full((32,), 5)
    out = half(ids, lengths)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, full(ids, lengths), atol=2e-3, rtol=0)


def test_bad_formats_are_named(tmp_path, table):
    with pytest.raises(TableError, match="parquet holds float32 only"):
        table.save(tmp_path / "x", format="parquet", dtype="float16")
    with pytest.raises(TableError, match="format must be one of"):
        table.save(tmp_path / "x", format="csv")
