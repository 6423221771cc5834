"""Query -> taxonomy prediction for the lexical taxonomy-match boost (the paper's batch-inferred BERT
classifier; here a count model over the clicks before the test period).

For each query token ``t`` seen in training clicks, ``P(tax | t) = (c[t, tax] + a) / (n_t + a T)`` over the
``T`` taxonomies (``a`` = ``taxonomy_smoothing``); a query's distribution is the mean over its known tokens.
A query with no known token gets no boost.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

from adsformer.retrieval.tokens import query_tokens


class QueryTaxonomy:
    def __init__(self, taxonomies: list[str], counts: dict[str, dict[str, int]], smoothing: float) -> None:
        self.taxonomies = taxonomies
        self.counts = counts  # token -> {taxonomy: clicks}
        self.smoothing = smoothing

    @classmethod
    def fit(
        cls, queries: Sequence[str | None], taxonomies: Sequence[str | None], smoothing: float
    ) -> QueryTaxonomy:
        """Count the taxonomy of each clicked listing under each token of the query it was clicked for."""
        counts: dict[str, Counter[str]] = defaultdict(Counter)
        for q, tax in zip(queries, taxonomies, strict=True):
            if tax is None:
                continue
            for tok in query_tokens(q):
                counts[tok][tax] += 1
        taxa = sorted({t for c in counts.values() for t in c})
        return cls(taxa, {tok: dict(c) for tok, c in counts.items()}, smoothing)

    def predict(self, tokens: Sequence[str], top: int, min_p: float) -> list[tuple[str, float]]:
        """The ``top`` most likely taxonomies of a query (``P >= min_p``), most likely first."""
        known = [self.counts[t] for t in tokens if t in self.counts]
        if not known or top == 0:
            return []
        n_tax, a = len(self.taxonomies), self.smoothing
        probs: dict[str, float] = {}
        for c in known:
            denom = sum(c.values()) + a * n_tax
            for tax, count in c.items():
                probs[tax] = probs.get(tax, 0.0) + (count + a) / denom / len(known)
        # taxonomies no known token was clicked in share the smoothing mass; they never make the top
        ranked = sorted(probs.items(), key=lambda tp: (-tp[1], tp[0]))[:top]
        return [(t, p) for t, p in ranked if p >= min_p]

    def save(self, path: Path) -> None:
        obj = {"taxonomies": self.taxonomies, "smoothing": self.smoothing, "counts": self.counts}
        path.write_text(json.dumps(obj) + "\n")

    @classmethod
    def load(cls, path: Path) -> QueryTaxonomy:
        obj = json.loads(path.read_text())
        return cls(list(obj["taxonomies"]), dict(obj["counts"]), float(obj["smoothing"]))
