"""Fast scoring of many candidate listings for one user: :class:`FastScorer`.

A ranking request scores B candidates (up to ~600) against one user's sequences. The plain batched forward
(:meth:`Ranker.forward` with the user's sequences repeated B times) recomputes everything the candidates
share. :class:`FastScorer` computes the same logits with the shared work done once:

* **user vector**. ADPM component 1 uses :mod:`adsformer.adpm.fast` (the first block's sequence-side work is
  shared: token projections, sequence-to-sequence attention; see there for why nothing after the first
  block is); components 2 and 3 (frozen and learned tables, average pooled) do not read the target and are
  computed once, as the mean of the one user's vectors. Last-k reads no target either (computed once); BST
  uses the shared first block too; the baseline has no user vector.
* **the ranker**. The wide input is ``x0 = [wide_b, u_target_b, u_shared]``. The first cross layer and the
  first deep layer are linear in ``x0``, so ``W x0 = W_c [wide_b, u_target_b] + (W_s u_shared + bias)``:
  the shared columns' product is computed once (components 2 and 3 are most of ``x0``'s width). The last
  cross layer is only read through the head's dot product, which folds into a (F + Uc) x (F + U) product
  per candidate (:class:`_LastCross`). Middle cross layers, the deep tower's later layers and the head's
  deep half run per candidate as usual.

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
from adsformer.adpm.pretrained import FrozenTable
from adsformer.models.ranker import Ranker
from adsformer.models.user import BST, LastKAverage, NoUser

SeqIds = dict[str, torch.Tensor]  # pair -> (1, M) ids of the one user, newest first
SeqLen = dict[str, torch.Tensor]  # pair -> (1,) lengths
Touch = torch.Tensor | None  # (B, P, 2) raw touch signals of each candidate
#: user module -> (target (B,), seq_ids, seq_len, touch) -> (per-target part (B, Uc), shared part (Us,))
UserSplit = Callable[[nn.Module, torch.Tensor, SeqIds, SeqLen, Touch], tuple[torch.Tensor, torch.Tensor]]


def _adpm(user: nn.Module, target: torch.Tensor, seq_ids: SeqIds, seq_len: SeqLen, touch: Touch) -> tuple:
    assert isinstance(user, ADPM)
    B = target.shape[0]
    if user.encoder is not None:
        pair = user.encoder_pair
        o1 = pooled_one_user(user.encoder, target, seq_ids[pair][0], int(seq_len[pair][0]))  # (B, D)
    else:
        o1 = target.new_zeros((B, 0), dtype=torch.float32)
    if user.touch is not None:  # component 4 reads each candidate's own signals: per target, after o1
        if touch is None:
            raise ValueError("the touch component needs each candidate's touch signals (B, P, 2)")
        o1 = torch.cat([o1, user.touch(touch)], dim=1)  # (B, D + 3P)
    if user.learned is not None and user.learned.attended:  # target attention: per candidate
        ids_b = {p: seq_ids[p].expand(B, -1) for p in user.learned.attended}  # (B, M) the one user's
        lens_b = {p: seq_len[p].expand(B) for p in user.learned.attended}  # (B,)
        o1 = torch.cat([o1, user.learned.attend(target, ids_b, lens_b)], dim=1)  # (B, ... + d_attended)
    shared = []  # components 2 and 3 for the one user: the mean of each sequence's vectors
    if user.pretrained is not None:
        for table in user.pretrained.tables:
            assert isinstance(table, FrozenTable)
            for pair in user.pretrained.pairs:
                ids = _real(seq_ids, seq_len, pair)
                ids = ids[table.present[ids]]  # listings without a vector are left out
                shared.append(_mean(table.lookup(ids), torch.arange(ids.numel())))  # (d2,) any table layout
    if user.learned is not None:
        for pair, table in zip(user.learned.pairs, user.learned.tables.values(), strict=True):
            assert isinstance(table, nn.Embedding)  # one table per pair, in the pairs' order
            if pair in user.learned.attended:
                continue
            shared.append(_mean(table.weight, _real(seq_ids, seq_len, pair)))  # (d_e,)
    return o1, torch.cat(shared) if shared else o1.new_zeros(0)


def _real(seq_ids: SeqIds, seq_len: SeqLen, pair: str) -> torch.Tensor:
    """The one user's real ids of ``pair`` (n,), padding cut off."""
    ids = seq_ids[pair][0]
    return ids[: max(0, min(int(seq_len[pair][0]), ids.shape[0]))]


