import numpy as np
import polars as pl
import pytest

from adsformer.data.vocab import Vocabulary
from adsformer.representations.table import RepresentationTable, TableError, align_to_vocabulary


def test_round_trip_and_alignment(tmp_path):
    vecs = np.arange(12, dtype=np.float32).reshape(4, 3)
    RepresentationTable("air", "air", ["a", "b", "c", "zz"], vecs, {"dim": 3}).save(tmp_path / "t")
    t = RepresentationTable.load(tmp_path / "t")
    assert t.ids == ["a", "b", "c", "zz"] and np.array_equal(t.vectors, vecs) and t.settings == {"dim": 3}
    vocab = Vocabulary.fit("listing", [pl.Series(["b", "b", "a", "q"])], top_k=10)  # b, a, q
    vectors, present = align_to_vocabulary(t, vocab)
    assert vectors.shape == (vocab.size, 3)
    assert present.tolist() == [False, False, True, True, False]  # pad, oov, b, a, q (no vector)
    assert vectors[2].tolist() == vecs[1].tolist() and vectors[3].tolist() == vecs[0].tolist()


def test_mismatched_tables_are_rejected_with_names(tmp_path):
    vocab = Vocabulary.fit("listing", [pl.Series(["a", "b"])], top_k=10)
    dup = RepresentationTable("sg", "skipgram", ["a", "a"], np.zeros((2, 2), np.float32))
    with pytest.raises(TableError, match="table 'sg': duplicate listing ids"):
        align_to_vocabulary(dup, vocab)
    other = RepresentationTable("vis", "visual", ["x", "y"], np.zeros((2, 2), np.float32))
    with pytest.raises(TableError, match="shares no listing id"):
        align_to_vocabulary(other, vocab)
    with pytest.raises(TableError, match="2 ids but 3 vectors"):
        RepresentationTable("bad", "x", ["a", "b"], np.zeros((3, 2), np.float32)).save(tmp_path / "bad")
    with pytest.raises(TableError, match="not a representation table"):
        RepresentationTable.load(tmp_path / "nothing")
