"""The query / listing two-tower model behind the ``two_tower`` ANN source (paper appendix A.1).

* Tokens (queries and listing text, :mod:`adsformer.retrieval.tokens`) index one embedding table shared by
  both towers: row 0 is padding, rows ``1..oov_buckets`` take unknown tokens by a stable hash, then the
  vocabulary (every token of the catalogue's text and of the training queries).
* Query tower: mean of the query's token embeddings -> Linear -> ReLU -> Linear -> unit vector.
* Listing tower: [mean of title + tags + taxonomy-path token embeddings, listing-id embedding, taxonomy
  embedding] -> Linear -> ReLU -> Linear -> unit vector. Listings with fewer than ``id_min_clicks``
  training clicks share id row 0 ("unknown listing"), and training drops the id embedding with probability
  ``id_dropout``, so listings never clicked still get a vector from their text and taxonomy.
* Loss: the symmetric in-batch softmax over cosine / temperature of (query, clicked listing) pairs, copies
  of a pair's query or listing among the negatives masked (:func:`adsformer.representations.contrastive.in_batch_softmax_loss`).

Trained on the clicked impressions (with a query) before the test period: nothing of the test period leaks
into the vectors the held-out evaluation searches.

Letters: V tokens, N listings, U distinct training queries, B batch, L tokens per row, E token_dim, D dim.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import nn

from adsformer.config import from_dict, to_dict
from adsformer.data.vocab import oov_bucket
from adsformer.representations.contrastive import fit_pairs, in_batch_softmax_loss
from adsformer.retrieval.config import RetrievalError, TwoTowerConfig
from adsformer.retrieval.tokens import ListingText, query_tokens

MAX_QUERY_TOKENS = 16
MAX_LISTING_TOKENS = 48


class TokenVocab:
    """Token -> embedding row (0 padding, 1..oov_buckets hashed unknown tokens, then the vocabulary)."""

    def __init__(self, tokens: Sequence[str], oov_buckets: int) -> None:
        self.tokens = list(tokens)
        self.oov_buckets = oov_buckets
        self.index = {t: i + 1 + oov_buckets for i, t in enumerate(self.tokens)}

    @property
    def size(self) -> int:
        return 1 + self.oov_buckets + len(self.tokens)

    def encode(self, tokens: Sequence[str], max_len: int) -> list[int]:
        return [self.index.get(t) or oov_bucket(t, self.oov_buckets) for t in tokens[:max_len]]

    def padded(self, docs: Sequence[Sequence[str]], max_len: int) -> torch.Tensor:
        """(R, L) int64 token rows, zero-padded to the longest (at most ``max_len``)."""
        enc = [self.encode(d, max_len) for d in docs]
        out = torch.zeros((len(enc), max(1, *(len(e) for e in enc)) if enc else 1), dtype=torch.int64)
        for i, e in enumerate(enc):
            out[i, : len(e)] = torch.tensor(e, dtype=torch.int64)
        return out


def _mlp(width: int, hidden: int, dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, dim))


class TwoTower(nn.Module):
    def __init__(self, n_tokens: int, n_ids: int, n_taxonomies: int, cfg: TwoTowerConfig) -> None:
        super().__init__()
        e = cfg.token_dim
        self.tokens = nn.EmbeddingBag(n_tokens, e, mode="mean", padding_idx=0)
        self.ids = nn.Embedding(n_ids, e)  # row 0: unknown listing
        self.taxonomies = nn.Embedding(n_taxonomies, e)  # row 0: no taxonomy
        self.query_mlp = _mlp(e, cfg.hidden, cfg.dim)
        self.listing_mlp = _mlp(3 * e, cfg.hidden, cfg.dim)

    def encode_queries(self, tokens: torch.Tensor) -> torch.Tensor:
        """(Q, L) token rows -> (Q, D) unit vectors."""
        return nn.functional.normalize(self.query_mlp(self.tokens(tokens)), dim=1)

    def encode_listings(
        self, tokens: torch.Tensor, ids: torch.Tensor, taxonomies: torch.Tensor
    ) -> torch.Tensor:
        """(B, L) token rows, (B,) id rows, (B,) taxonomy rows -> (B, D) unit vectors."""
        x = torch.cat([self.tokens(tokens), self.ids(ids), self.taxonomies(taxonomies)], dim=1)  # (B, 3E)
        return nn.functional.normalize(self.listing_mlp(x), dim=1)


@dataclass
class ListingInputs:
    """The listing tower's inputs for all N listings (global row order)."""

    tokens: torch.Tensor  # (N, L)
    ids: torch.Tensor  # (N,)
    taxonomies: torch.Tensor  # (N,)


