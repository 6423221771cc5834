"""ADPM component 3: representations learned on the fly, one embedding table per (entity, action) pair,
average pooled over the sequence and concatenated.

The average is taken over the real ids only, packed: ``embedding_bag`` looks up the T real ids of the batch
and averages each row's bag, instead of looking up the padded (B, M) block and masking it. Sequences are
short next to the widest one in a batch (on the simulator, the mean length of a pair is 1-10% of its
batch maximum), so this does a fraction of the work, and the (B, M, d) block is never built. The values are
the masked mean's, up to float summation order.

Letters: B batch, M sequence length, T real ids in the batch, P pairs, d_e the width of entity e.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn
from torch.nn import functional as F

from adsformer.layers.pooling import lengths_to_mask


class LearnedComponent(nn.Module):
    """``tables[pair]`` is an ``nn.Embedding(vocab_size(entity), d_entity)``; output (B, sum of d)."""

    def __init__(
        self, pairs: list[str], vocab_sizes: dict[str, int], dims: dict[str, int], pooling: str = "mean"
    ) -> None:
        super().__init__()
        if not pairs:
            raise ValueError("component 3 is enabled but no (entity, action) pair is configured")
        if pooling not in ("mean", "target"):
            raise ValueError(f"component 3 pooling must be 'mean' or 'target', got {pooling!r}")
        self.pairs = list(pairs)
        #: pairs pooled by target attention (listing sequences, with pooling="target"); they depend on the
        #: target, so the fast one-user scorer computes them per candidate
        self.attended = [p for p in self.pairs if pooling == "target" and p.startswith("listing:")]
        self.tables = nn.ModuleDict()
        for pair in self.pairs:
            entity = pair.split(":", 1)[0]
            self.tables[_key(pair)] = nn.Embedding(vocab_sizes[entity], dims[entity], padding_idx=0)
        self.out_dim = sum(dims[p.split(":", 1)[0]] for p in self.pairs)
        self.attended_dim = sum(dims[p.split(":", 1)[0]] for p in self.attended)

    def forward(
        self,
        seq_ids: dict[str, torch.Tensor],
        seq_len: dict[str, torch.Tensor],
        target: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """-> (B, sum d_e): the averaged pairs, then the target-attended ones (``target`` (B,) needed)."""
        return torch.cat([self.averaged(seq_ids, seq_len), self.attend(target, seq_ids, seq_len)], dim=1)

    def attend(
        self, target: torch.Tensor | None, seq_ids: dict[str, torch.Tensor], seq_len: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """Target attention over each attended pair: (B, sum d_e of those pairs); (B, 0) when none."""
        parts = []
        for pair in self.attended:
            if target is None:
                raise ValueError("target attention pooling needs the target listing ids")
            ids, lengths = seq_ids[pair], seq_len[pair].clamp(max=seq_ids[pair].shape[1])  # (B, M), (B,)
            table = cast(nn.Embedding, self.tables[_key(pair)])
            e = table(ids)  # (B, M, d)
            q = table(target)  # (B, d)
            scores = torch.einsum("bmd,bd->bm", e, q) * e.shape[-1] ** -0.5  # (B, M)
            mask = lengths_to_mask(lengths, ids.shape[1])  # (B, M)
            w = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=1).nan_to_num(0.0)  # empty: 0
            parts.append(torch.einsum("bm,bmd->bd", w, e))  # (B, d)
        if not parts:
            B = next(iter(seq_len.values())).shape[0] if seq_len else 0
            return torch.zeros((B, 0))
        return torch.cat(parts, dim=1)

    def averaged(self, seq_ids: dict[str, torch.Tensor], seq_len: dict[str, torch.Tensor]) -> torch.Tensor:
        """The averaged pairs (B, sum d_e), in the pairs' order."""
        parts = []
        for pair in self.pairs:
            if pair in self.attended:
                continue
            ids, lengths = seq_ids[pair], seq_len[pair].clamp(max=seq_ids[pair].shape[1])  # (B, M), (B,)
            real = ids[lengths_to_mask(lengths, ids.shape[1])]  # (T,) row by row, in order
            offsets = torch.cumsum(lengths, 0) - lengths  # (B,) start of each row's bag
            table = cast(nn.Embedding, self.tables[_key(pair)])
            # mean of each bag; an empty bag (empty sequence) is zeros, as the masked mean gives
            parts.append(
                F.embedding_bag(real, table.weight, offsets, mode="mean", sparse=table.sparse)
            )  # (B, d_e)
        return torch.cat(parts, dim=1)  # (B, sum d_e)

    def one_user(
        self, target: torch.Tensor, seq_ids: dict[str, torch.Tensor], seq_len: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """For targets (B,) and one user (seq_ids pair -> (1, M), seq_len pair -> (1,)): the attended pairs
        per target (B, d_attended) and the averaged pairs once (sum d_e of those,), as ``forward`` lays
        them out for B rows of that user."""
        B = target.shape[0]
        ids_b = {p: seq_ids[p].expand(B, -1) for p in self.attended}  # (B, M) the one user's
        lens_b = {p: seq_len[p].expand(B) for p in self.attended}  # (B,)
        attended = self.attend(target, ids_b, lens_b) if self.attended else target.new_zeros((B, 0)).float()
        averaged = [p for p in self.pairs if p not in self.attended]
        if not averaged:
            return attended, attended.new_zeros(0)
        lengths = torch.cat([seq_len[p] for p in averaged]).tolist()  # one conversion for every pair
        shared = []
        for pair, length in zip(averaged, lengths, strict=True):
            n = max(0, min(int(length), seq_ids[pair].shape[1]))
            weight = cast(nn.Embedding, self.tables[_key(pair)]).weight  # (V, d_e)
            if n:  # the mean of the n real ids' rows (index_select: fewer operations than a bag for one row)
                shared.append(weight.index_select(0, seq_ids[pair][0, :n]).mean(0))  # (d_e,)
            else:
                shared.append(weight.new_zeros(weight.shape[1]))
        return attended, torch.cat(shared)


def _key(pair: str) -> str:
    """ModuleDict keys may not contain '.'; pair names are 'entity:action'."""
    return pair.replace(".", "_")
