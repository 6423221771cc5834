"""Typed configuration of ADPM's three components (paper table 1)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal, get_args

from pydantic import with_config

from adsformer.config import (
    KNOWN_KEYS_ONLY,
    MAX_BLOCKS,
    MAX_DIM,
    MAX_HEADS,
    MAX_SEQ_LEN,
    check_ranges,
    finite,
    in_range,
    valid_pair,
)

DROPOUT = "must be in [0, 1)"
#: How the encoder pools its outputs over the sequence: global max or mean over the real positions
Pooling = Literal["max", "mean"]
#: How component 3 pools a learned sequence: the paper's average, or DIN-style attention to the target
LearnedPooling = Literal["mean", "target"]


#: ``encoder.enabled: auto`` learns the encoder when the training split holds at least this many positive labels,
#: and leaves it out below. The encoder learns which sequences predict a click or a purchase from the positives
#: alone; with about a thousand of them (PCCVR on the public Taobao slice: clicked impressions, 1,293 purchases
#: in training) its three seeds scored 0.720 / 0.677 / 0.600 against 0.721 +- 0.006 without it, and on the demo
#: simulator's PCCVR (1,360) it added nothing (0.705 vs 0.703). Every CTR dataset we have is above (trivago 10.9k
#: clicks, Taobao 55k, the demo simulator 8.4k), where it is kept. docs/results.md has the runs.
ENCODER_MIN_POSITIVES = 5_000


def listing_pair(name: str) -> bool:
    """``auto`` or a listing sequence ``listing:ACTION`` (what a one-sequence module reads)."""
    return name == "auto" or (name.startswith("listing:") and valid_pair(name) and not name.endswith(":*"))


@with_config(KNOWN_KEYS_ONLY)
@dataclass(frozen=True)
class EncoderConfig:
    """Component 1: the adSformer encoder over one (entity, action) sequence, target listing at position 0.

    ``enabled``: true, false, or ``auto`` (the default): on when the training split has at least
    :data:`ENCODER_MIN_POSITIVES` positive labels (:meth:`for_positives`, applied by training, which writes the
    decision into the run). A model built from a spec alone, without data, reads ``auto`` as on.
    """

    enabled: Literal[True, False, "auto"] = "auto"
    # "auto": listing:view when the data has it, else the listing sequence with the most events (see
    # FeatureSet.listing_pair); trivago, for one, has no views
    pair: str = "auto"
    dim: int = 32  # d1
    heads: int = 3
    head_dim: int = 32  # per-head width (Keras key_dim); the paper uses 3 heads of a 32-d model
    blocks: int = 1
    ffn_mult: int = 4
    dropout: float = 0.0
    pooling: Pooling = "max"
    max_len: int = 50  # use at most the newest max_len events of the sequence
    # At most this many length groups (1 = off: one padded block). The real positions are packed and the
    # attention runs on rows of similar length in groups, each padded to its own longest row: exact (rows
    # never interact) and several times cheaper when most windows are short. The groups are the cheapest
    # split under the attention's cost model (adsformer.layers.packing), usually far fewer than this cap.
    length_groups: int = 32
    # Whether the sequence's positions attend to the target. true: the paper's encoder, every position attends
    # to every other, so every position's output depends on the candidate and a served request runs the
    # feed-forward over all L positions of every candidate. false (the default): the sequence is encoded on
    # its own and only the target's position reads it, so serving encodes a user's sequence once per request
    # and each candidate costs one position per block -- exactly, not as an approximation (600 candidates, a
    # full window: 8.1 ms against 31.7). Test ROC-AUC, paired over seeds, not significantly different on the
    # three CTR data sets: trivago -0.0036 [-0.0096, +0.0024] (10 seeds), Taobao +0.0004 [-0.0005, +0.0014],
    # the simulator +0.0011 [-0.0017, +0.0039] (3 seeds; docs/results.md). Runs saved before the setting
    # existed load as true (what they were trained with).
    sequence_sees_target: bool = False

    def __post_init__(self) -> None:
        check_ranges(
            self,
            [
                ("pair", listing_pair(self.pair), "must be auto or a listing sequence listing:ACTION"),
                ("dim", in_range(self.dim, 1, MAX_DIM), f"must be in [1, {MAX_DIM}]"),
                ("heads", in_range(self.heads, 1, MAX_HEADS), f"must be in [1, {MAX_HEADS}]"),
                ("head_dim", in_range(self.head_dim, 1, MAX_DIM), f"must be in [1, {MAX_DIM}]"),
                ("blocks", in_range(self.blocks, 0, MAX_BLOCKS), f"must be in [0, {MAX_BLOCKS}]"),
                ("ffn_mult", in_range(self.ffn_mult, 1, 64), "must be in [1, 64]"),
                ("dropout", finite(self.dropout, 0, 1) and self.dropout < 1, DROPOUT),
                ("pooling", self.pooling in get_args(Pooling), f"must be one of {list(get_args(Pooling))}"),
                ("max_len", in_range(self.max_len, 1, MAX_SEQ_LEN), f"must be in [1, {MAX_SEQ_LEN}]"),
                ("length_groups", in_range(self.length_groups, 1, 1024), "must be in [1, 1024] (1 = off)"),
                ("enabled", self.enabled in (True, False, "auto"), "must be true, false or auto"),
            ],
        )

    def for_positives(self, positives: int) -> EncoderConfig:
        """``enabled: auto`` decided for a training split with ``positives`` positive labels (true / false
        are kept as given)."""
        if self.enabled != "auto":
            return self
        return dataclasses.replace(self, enabled=positives >= ENCODER_MIN_POSITIVES)


@with_config(KNOWN_KEYS_ONLY)
@dataclass(frozen=True)
class PretrainedConfig:
    """Component 2: frozen pretrained listing tables, average pooled per listing sequence.

    The component is on exactly when ``tables`` names at least one table.
    """

    tables: tuple[str, ...] = ()  # representation table directories (see adsformer.representations)
    pairs: tuple[str, ...] = ("listing:*",)  # listing sequences to pool; "listing:*" = every listing pair

    def __post_init__(self) -> None:
        check_ranges(
            self,
            [
                (
                    "tables",
                    all(isinstance(t, str) and t.strip() for t in self.tables),
                    "must be directory paths",
                ),
                (
                    "pairs",
                    all(p.startswith("listing:") and valid_pair(p) for p in self.pairs),
                    "must be listing sequences listing:ACTION (listing:* = every one)",
                ),
            ],
        )

    @property
    def enabled(self) -> bool:
        return bool(self.tables)


@with_config(KNOWN_KEYS_ONLY)
@dataclass(frozen=True)
class LearnedConfig:
    """Component 3: an embedding table per (entity, action) pair, learned from scratch, average pooled."""

    enabled: bool = True
    pairs: tuple[str, ...] = ("all",)
    listing_dim: int = 32
    shop_dim: int = 16
    taxonomy_dim: int = 8
    query_dim: int = 16
    attribute_dim: int = 8  # listing attributes c_* used as entities (e.g. c_color:view)
    # "mean": the paper's average pooling; "target": DIN-style target attention for listing sequences
    # (weights = softmax over the real entries of the scaled dot product with the target listing's
    # embedding in the same table; other entities keep the average)
    pooling: LearnedPooling = "mean"

    def __post_init__(self) -> None:
        dims = ("listing_dim", "shop_dim", "taxonomy_dim", "query_dim", "attribute_dim")
        check_ranges(
            self,
            [
                (
                    "pairs",
                    all(valid_pair(p) for p in self.pairs),
                    "must be 'all' or entity:action names",
                ),
                *[(d, in_range(getattr(self, d), 1, MAX_DIM), f"must be in [1, {MAX_DIM}]") for d in dims],
                (
                    "pooling",
                    self.pooling in get_args(LearnedPooling),
                    f"must be one of {list(get_args(LearnedPooling))}",
                ),
            ],
        )

    def dim(self, entity: str) -> int:
        if entity.startswith("c_"):
            return self.attribute_dim
        return int(getattr(self, f"{entity}_dim"))


@with_config(KNOWN_KEYS_ONLY)
@dataclass(frozen=True)
class TouchConfig:
    """Component 4 (beyond the paper): target-aware touch signals per (entity, action) sequence -- how often
    and how recently the user touched the target's listing / shop / taxonomy / attribute, matched on raw ids."""

    enabled: bool = True
    pairs: tuple[str, ...] = ("all",)

    def __post_init__(self) -> None:
        ok = all(valid_pair(p) for p in self.pairs)
        check_ranges(self, [("pairs", ok, "must be 'all' or entity:action names")])


@with_config(KNOWN_KEYS_ONLY)
@dataclass(frozen=True)
class ADPMConfig:
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    pretrained: PretrainedConfig = field(default_factory=PretrainedConfig)
    learned: LearnedConfig = field(default_factory=LearnedConfig)
    touch: TouchConfig = field(default_factory=TouchConfig)
