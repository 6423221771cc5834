"""Typed configuration of the ranker and of the user modules it can receive."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal, TypeGuard, get_args

from pydantic import with_config

from adsformer.adpm.config import DROPOUT, ADPMConfig, listing_pair
from adsformer.config import (
    KNOWN_KEYS_ONLY,
    MAX_BLOCKS,
    MAX_DIM,
    MAX_HEADS,
    MAX_SEQ_LEN,
    check_ranges,
    finite,
    in_range,
)

PAIR_RULE = "must be auto or a listing sequence listing:ACTION"
#: ``model.user``: the user module the ranker receives (the keys of adsformer.models.registry.USER_MODULES)
UserName = Literal["adsformer", "bst", "lastk", "baseline"]
USER_NAMES: tuple[UserName, ...] = get_args(UserName)


def is_user_name(name: str) -> TypeGuard[UserName]:
    """Whether ``name`` is a user module's (and not, say, a rule's or a peer's row)."""
    return name in USER_NAMES


@with_config(KNOWN_KEYS_ONLY)
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

    def __post_init__(self) -> None:
        check_ranges(
            self,
            [
                ("pair", listing_pair(self.pair), PAIR_RULE),
                ("k", in_range(self.k, 1, MAX_SEQ_LEN), f"must be in [1, {MAX_SEQ_LEN}]"),
                ("dim", in_range(self.dim, 1, MAX_DIM), f"must be in [1, {MAX_DIM}]"),
                ("heads", in_range(self.heads, 1, MAX_HEADS), f"must be in [1, {MAX_HEADS}]"),
                ("head_dim", in_range(self.head_dim, 1, MAX_DIM), f"must be in [1, {MAX_DIM}]"),
                ("blocks", in_range(self.blocks, 0, MAX_BLOCKS), f"must be in [0, {MAX_BLOCKS}]"),
                ("dropout", finite(self.dropout, 0, 1) and self.dropout < 1, DROPOUT),
            ],
        )


@with_config(KNOWN_KEYS_ONLY)
@dataclass(frozen=True)
class LastKConfig:
    """Average of the learned embeddings of the last k listings (the eBay approach)."""

    pair: str = "auto"  # as the ADPM encoder's: listing:view, else the most frequent listing sequence
    k: int = 5
    dim: int = 32

    def __post_init__(self) -> None:
        check_ranges(
            self,
            [
                ("pair", listing_pair(self.pair), PAIR_RULE),
                ("k", in_range(self.k, 1, MAX_SEQ_LEN), f"must be in [1, {MAX_SEQ_LEN}]"),
                ("dim", in_range(self.dim, 1, MAX_DIM), f"must be in [1, {MAX_DIM}]"),
            ],
        )


#: ``cross_rank: auto`` by task. CTR: rank 64, the full-rank model's quality at 1.3x its training speed;
#: PCCVR: full rank -- it trains on the few clicked impressions, where speed matters little, and on the public
#: Taobao PCCVR (1.3k purchases) rank 64 put one seed of three far below the others (docs/models.md).
CROSS_RANK_BY_TASK: dict[str, int | None] = {"ctr": 64, "pccvr": None}


@with_config(KNOWN_KEYS_ONLY)
@dataclass(frozen=True)
class RankerConfig:
    """Deep & cross network over the wide input concatenated with the user vector."""

    cross_layers: int = 2
    # rank r of each cross layer's weight (DCN-v2 low rank: V F -> r, then U r -> F); None = full rank F x F,
    # as is any r >= F; auto = by task (CROSS_RANK_BY_TASK, resolved by training and written to the run)
    cross_rank: int | Literal["auto"] | None = "auto"
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

    def __post_init__(self) -> None:
        dims = ("listing_dim", "shop_dim", "taxonomy_dim", "query_dim", "categorical_dim", "position_dim")
        check_ranges(
            self,
            [
                ("cross_layers", in_range(self.cross_layers, 0, MAX_BLOCKS), f"must be in [0, {MAX_BLOCKS}]"),
                (
                    "cross_rank",
                    self.cross_rank is None
                    or self.cross_rank == "auto"
                    or in_range(self.cross_rank, 1, MAX_DIM),
                    f"must be in [1, {MAX_DIM}], null (full rank) or auto (by task)",
                ),
                (
                    "deep",
                    all(in_range(w, 1, 65_536) for w in self.deep),
                    "must be layer widths in [1, 65536] ([] = no deep tower)",
                ),
                ("dropout", finite(self.dropout, 0, 1) and self.dropout < 1, DROPOUT),
                *[(d, in_range(getattr(self, d), 1, MAX_DIM), f"must be in [1, {MAX_DIM}]") for d in dims],
                (
                    "embedding_std",
                    finite(self.embedding_std, 0, 10) and self.embedding_std > 0,
                    "must be in (0, 10]",
                ),
                ("max_position", in_range(self.max_position, 1, 100_000), "must be in [1, 100000]"),
                (
                    "position_hidden",
                    in_range(self.position_hidden, 0, MAX_DIM),
                    f"must be in [0, {MAX_DIM}] (0 = biases)",
                ),
                ("position_dropout", finite(self.position_dropout, 0, 1), "must be in [0, 1]"),
                (
                    "position_lr_scale",
                    finite(self.position_lr_scale, 0, 1e6) and self.position_lr_scale > 0,
                    "must be in (0, 1e6]",
                ),
            ],
        )

    def target_dim(self, entity: str) -> int:
        return int(getattr(self, f"{entity}_dim"))

    def for_task(self, task: str) -> RankerConfig:
        """This config with ``cross_rank: auto`` made the task's (:data:`CROSS_RANK_BY_TASK`)."""
        if self.cross_rank != "auto":
            return self
        return dataclasses.replace(self, cross_rank=CROSS_RANK_BY_TASK.get(task, CROSS_RANK_BY_TASK["ctr"]))

    @property
    def rank(self) -> int | None:
        """The cross layers' rank (None: full). ``auto`` not resolved for a task -- a model built straight
        from a config, a run saved before the setting existed -- reads as full rank, the value before
        ``auto``, so such runs rebuild the layers they were trained with."""
        return None if self.cross_rank == "auto" else self.cross_rank


@with_config(KNOWN_KEYS_ONLY)
@dataclass(frozen=True)
class ModelConfig:
    """``user`` picks the user module: adsformer (ADPM) | bst | lastk | baseline (none)."""

    user: UserName = "adsformer"
    adpm: ADPMConfig = field(default_factory=ADPMConfig)
    bst: BSTConfig = field(default_factory=BSTConfig)
    lastk: LastKConfig = field(default_factory=LastKConfig)
    ranker: RankerConfig = field(default_factory=RankerConfig)

    def __post_init__(self) -> None:
        check_ranges(self, [("user", self.user in USER_NAMES, f"must be one of {list(USER_NAMES)}")])
