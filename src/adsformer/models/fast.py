"""Fast scoring of many candidate listings for one user: :class:`FastScorer`.

A ranking request scores B candidates (up to ~600) against one user's sequences. The plain batched forward
(:meth:`Ranker.forward` with the user's sequences repeated B times) recomputes everything the candidates
share. :class:`FastScorer` computes the same logits with the shared work done once:

* **user vector**. ADPM component 1 uses :mod:`adsformer.adpm.fast` (the first block's sequence-side work is
  shared: token projections, sequence-to-sequence attention; see there for why nothing after the first
  block is); components 2 and 3 (frozen and learned tables, average pooled) do not read the target and are
  computed once for one row. Last-k reads no target either (computed once); BST uses the shared first
  block too; the baseline has no user vector.
* **first layers of the ranker**. The wide input is ``x0 = [wide_b, u_target_b, u_shared]``. The first
  cross layer and the first deep layer are linear in ``x0``, so ``W x0 = W_c [wide_b, u_target_b] +
  (W_s u_shared + bias)``: the shared columns' product is computed once (components 2 and 3 are most of
  ``x0``'s width). The rest of the cross network, the deep tower and the head run per candidate.

Outputs equal the plain batched forward up to float rounding (tested to 1e-5 over configurations, lengths
and padding). The scorer reads the model's weights when built (copies of the split first-layer matrices):
build a new one after changing the weights. Dropout and batch norm must be in eval mode.

Letters: B candidates, F wide width (target + categorical embeddings + dense), Uc user columns that depend
on the target, Us user columns shared by every candidate, M sequence width.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from adsformer.adpm.fast import encode_one_user, pooled_one_user
from adsformer.adpm.module import ADPM
from adsformer.models.ranker import Ranker
from adsformer.models.user import BST, LastKAverage, NoUser

SeqIds = dict[str, torch.Tensor]  # pair -> (1, M) ids of the one user, newest first
SeqLen = dict[str, torch.Tensor]  # pair -> (1,) lengths
#: user module -> (target (B,), seq_ids, seq_len) -> (per-target part (B, Uc), shared part (Us,))
UserSplit = Callable[[nn.Module, torch.Tensor, SeqIds, SeqLen], tuple[torch.Tensor, torch.Tensor]]


def _adpm(user: nn.Module, target: torch.Tensor, seq_ids: SeqIds, seq_len: SeqLen) -> tuple:
    assert isinstance(user, ADPM)
    B = target.shape[0]
    if user.encoder is not None:
        pair = user.encoder_pair
        o1 = pooled_one_user(user.encoder, target, seq_ids[pair][0], int(seq_len[pair][0]))  # (B, D)
    else:
        o1 = target.new_zeros((B, 0), dtype=torch.float32)
    shared = [m(seq_ids, seq_len)[0] for m in (user.pretrained, user.learned) if m is not None]  # (d,) each
    return o1, torch.cat(shared) if shared else o1.new_zeros(0)


def _lastk(user: nn.Module, target: torch.Tensor, seq_ids: SeqIds, seq_len: SeqLen) -> tuple:
    u = user(target[:1], seq_ids, seq_len)[0]  # (D,) reads no target
    return u.new_zeros((target.shape[0], 0)), u


def _bst(user: nn.Module, target: torch.Tensor, seq_ids: SeqIds, seq_len: SeqLen) -> tuple:
    assert isinstance(user, BST)
    pair, k = user.cfg.pair, user.cfg.k
    x = encode_one_user(user.encoder, target, seq_ids[pair][0], int(seq_len[pair][0]))  # (B, L, D)
    x = nn.functional.pad(x, (0, 0, 0, k + 1 - x.shape[1]))  # (B, k+1, D): padded positions are zero
    return x.flatten(1), x.new_zeros(0)


def _none(user: nn.Module, target: torch.Tensor, seq_ids: SeqIds, seq_len: SeqLen) -> tuple:
    empty = target.new_zeros((target.shape[0], 0), dtype=torch.float32)
    return empty, empty.new_zeros(0)


#: user module type -> how it splits into per-target and shared parts (explicit; no fallback).
USER_SPLITS: dict[type, UserSplit] = {ADPM: _adpm, LastKAverage: _lastk, BST: _bst, NoUser: _none}


class FastScorer:
    """Logits of a trained :class:`Ranker` for B candidates of one user; see the module docstring."""

    def __init__(self, model: Ranker) -> None:
        if model.training:
            raise ValueError("FastScorer needs a model in eval() mode")
        split = USER_SPLITS.get(type(model.user))
        if split is None:
            raise ValueError(
                f"no fast path for user module {type(model.user).__name__}; known: "
                f"{sorted(t.__name__ for t in USER_SPLITS)}"
            )
        self.model = model
        self._split = split
        self.n_shared = _shared_width(model.user)
        cross_first = model.cross.layers[0] if len(model.cross.layers) else None
        deep_first = model.deep.net[0] if len(model.deep.net) else None
        self._cross = _SplitLinear(cross_first, self.n_shared) if isinstance(cross_first, nn.Linear) else None
        self._deep = _SplitLinear(deep_first, self.n_shared) if isinstance(deep_first, nn.Linear) else None

    @torch.inference_mode()
    def logits(
        self,
        target: dict[str, torch.Tensor],
        categorical: dict[str, torch.Tensor],
        dense: torch.Tensor,
        seq_ids: SeqIds,
        seq_len: SeqLen,
    ) -> torch.Tensor:
        """target / categorical: name -> (B,) ids, dense (B, F_d); seq_ids pair -> (1, M), seq_len pair ->
        (1,) for the one user  ->  logits (B,), as ``model(...)`` gives with the sequences repeated B times."""
        m = self.model
        if m.training:
            raise ValueError("FastScorer needs a model in eval() mode")
        parts = [emb(target[e]) for e, emb in m.target_emb.items()]
        parts += [emb(categorical[name]) for name, emb in m.cat_emb.items()]
        u_target, u_shared = self._split(m.user, target["listing"], seq_ids, seq_len)  # (B, Uc), (Us,)
        x_c = torch.cat([*parts, dense, u_target], dim=1)  # (B, F + Uc)
        x0 = torch.cat([x_c, u_shared.expand(x_c.shape[0], -1)], dim=1)  # (B, F + U)
        cross = self._cross_forward(x0, x_c, u_shared)  # (B, F + U)
        deep = self._deep_forward(x0, x_c, u_shared)  # (B, deep_out)
        return m.head(torch.cat([cross, deep], dim=1)).squeeze(1)  # (B,)

    def _cross_forward(self, x0: torch.Tensor, x_c: torch.Tensor, u_shared: torch.Tensor) -> torch.Tensor:
        layers = list(self.model.cross.layers)
        if self._cross is None:
            return x0
        x = x0 * self._cross(x_c, u_shared) + x0  # first layer, x = x0
        for layer in layers[1:]:
            x = x0 * layer(x) + x
        return x

    def _deep_forward(self, x0: torch.Tensor, x_c: torch.Tensor, u_shared: torch.Tensor) -> torch.Tensor:
        net = self.model.deep.net
        if self._deep is None:
            return net(x0)
        h = self._deep(x_c, u_shared)  # (B, hidden[0])
        for module in list(net)[1:]:
            h = module(h)
        return h


class _SplitLinear:
    """``linear([x_c, broadcast(s)])`` as ``x_c @ W_c^T + (W_s s + b)``: the shared columns' product once."""

    def __init__(self, linear: nn.Linear, n_shared: int) -> None:
        w = linear.weight.detach()  # (out, in)
        n_c = w.shape[1] - n_shared
        self.w_c = w[:, :n_c].contiguous()  # (out, F + Uc)
        self.w_s = w[:, n_c:].contiguous()  # (out, Us)
        self.bias = linear.bias.detach() if linear.bias is not None else torch.zeros(w.shape[0])

    def __call__(self, x_c: torch.Tensor, shared: torch.Tensor) -> torch.Tensor:
        """x_c (B, F + Uc), shared (Us,) -> (B, out)."""
        return torch.addmm(self.w_s @ shared + self.bias, x_c, self.w_c.t())


def _shared_width(user: nn.Module) -> int:
    """Width of the user vector's trailing columns that do not depend on the target listing."""
    if isinstance(user, ADPM):
        return sum(int(m.out_dim) for m in (user.pretrained, user.learned) if m is not None)
    if isinstance(user, LastKAverage):
        return int(user.out_dim)
    return 0
