"""Settings of candidate retrieval (one frozen dataclass per component) and :class:`RetrievalError`.

``adsformer index build [--config FILE.yaml] --set key=value`` addresses a field by its dotted path
(``ann.nprobe=32``, ``lexical.shards=4``, ``two_tower.epochs=20``) or by a short key
(:attr:`IndexConfig.SHORT_KEYS`). Invalid values raise :class:`~adsformer.config.ConfigError` when the config
is made.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Literal, get_args

from pydantic import with_config

from adsformer.config import KNOWN_KEYS_ONLY, ConfigError, SplitConfig
from adsformer.errors import UserError


class RetrievalError(UserError):
    """A query the retriever cannot answer (empty text, unknown listing, unreadable image, missing source)
    or an index directory it cannot use; the message names what and where."""


def _check(owner: str, key: str, value: float, low: float, high: float | None = None) -> None:
    if value < low or (high is not None and value > high):
        rule = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ConfigError(f"retrieval setting {owner}.{key}={value!r}: must be {rule}")


@with_config(KNOWN_KEYS_ONLY)
@dataclass(frozen=True)
class LexicalConfig:
    """The inverted index (tantivy) over titles, tags and taxonomy paths.

    Each shard fetches its ``per_shard_cap`` best in-budget text matches by BM25 (``title_boost`` x
    BM25(title) + ``tags_boost`` x BM25(tags) + ``taxonomy_text_boost`` x BM25(taxonomy path), with the
    catalogue-wide IDF on every shard); the fetched listings are then ranked by::

        (BM25 + taxonomy_boost * P(listing's taxonomy | query)) * (1 + static_weight * static_percentile)

    ``static_percentile`` is the listing's rank (0..1) by offline static pCTR x pCCVR; ``P(taxonomy |
    query)`` comes from :class:`~adsformer.retrieval.taxonomy.QueryTaxonomy` (the paper's taxonomy-matching
    prediction), its ``taxonomy_top`` most likely taxonomies with ``P >= taxonomy_min_p``.
    """

    shards: int = 1  # N shards (listings assigned by a stable hash of their id), searched and merged
    per_shard_cap: int = 1000  # at most this many listings fetched from each shard (paper: 1000)
    title_boost: float = 1.0
    tags_boost: float = 0.5
    taxonomy_text_boost: float = 0.5  # the taxonomy path as text ("home rugs")
    taxonomy_boost: float = 2.0  # added score for P(listing's taxonomy | query) = 1
    taxonomy_top: int = 3  # predicted taxonomies boosted per query ...
    taxonomy_min_p: float = 0.05  # ... with at least this probability
    taxonomy_smoothing: float = 1.0  # add-alpha on per-token taxonomy counts of clicks
    static_weight: float = 1.0  # the static multiplier spans 1 .. 1 + static_weight
    overfetch: float = 1.25  # a shard's first fetch asks for cap / in-budget share * overfetch hits

    def __post_init__(self) -> None:
        _check("lexical", "shards", self.shards, 1, 1024)
        _check("lexical", "per_shard_cap", self.per_shard_cap, 1, 1000)
        for key in ("title_boost", "tags_boost", "taxonomy_text_boost", "taxonomy_boost", "static_weight"):
            _check("lexical", key, getattr(self, key), 0.0)
        _check("lexical", "taxonomy_top", self.taxonomy_top, 0)
        _check("lexical", "taxonomy_min_p", self.taxonomy_min_p, 0.0, 1.0)
        _check("lexical", "taxonomy_smoothing", self.taxonomy_smoothing, 0.0)
        _check("lexical", "overfetch", self.overfetch, 1.0)


#: index kinds: exact scan, inverted file with full vectors, with int8 vectors, with product-quantized codes
#: The faiss index of an ANN source: ``auto`` picks by the number of vectors (see :class:`AnnConfig`)
IndexKind = Literal["auto", "flat", "ivf_flat", "ivf_sq8", "ivf_pq"]
ANN_KINDS: tuple[IndexKind, ...] = get_args(IndexKind)
#: Training data of a learned source comes from before the test or the validation period
Until = Literal["test", "val"]


@with_config(KNOWN_KEYS_ONLY)
@dataclass(frozen=True)
class AnnConfig:
    """faiss inverted-file indexes over unit vectors (inner product = cosine).

    ``kind=auto`` is ``ivf_flat`` up to ``sq8_above`` vectors, ``ivf_sq8`` (the vectors as int8: a quarter
    of the memory) up to ``pq_above`` and ``ivf_pq`` beyond (``flat`` = one list, an exact scan). On 1M
    synthetic 256-d vectors at nprobe 64 (benchmarks/ann.py, one core under load) recall@100 was 0.989 for
    ``ivf_flat`` (501 q/s), 0.977 for ``ivf_sq8`` (1,058 q/s) and 0.366 for ``ivf_pq`` with 32-byte codes.
    ``nlist`` (inverted lists, k-means centroids) ``0`` = ``4 * sqrt(N)``, kept so every list has >= 39
    training vectors; ``nprobe`` (lists scanned per query) ``0`` = ``nlist / 32`` (at least
    16): on 1M synthetic 256-d vectors with nlist = 4096 (benchmarks/ann.py) recall@100 was 0.904 at
    nprobe 32, 0.989 at 64 and 0.9995 at 128. ``pq_m`` sub-quantizers of ``pq_bits`` bits each code a
    vector in ``pq_m * pq_bits / 8`` bytes (``0`` = ``dim / 8``, which must divide ``dim``).
    """

    kind: IndexKind = "auto"
    nlist: int = 0
    nprobe: int = 0
    pq_m: int = 0
    pq_bits: int = 8
    sq8_above: int = 2_000_000
    pq_above: int = 50_000_000
    train_size: int = 256  # k-means sees at most this many vectors per list
    seed: int = 1234  # faiss k-means seed

    def __post_init__(self) -> None:
        if self.kind not in ANN_KINDS:
            raise ConfigError(f"retrieval setting ann.kind={self.kind!r}: expected one of {ANN_KINDS}")
        for key in ("nlist", "nprobe", "pq_m"):
            _check("ann", key, getattr(self, key), 0)
        _check("ann", "pq_bits", self.pq_bits, 4, 12)
        _check("ann", "sq8_above", self.sq8_above, 1)
        _check("ann", "pq_above", self.pq_above, 1)
        _check("ann", "train_size", self.train_size, 39)


@with_config(KNOWN_KEYS_ONLY)
@dataclass(frozen=True)
class TwoTowerConfig:
    """Query / listing two-tower model trained on query -> clicked listing (in-batch softmax)."""

    dim: int = 64  # output (ANN) dimension
    token_dim: int = 64  # token embeddings shared by both towers
    hidden: int = 128
    oov_buckets: int = 1024  # unknown query tokens hash into these
    id_min_clicks: int = 2  # listings with fewer training clicks share the "unknown listing" id row
    id_dropout: float = 0.3  # training: a listing's id embedding is dropped with this probability
    temperature: float = 0.05
    epochs: int = 15
    batch_size: int = 512
    lr: float = 2e-3
    until: Until = "test"  # training clicks from before the test ("test") or validation ("val") period
    split: SplitConfig = field(default_factory=SplitConfig)  # must match the ranker's
    seed: int = 0

    def __post_init__(self) -> None:
        for key in ("dim", "token_dim", "hidden", "oov_buckets", "epochs", "batch_size"):
            _check("two_tower", key, getattr(self, key), 1)
        _check("two_tower", "id_min_clicks", self.id_min_clicks, 1)
        _check("two_tower", "id_dropout", self.id_dropout, 0.0, 1.0)
        if not self.temperature > 0 or not self.lr > 0:
            raise ConfigError("retrieval settings two_tower.temperature and two_tower.lr must be > 0")
        if self.until not in ("test", "val"):
            raise ConfigError(f"retrieval setting two_tower.until={self.until!r}: expected test or val")


@with_config(KNOWN_KEYS_ONLY)
@dataclass(frozen=True)
class StaticConfig:
    """Offline "static" pCTR x pCCVR per listing when no trained run gives them: smoothed history of the
    impressions before the test period, ``(clicks + m p) / (impressions + m)`` toward the global rate."""

    ctr_prior_impressions: float = 50.0
    pccvr_prior_clicks: float = 10.0

    def __post_init__(self) -> None:
        _check("static", "ctr_prior_impressions", self.ctr_prior_impressions, 0.0)
        _check("static", "pccvr_prior_clicks", self.pccvr_prior_clicks, 0.0)


@with_config(KNOWN_KEYS_ONLY)
@dataclass(frozen=True)
class HybridConfig:
    """Merging the sources: reciprocal-rank fusion, ``score = sum_s 1 / (rrf_k + rank_s)``."""

    rrf_k: float = 60.0
    k: int = 600  # default cap of ``candidates``

    def __post_init__(self) -> None:
        _check("hybrid", "rrf_k", self.rrf_k, 0.0)
        _check("hybrid", "k", self.k, 1)


@with_config(KNOWN_KEYS_ONLY)
@dataclass(frozen=True)
class IndexConfig:
    """Everything ``adsformer index build`` reads."""

    KIND: ClassVar[str] = "index"
    #: ``--set`` short keys of ``adsformer index build``
    SHORT_KEYS: ClassVar[Mapping[str, str]] = {
        "shards": "lexical.shards",
        "per_shard_cap": "lexical.per_shard_cap",
        "nlist": "ann.nlist",
        "nprobe": "ann.nprobe",
        "kind": "ann.kind",
        "epochs": "two_tower.epochs",
        "k": "hybrid.k",
    }

    lexical: LexicalConfig = field(default_factory=LexicalConfig)
    ann: AnnConfig = field(default_factory=AnnConfig)
    two_tower: TwoTowerConfig = field(default_factory=TwoTowerConfig)
    static: StaticConfig = field(default_factory=StaticConfig)
    hybrid: HybridConfig = field(default_factory=HybridConfig)
    two_tower_enabled: bool = True  # train the two-tower model (needs clicked impressions with queries)
    eval_ks: tuple[int, ...] = (10, 100, 600)  # recall@k of held-out clicks reported in the manifest
    eval_max_queries: int = 2000  # held-out clicks evaluated (a seeded sample)
    threads: int = 1  # torch and faiss threads while building