def _mean(weight: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Mean of the rows ``ids`` of ``weight`` (zeros for none), as ``masked_mean`` pools one row."""
    if ids.numel() == 0:
        return weight.new_zeros(weight.shape[1])
    return weight[ids].sum(0) / ids.numel()


def _lastk(user: nn.Module, target: torch.Tensor, seq_ids: SeqIds, seq_len: SeqLen, touch: Touch) -> tuple:
    u = user(target[:1], seq_ids, seq_len)[0]  # (D,) reads no target
    return u.new_zeros((target.shape[0], 0)), u


def _bst(user: nn.Module, target: torch.Tensor, seq_ids: SeqIds, seq_len: SeqLen, touch: Touch) -> tuple:
    assert isinstance(user, BST)
    pair, k = user.cfg.pair, user.cfg.k
    x = encode_one_user(user.encoder, target, seq_ids[pair][0], int(seq_len[pair][0]))  # (B, L, D)
    x = nn.functional.pad(x, (0, 0, 0, k + 1 - x.shape[1]))  # (B, k+1, D): padded positions are zero
    return x.flatten(1), x.new_zeros(0)


def _none(user: nn.Module, target: torch.Tensor, seq_ids: SeqIds, seq_len: SeqLen, touch: Touch) -> tuple:
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
        cross = [layer for layer in model.cross.layers if isinstance(layer, nn.Linear)]  # all of them
        self._cross_first = _SplitLinear(cross[0], self.n_shared) if len(cross) > 1 else None
        self._cross_middle = cross[1:-1]
        self._cross_last = _LastCross(cross[-1], model.head, self.n_shared) if cross else None
        deep_first = model.deep.net[0] if len(model.deep.net) else None
        self._deep = _SplitLinear(deep_first, self.n_shared) if isinstance(deep_first, nn.Linear) else None
        w = model.head.weight.detach()[0]  # (F + U + deep_out,)
        self._head_x, self._head_deep = w[: model.in_dim], w[model.in_dim :]

    @torch.inference_mode()
    def logits(
        self,
        target: dict[str, torch.Tensor],
        categorical: dict[str, torch.Tensor],
        dense: torch.Tensor,
        seq_ids: SeqIds,
        seq_len: SeqLen,
        touch: Touch = None,
    ) -> torch.Tensor:
        """target / categorical: name -> (B,) ids, dense (B, F_d); seq_ids pair -> (1, M), seq_len pair ->
        (1,) for the one user; touch (B, P, 2) each candidate's touch signals  ->  logits (B,), as
        ``model(...)`` gives with the sequences repeated B times."""
        m = self.model
        if m.training:
            raise ValueError("FastScorer needs a model in eval() mode")
        parts = [emb(target[e]) for e, emb in m.target_emb.items()]
        parts += [emb(categorical[name]) for name, emb in m.cat_emb.items()]
        u_target, u_shared = self._split(m.user, target["listing"], seq_ids, seq_len, touch)  # (B, Uc), (Us,)
        x_c = torch.cat([*parts, dense, u_target], dim=1)  # (B, F + Uc)
        x0 = torch.cat([x_c, u_shared.expand(x_c.shape[0], -1)], dim=1)  # (B, F + U)
        deep = self._deep_forward(x0, x_c, u_shared)  # (B, deep_out)
        return self._cross_head(x0, x_c, u_shared) + deep @ self._head_deep + m.head.bias  # (B,)

    def _cross_head(self, x0: torch.Tensor, x_c: torch.Tensor, u_shared: torch.Tensor) -> torch.Tensor:
        """The head's cross half, ``h_x . cross(x0)`` (B,): layers but the last explicitly (the first with
        its shared columns' product once), the last folded into the head (see :class:`_LastCross`)."""
        if self._cross_last is None:
            return x0 @ self._head_x
        x = x0
        if self._cross_first is not None:
            x = x0 * self._cross_first(x_c, u_shared) + x0  # (B, F + U)
        for layer in self._cross_middle:
            x = x0 * layer(x) + x
        return self._cross_last(x, x_c, u_shared)

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


class _LastCross:
    """The last cross layer seen through the head: only ``h . x_L`` is needed, and

    ``h . (x0 * (W x + b) + x) = ((h * x0) W + h) . x + (h * x0) . b``

    where ``(h * x0) W`` splits into the per-candidate columns' product ``(h_c * x_c) W_c`` ((B, F + Uc) x
    (F + Uc, F + U)) and the shared columns' ``(h_s * s) W_s``, computed once: the (F + U) x (F + U) product
    per candidate becomes (F + Uc) x (F + U).
    """

    def __init__(self, linear: nn.Linear, head: nn.Linear, n_shared: int) -> None:
        w = linear.weight.detach()  # (out, in), out = in = F + U (rows pair with x0's columns)
        n_c = w.shape[0] - n_shared
        h = head.weight.detach()[0, : w.shape[0]]  # (F + U,)
        b = linear.bias.detach() if linear.bias is not None else torch.zeros(w.shape[0])
        self.h, self.h_c, self.h_s = h, h[:n_c], h[n_c:]
        self.w_c, self.w_s = w[:n_c].contiguous(), w[n_c:].contiguous()  # (F + Uc, F + U), (Us, F + U)
        self.b_c, self.b_s = b[:n_c], b[n_c:]

    def __call__(self, x: torch.Tensor, x_c: torch.Tensor, shared: torch.Tensor) -> torch.Tensor:
        """x (B, F + U) the previous layer's output, x_c (B, F + Uc), shared (Us,) -> h . x_L (B,)."""
        hs = self.h_s * shared  # (Us,)
        g = torch.addmm(hs @ self.w_s + self.h, self.h_c * x_c, self.w_c)  # (B, F + U)
        return (g * x).sum(1) + (self.h_c * x_c) @ self.b_c + hs @ self.b_s  # (B,)


def _shared_width(user: nn.Module) -> int:
    """Width of the user vector's trailing columns that do not depend on the target listing."""
    if isinstance(user, ADPM):
        learned = 0 if user.learned is None else int(user.learned.out_dim - user.learned.attended_dim)
        return learned + (0 if user.pretrained is None else int(user.pretrained.out_dim))
    if isinstance(user, LastKAverage):
        return int(user.out_dim)
    return 0
