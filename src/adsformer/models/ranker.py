"""The ranker: a deep & cross network over the wide input concatenated with the user vector ``u``
(paper figure 3). The user module is passed in, so ADPM, BST, last-k or none are swapped by configuration.

Clicks depend on where an ad was shown. A shallow position tower (:mod:`adsformer.layers.position`, paper
section 5.3) absorbs that during training: its logit is added only when the inputs carry a ``position``,
which training batches do and scoring never does, so predictions estimate relevance free of the display
position. Every path hands the ranker one :class:`~adsformer.data.inputs.ModelInputs`.

Letters: B batch, F wide width (target + query + categorical embeddings + dense), U user width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from adsformer.data.inputs import ModelInputs
from adsformer.layers.dcn import CrossNetwork, DeepTower
from adsformer.layers.position import PositionTower
from adsformer.layers.user import OneUserMode, UserModule, require_eval
from adsformer.models.config import RankerConfig


@dataclass(frozen=True)
class WideSpec:
    """What the wide input holds: vocabulary sizes of the target's entities and of the categorical
    features (``query``, ``c_*``), and the number of dense features."""

    target_vocab: dict[str, int]
    categorical_vocab: dict[str, int]
    n_dense: int


class Ranker(nn.Module):
    """logit = head(concat(cross(x0), deep(x0))), x0 = concat(wide embeddings, dense, u)."""

    def __init__(self, cfg: RankerConfig, wide: WideSpec, user: UserModule) -> None:
        super().__init__()
        self.user = user
        self.target_emb = nn.ModuleDict(
            {e: nn.Embedding(n, cfg.target_dim(e), padding_idx=0) for e, n in wide.target_vocab.items()}
        )
        self.cat_emb = nn.ModuleDict(
            {
                name: nn.Embedding(
                    n, cfg.query_dim if name == "query" else cfg.categorical_dim, padding_idx=0
                )
                for name, n in wide.categorical_vocab.items()
            }
        )
        in_dim = (
            sum(cfg.target_dim(e) for e in wide.target_vocab)
            + sum(
                cfg.query_dim if name == "query" else cfg.categorical_dim for name in wide.categorical_vocab
            )
            + wide.n_dense
            + int(user.out_dim)
        )
        self.in_dim = in_dim
        self.cross = CrossNetwork(in_dim, cfg.cross_layers, cfg.rank)
        self.deep = DeepTower(in_dim, cfg.deep, cfg.dropout)
        self.head = nn.Linear(in_dim + self.deep.out_dim, 1)
        context = {n: wide.categorical_vocab[n] for n in cfg.position_context if n in wide.categorical_vocab}
        self.position_tower = (
            PositionTower(
                cfg.max_position,
                context,
                dim=cfg.position_dim,
                hidden=cfg.position_hidden,
                dropout=cfg.position_dropout,
                lr_scale=cfg.position_lr_scale,
            )
            if cfg.position_bias
            else None
        )

    @property
    def pairs(self) -> tuple[str, ...]:
        """The sequences the model reads (its user module's): a batch needs no other."""
        return self.user.pairs

    @torch.no_grad()
    def set_base_rate(self, rate: float) -> None:
        """Start the output bias at the training label rate's log-odds, so the first steps learn features
        instead of the click rate (and a short run still predicts the right mean)."""
        rate = min(max(float(rate), 1e-6), 1 - 1e-6)
        self.head.bias.fill_(math.log(rate / (1 - rate)))

    def forward(self, inputs: ModelInputs) -> torch.Tensor:
        """Per-row inputs of B rows (:class:`~adsformer.data.inputs.ModelInputs`) -> logits (B,). The
        position tower's logit is added when ``inputs.position`` (B,) (1 = top, 0 = unknown) is given, which
        only training does; ``inputs.touch`` (B, P, 2) is read by ADPM's touch component."""
        x0 = torch.cat([*self._wide(inputs), self.user(inputs)], dim=1)  # (B, F + U)
        h = torch.cat([self.cross(x0), self.deep(x0)], dim=1)  # (B, F + U + deep_out)
        logit = self.head(h).squeeze(1)  # (B,)
        if inputs.position is not None and self.position_tower is not None:
            logit = logit + self.position_tower(inputs.position, inputs.categorical)  # (B,)
        return logit

    def one_user_logits(self, inputs: ModelInputs, *, mode: OneUserMode = "exact") -> torch.Tensor:
        """Logits (B,) of B candidates for *one* user, with the work the candidates share done once: the
        one-user form of the inputs (target / categorical name -> (B,), dense (B, F_d), seq_ids pair ->
        (1, M), seq_len pair -> (1,), touch (B, P, 2); the position is not read). ``mode="exact"`` equals
        ``forward`` of :meth:`~adsformer.data.inputs.ModelInputs.repeated` without position, up to float
        rounding.

        The user module splits its vector into per-candidate and shared columns
        (:meth:`~adsformer.layers.user.UserModule.one_user`); the cross network and the deep tower multiply
        the shared columns once, and the last cross layer folds into the head
        (:meth:`~adsformer.layers.dcn.CrossNetwork.read_out`). Needs eval mode."""
        require_eval(self)
        u = self.user.one_user(inputs, mode=mode)
        x_c = torch.cat([*self._wide(inputs), u.per_target], dim=1)  # (B, F + Uc)
        w = self.head.weight[0]  # (F + U + deep_out,)
        deep = self.deep.forward_shared(x_c, u.shared)  # (B, deep_out)
        return self.cross.read_out(x_c, u.shared, w[: self.in_dim]) + deep @ w[self.in_dim :] + self.head.bias

    def _wide(self, inputs: ModelInputs) -> list[torch.Tensor]:
        """The wide input's parts: target and categorical embeddings (B, e each), dense (B, F_d)."""
        parts = [emb(inputs.target[e]) for e, emb in self.target_emb.items()]
        parts += [emb(inputs.categorical[name]) for name, emb in self.cat_emb.items()]
        return [*parts, inputs.dense]