def click_pairs(impressions: pl.DataFrame, start: int | None, end: int | None) -> pl.DataFrame:
    """``query, listing_id`` of clicked impressions with a non-empty query and ``start <= ts < end``."""
    if "query" not in impressions.columns:
        return pl.DataFrame(
            {"query": [], "listing_id": []}, schema={"query": pl.String, "listing_id": pl.String}
        )
    f = (pl.col("clicked") == 1) & pl.col("query").is_not_null() & (pl.col("query").str.strip_chars() != "")
    if start is not None:
        f &= pl.col("ts") >= start
    if end is not None:
        f &= pl.col("ts") < end
    return impressions.filter(f).select("query", "listing_id")


class TwoTowerModel:
    """A trained two-tower model with its vocabularies; encodes queries (serving) and listings (indexing)."""

    def __init__(
        self, model: TwoTower, vocab: TokenVocab, cfg: TwoTowerConfig, listings: ListingInputs | None
    ) -> None:
        self.model = model.eval()
        self.vocab = vocab
        self.cfg = cfg
        self.listings = listings

    def query_vectors(self, queries: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(Q, D) float32 unit vectors and ``ok`` (Q,): False for a query with no token left (no vector)."""
        toks = [query_tokens(q) for q in queries]
        with torch.no_grad():
            z = self.model.encode_queries(self.vocab.padded(toks, MAX_QUERY_TOKENS)).numpy()
        return z.astype(np.float32), np.array([bool(t) for t in toks])

    def listing_vectors(self, batch: int = 8192) -> np.ndarray:
        """(N, D) float32 unit vectors of every listing (ids at their trained rows)."""
        if self.listings is None:
            raise RetrievalError("this two-tower model was loaded for queries only (no listing inputs)")
        li = self.listings
        with torch.no_grad():
            parts = [
                self.model.encode_listings(
                    li.tokens[i : i + batch], li.ids[i : i + batch], li.taxonomies[i : i + batch]
                )
                for i in range(0, li.ids.shape[0], batch)
            ]
        return torch.cat(parts).numpy().astype(np.float32)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        sizes = {
            "n_tokens": self.model.tokens.num_embeddings,
            "n_ids": self.model.ids.num_embeddings,
            "n_taxonomies": self.model.taxonomies.num_embeddings,
        }
        torch.save(self.model.state_dict(), directory / "model.pt")
        meta = {"config": to_dict(self.cfg), "sizes": sizes, "tokens": self.vocab.tokens}
        (directory / "model.json").write_text(json.dumps(meta) + "\n")

    @classmethod
    def load(cls, directory: Path) -> TwoTowerModel:
        meta_path = directory / "model.json"
        if not meta_path.exists() or not (directory / "model.pt").exists():
            raise RetrievalError(f"{directory}: two-tower model files (model.pt, model.json) missing")
        meta = json.loads(meta_path.read_text())
        cfg = from_dict(TwoTowerConfig, meta["config"])
        model = TwoTower(
            int(meta["sizes"]["n_tokens"]),
            int(meta["sizes"]["n_ids"]),
            int(meta["sizes"]["n_taxonomies"]),
            cfg,
        )
        model.load_state_dict(torch.load(directory / "model.pt", weights_only=True))
        return cls(model, TokenVocab(meta["tokens"], cfg.oov_buckets), cfg, None)


def listing_inputs(
    text: ListingText,
    listing_ids: Sequence[str],
    vocab: TokenVocab,
    id_rows: dict[str, int],
    tax_rows: dict[str, int],
) -> ListingInputs:
    docs = [t + g + x for t, g, x in zip(text.title, text.tags, text.taxonomy, strict=True)]
    return ListingInputs(
        tokens=vocab.padded(docs, MAX_LISTING_TOKENS),
        ids=torch.tensor([id_rows.get(lid, 0) for lid in listing_ids], dtype=torch.int64),
        taxonomies=torch.tensor([tax_rows.get(t or "", 0) for t in text.taxonomy_id], dtype=torch.int64),
    )


def train_two_tower(
    listing_ids: Sequence[str],
    text: ListingText,
    pairs: pl.DataFrame,
    cfg: TwoTowerConfig,
    progress: Any | None = None,
) -> tuple[TwoTowerModel, dict[str, Any]]:
    """Train on ``pairs`` (``query, listing_id``: training clicks); ``progress`` is a rich Progress or None."""
    row = {lid: i for i, lid in enumerate(listing_ids)}
    pairs = pairs.filter(pl.col("listing_id").is_in(list(row)))
    queries = pairs["query"].to_list()
    q_tokens = [query_tokens(q) for q in queries]
    keep = np.array([bool(t) for t in q_tokens])
    if keep.sum() < 2:
        raise RetrievalError(
            f"two-tower model: {int(keep.sum())} clicked impression(s) with a query before the test period; "
            "need at least 2 (or build with --set two_tower_enabled=false)"
        )
    torch.manual_seed(cfg.seed)
    vocab_tokens = sorted(
        {t for doc in (*text.title, *text.tags, *text.taxonomy) for t in doc}
        | {t for q in q_tokens for t in q}
    )
    vocab = TokenVocab(vocab_tokens, cfg.oov_buckets)
    clicked = pairs["listing_id"].to_list()
    counts = pl.Series("listing_id", clicked, dtype=pl.String).value_counts()
    frequent = counts.filter(pl.col("count") >= cfg.id_min_clicks)["listing_id"].to_list()
    id_rows = {lid: i + 1 for i, lid in enumerate(sorted(frequent))}
    taxa = sorted({t for t in text.taxonomy_id if t is not None})
    tax_rows = {t: i + 1 for i, t in enumerate(taxa)}
    inputs = listing_inputs(text, listing_ids, vocab, id_rows, tax_rows)

    distinct = sorted({" ".join(t) for t in q_tokens if t})
    q_index = {q: i for i, q in enumerate(distinct)}
    q_mat = vocab.padded([q.split(" ") for q in distinct], MAX_QUERY_TOKENS)  # (U, L)
    a = np.array([q_index[" ".join(t)] for t, k in zip(q_tokens, keep, strict=True) if k], np.int64)
    b = np.array([row[lid] for lid, k in zip(clicked, keep, strict=True) if k], np.int64)

    model = TwoTower(vocab.size, len(id_rows) + 1, len(taxa) + 1, cfg)
    rng = np.random.default_rng(cfg.seed)

    def batch_loss(rows: np.ndarray) -> torch.Tensor:
        ia, ib = torch.from_numpy(a[rows]), torch.from_numpy(b[rows])
        ids = inputs.ids[ib].clone()
        ids[torch.from_numpy(rng.random(ids.shape[0]) < cfg.id_dropout)] = 0
        zq = model.encode_queries(q_mat[ia])  # (B, D)
        zl = model.encode_listings(inputs.tokens[ib], ids, inputs.taxonomies[ib])  # (B, D)
        return in_batch_softmax_loss(zq, zl, ia, ib, cfg.temperature)

    steps = max(1, a.size // cfg.batch_size)
    task = progress.add_task("two-tower", total=cfg.epochs * steps) if progress is not None else None
    model.train()
    losses = fit_pairs(
        batch_loss,
        torch.optim.Adam(model.parameters(), lr=cfg.lr),
        a.size,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        rng=rng,
        on_step=(lambda: progress.advance(task)) if progress is not None else (lambda: None),
    )
    history = [{"epoch": e + 1, "loss": round(loss, 4)} for e, loss in enumerate(losses)]
    report = {
        "train_clicks": int(a.size),
        "distinct_queries": len(distinct),
        "vocabulary": len(vocab_tokens),
        "listings_with_id_embedding": len(id_rows),
        "history": history,
    }
    return TwoTowerModel(model, vocab, cfg, inputs), report
