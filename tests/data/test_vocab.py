import numpy as np
import polars as pl
import pytest

from adsformer.data.vocab import PAD, Vocabularies, Vocabulary, oov_bucket


def test_top_k_by_frequency_ties_by_id_and_layout():
    v = Vocabulary.fit("listing", [pl.Series(["b", "a", "b", "c", "a", "b", None, "d"])], top_k=2)
    assert v.ids == ("b", "a")  # b x3, a x2; c and d dropped beyond top-2
    assert v.size == 4  # pad + 1 oov + 2
    enc = v.encode(pl.Series(["b", "a", "c", None, "never-seen"]))
    assert enc.tolist() == [2, 3, 1, PAD, 1]
    assert enc.dtype == np.int32


def test_fit_counts_across_columns():
    v = Vocabulary.fit("shop", [pl.Series(["x"]), pl.Series(["y", "y"])], top_k=10)
    assert v.ids == ("y", "x")


def test_multiple_oov_buckets_are_stable_and_in_range():
    v = Vocabulary.fit("q", [pl.Series(["known"])], top_k=5, num_oov=4)
    unseen = pl.Series([f"new{i}" for i in range(200)])
    a, b = v.encode(unseen), v.encode(unseen)
    assert (a == b).all() and a.min() >= 1 and a.max() <= 4
    assert len(set(a.tolist())) == 4  # spread over the buckets
    assert v.encode(["known"]).tolist() == [5]


def test_oov_bucket_is_crc32_of_the_utf8_id_everywhere():
    # golden values: 1 + CRC32(UTF-8) % buckets, so a run hashes unseen ids the same on every machine
    assert [oov_bucket("unseen", n) for n in (1, 2, 4, 1024)] == [1, 2, 2, 506]
    assert [oov_bucket("\u00fc", n) for n in (1, 4, 1024)] == [1, 2, 470]
    v = Vocabulary.fit("q", [pl.Series(["known"])], top_k=5, num_oov=1024)
    assert v.encode(["x", "a b", "known"]).tolist() == [644, 212, 1025]


def test_retrieval_tokens_hash_unknown_tokens_as_vocabularies_do():
    from adsformer.retrieval.two_tower import TokenVocab

    tokens = TokenVocab(["known"], oov_buckets=1024)
    assert tokens.encode(["x", "a b", "known"], max_len=3) == [644, 212, 1025]


def test_oov_never_crashes_on_empty_vocab_and_empty_input():
    v = Vocabulary.fit("listing", [], top_k=10)
    assert v.encode(pl.Series(["a"], dtype=pl.String)).tolist() == [1]
    assert v.encode(pl.Series([], dtype=pl.String)).tolist() == []


def test_save_load_round_trip(tmp_path):
    vs = Vocabularies(
        {
            "listing": Vocabulary.fit("listing", [pl.Series(["a", "b", "a"])], 10),
            "query": Vocabulary.fit("query", [pl.Series(["x"])], 10, num_oov=3),
        }
    )
    vs.save(tmp_path / "vocab")
    back = Vocabularies.load(tmp_path / "vocab")
    assert back.by_name == vs.by_name
    assert back["listing"].decode(np.array([0, 1, 2, 3])) == [None, "<oov>", "a", "b"]


def test_bad_num_oov():
    with pytest.raises(ValueError, match="num_oov"):
        Vocabulary.fit("x", [pl.Series(["a"])], 1, num_oov=0)
