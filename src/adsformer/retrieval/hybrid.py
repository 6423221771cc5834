"""Hybrid candidate generation: the sources' ranked lists merged, de-duplicated and capped.

Scores of different sources are not comparable (BM25 x static value, cosines of different models), so the
lists are merged by reciprocal-rank fusion: a listing's score is ``sum over sources of 1 / (rrf_k + rank)``
(rank 1 = a source's best), which rewards listings several sources agree on and otherwise interleaves the
sources by rank. Each candidate keeps the source that ranked it best (the earlier source on a tie). The
merged list is sorted by that score and capped at ``k``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

#: every source name a candidate can carry
SOURCES = ("lexical", "two_tower", "air", "visual", "text", "skipgram")


@dataclass(frozen=True)
class Candidate:
    listing_id: str
    source: str  # "lexical" | "two_tower" | "air" | "visual" | "text" | "skipgram"
    score: float  # the fused (reciprocal-rank) score; higher is better


def fuse(ranked: Mapping[str, np.ndarray], ids: Sequence[str], k: int, rrf_k: float) -> list[Candidate]:
    """Merge ``{source: global rows, best first}`` into at most ``k`` candidates (see the module doc)."""
    score: dict[int, float] = {}
    best: dict[int, tuple[int, int, str]] = {}  # row -> (rank, source order, source)
    for order, (source, rows) in enumerate(ranked.items()):
        for rank, row in enumerate(np.asarray(rows, np.int64).tolist(), start=1):
            if row < 0:  # faiss pads with -1 when fewer neighbours exist
                continue
            score[row] = score.get(row, 0.0) + 1.0 / (rrf_k + rank)
            if row not in best or (rank, order) < best[row][:2]:
                best[row] = (rank, order, source)
    merged = sorted(score, key=lambda r: (-score[r], best[r][0], best[r][1], r))[:k]
    return [Candidate(ids[r], best[r][2], float(score[r])) for r in merged]
