"""Vocabulary look-ups for single requests: :class:`IdEncoder`, a dict with the semantics of
:meth:`adsformer.data.vocab.Vocabulary.encode` (known id -> its index, unseen -> an OOV bucket by CRC32,
missing -> padding 0) without building a data frame per request."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from adsformer.data.vocab import PAD, Vocabulary, oov_bucket


class IdEncoder:
    """Encode ids of one vocabulary; equal to ``Vocabulary.encode`` (tested)."""

    def __init__(self, vocab: Vocabulary) -> None:
        self.name = vocab.name
        self.num_oov = vocab.num_oov
        self.index = {id_: vocab.first_id_index + i for i, id_ in enumerate(vocab.ids)}

    def one(self, value: str | None) -> int:
        if value is None:
            return PAD
        index = self.index.get(value)
        if index is not None:
            return index
        return oov_bucket(value, self.num_oov)

    def many(self, values: Iterable[str | None]) -> np.ndarray:
        """int32 indices, in order."""
        return np.fromiter((self.one(v) for v in values), dtype=np.int32)
