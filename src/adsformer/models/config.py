"""Typed configuration of the ranker and of the user modules it can receive."""

from __future__ import annotations

from dataclasses import dataclass, field

from adsformer.adpm.config import ADPMConfig


@dataclass(frozen=True)
class BSTConfig:
    """Behavior Sequence Transformer (Chen et al. 2019): transformer over target + last k, outputs concatenated."""

    pair: str = "auto"  # as the ADPM encoder's: listing:view, else the most frequent listing sequence
    k: int = 20
    dim: int = 32
    heads: int = 8
    head_dim: int = 8
    blocks: int = 1
    dropout: float = 0.1


@dataclass(frozen=True)
class LastKConfig:
    """Average of the learned embeddings of the last k listings (the eBay approach)."""

    pair: str = "auto"  # as the ADPM encoder's: listing:view, else the most frequent listing sequence
    k: int = 5
    dim: int = 32


@dataclass(frozen=True)
class RankerConfig:
    """Deep & cross network over the wide input concatenated with the user vector."""

    cross_layers: int = 2
    deep: tuple[int, ...] = (256, 128)
    dropout: float = 0.1
    listing_dim: int = 32
    shop_dim: int = 16
    taxonomy_dim: int = 8
    query_dim: int = 16
    categorical_dim: int = 8
    embedding_std: float = 0.01  # N(0, std) init of every id embedding (torch's default N(0, 1) overfits ids)
    position_bias: bool = True  # shallow position tower: added in training, dropped when scoring
    max_position: int = 50  # positions beyond share the last slot
    position_context: tuple[str, ...] = (
        "c_device",
    )  # context fields the tower reads, where the data has them
    position_dim: int = 8
    position_hidden: int = 16  # 0: additive biases per position and context value
    position_dropout: float = 0.0  # share of training rows whose position is hidden from the tower
    position_lr_scale: float = 10.0  # the tower's learning rate relative to train.lr

    def target_dim(self, entity: str) -> int:
        return int(getattr(self, f"{entity}_dim"))


@dataclass(frozen=True)
class ModelConfig:
    """``user`` picks the user module: adsformer (ADPM) | bst | lastk | baseline (none)."""

    user: str = "adsformer"
    adpm: ADPMConfig = field(default_factory=ADPMConfig)
    bst: BSTConfig = field(default_factory=BSTConfig)
    lastk: LastKConfig = field(default_factory=LastKConfig)
    ranker: RankerConfig = field(default_factory=RankerConfig)
