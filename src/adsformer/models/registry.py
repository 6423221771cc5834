"""Explicit registry of user modules and the one function that builds a ranker from a configuration."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from adsformer.adpm.module import ADPM
from adsformer.adpm.pretrained import FrozenTable
from adsformer.config import ConfigError
from adsformer.data.features import MERGED_PAIR, choose_listing_pair
from adsformer.layers.user import UserModule
from adsformer.models.config import ModelConfig
from adsformer.models.ranker import Ranker, WideSpec
from adsformer.models.user import BST, LastKAverage, NoUser


@dataclass(frozen=True)
class ModelSpec:
    """What the data offers a model: vocabulary sizes, categorical features, dense width, sequence pairs."""

    vocab_sizes: dict[str, int]  # entity -> rows (listing, shop, taxonomy, query)
    categorical_vocab: dict[str, int]  # "query", "c_*" -> rows
    n_dense: int
    pairs: list[str]
    window_s: int = 3600  # the sequences' time window (scales the touch component's recency)

    def to_json(self) -> dict:
        return {
            "vocab_sizes": self.vocab_sizes,
            "categorical_vocab": self.categorical_vocab,
            "n_dense": self.n_dense,
            "pairs": self.pairs,
            "window_s": self.window_s,
        }

    @classmethod
    def from_json(cls, obj: dict) -> ModelSpec:
        return cls(
            dict(obj["vocab_sizes"]),
            dict(obj["categorical_vocab"]),
            int(obj["n_dense"]),
            list(obj["pairs"]),
            int(obj.get("window_s", 3600)),
        )


UserBuilder = Callable[[ModelConfig, ModelSpec, list[FrozenTable]], UserModule]


def _adpm(cfg: ModelConfig, spec: ModelSpec, tables: list[FrozenTable]) -> UserModule:
    return ADPM(cfg.adpm, spec.vocab_sizes, spec.pairs, tables, window_s=spec.window_s)


def _bst(cfg: ModelConfig, spec: ModelSpec, tables: list[FrozenTable]) -> UserModule:
    bst = dataclasses.replace(cfg.bst, pair=_concrete(cfg.bst.pair, spec))
    _require_pair(bst.pair, spec)
    return BST(bst, spec.vocab_sizes["listing"], _actions(bst.pair, spec))


def _lastk(cfg: ModelConfig, spec: ModelSpec, tables: list[FrozenTable]) -> UserModule:
    lastk = dataclasses.replace(cfg.lastk, pair=_concrete(cfg.lastk.pair, spec))
    _require_pair(lastk.pair, spec)
    return LastKAverage(lastk, spec.vocab_sizes["listing"], _actions(lastk.pair, spec))


def _actions(pair: str, spec: ModelSpec) -> int:
    """The action vocabulary's size when ``pair`` is the merged listing sequence (its ids pack actions)."""
    return int(spec.vocab_sizes.get("action", 0)) if pair == MERGED_PAIR else 0


def _concrete(pair: str, spec: ModelSpec) -> str:
    """An ``auto`` pair not resolved against the data (a model built from a spec alone): listing:view,
    else the first listing pair."""
    return choose_listing_pair(pair, dict.fromkeys(spec.pairs, 1)) if pair == "auto" else pair


def _none(cfg: ModelConfig, spec: ModelSpec, tables: list[FrozenTable]) -> UserModule:
    return NoUser()


def _require_pair(pair: str, spec: ModelSpec) -> None:
    if pair not in spec.pairs:
        raise ConfigError(f"sequence pair {pair!r} is not built for this dataset; use one of {spec.pairs}")


#: ``model.user`` (and ``adsformer train --model``) -> builder. CLI names: adsformer | bst | lastk | baseline.
USER_MODULES: dict[str, UserBuilder] = {"adsformer": _adpm, "bst": _bst, "lastk": _lastk, "baseline": _none}


def build_model(cfg: ModelConfig, spec: ModelSpec, tables: list[FrozenTable] | None = None) -> Ranker:
    try:
        builder = USER_MODULES[cfg.user]
    except KeyError:
        raise ValueError(f"unknown model {cfg.user!r}; expected one of {sorted(USER_MODULES)}") from None
    user = builder(cfg, spec, list(tables or []))
    target_vocab = {e: spec.vocab_sizes[e] for e in ("listing", "shop", "taxonomy")}
    wide = WideSpec(target_vocab, spec.categorical_vocab, spec.n_dense)
    ranker = Ranker(cfg.ranker, wide, user)
    init_embeddings(ranker, cfg.ranker.embedding_std)
    return ranker


def init_embeddings(model: nn.Module, std: float) -> None:
    """N(0, std) for every embedding table (id and position embeddings), padding rows zero; the position
    tower keeps torch's init (its output layer starts at zero). Small id embeddings keep the cross
    network's products well scaled."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Embedding) and not name.startswith("position_tower"):
            nn.init.normal_(module.weight, std=std)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
