"""User modules other than ADPM: none (non-personalized), last-k average (eBay), BST.

Every user module maps ``(target (B,), seq_ids {pair: (B, M)}, seq_len {pair: (B,)}, touch (B, P, 2))`` to
``(B, out_dim)``, so the ranker can take any of them (only ADPM reads the touch signals).

Letters: B batch, M sequence length, k positions used, D width.
"""

from __future__ import annotations

import torch
from torch import nn

from adsformer.adpm.config import EncoderConfig
from adsformer.adpm.encoder import AdSformerEncoder
from adsformer.layers.pooling import lengths_to_mask, masked_mean
from adsformer.models.config import BSTConfig, LastKConfig


class NoUser(nn.Module):
    """The non-personalized baseline: an empty user vector."""

    out_dim = 0

    def forward(
        self,
        target: torch.Tensor,
        seq_ids: dict[str, torch.Tensor],
        seq_len: dict[str, torch.Tensor],
        touch: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return target.new_zeros((target.shape[0], 0), dtype=torch.float32)  # (B, 0)


class LastKAverage(nn.Module):
    """Mean of learned embeddings of the newest k events of one sequence."""

    def __init__(self, cfg: LastKConfig, vocab_size: int, n_actions: int = 0) -> None:
        super().__init__()
        self.cfg = cfg
        self.n_actions = int(n_actions)  # > 0: the merged sequence, ids pack listing * A + action
        self.embed = nn.Embedding(vocab_size, cfg.dim, padding_idx=0)
        self.out_dim = cfg.dim

    def forward(
        self,
        target: torch.Tensor,
        seq_ids: dict[str, torch.Tensor],
        seq_len: dict[str, torch.Tensor],
        touch: torch.Tensor | None = None,
    ) -> torch.Tensor:
        k = min(self.cfg.k, seq_ids[self.cfg.pair].shape[1])
        ids = seq_ids[self.cfg.pair][:, :k]  # (B, k) newest first
        if self.n_actions:
            ids = ids // self.n_actions  # the listing of each merged-sequence token
        mask = lengths_to_mask(seq_len[self.cfg.pair].clamp(max=k), k)  # (B, k)
        return masked_mean(self.embed(ids), mask)  # (B, D)


class BST(nn.Module):
    """Transformer over [target, last k]; all k + 1 outputs concatenated (no pooling), padding zeroed."""

    def __init__(self, cfg: BSTConfig, vocab_size: int, n_actions: int = 0) -> None:
        super().__init__()
        self.cfg = cfg
        enc = EncoderConfig(
            pair=cfg.pair,
            dim=cfg.dim,
            heads=cfg.heads,
            head_dim=cfg.head_dim,
            blocks=cfg.blocks,
            dropout=cfg.dropout,
            max_len=cfg.k,
        )
        self.encoder = AdSformerEncoder(enc, vocab_size, n_actions)
        self.out_dim = (cfg.k + 1) * cfg.dim

    def forward(
        self,
        target: torch.Tensor,
        seq_ids: dict[str, torch.Tensor],
        seq_len: dict[str, torch.Tensor],
        touch: torch.Tensor | None = None,
    ) -> torch.Tensor:
        ids, lengths = seq_ids[self.cfg.pair], seq_len[self.cfg.pair]
        if ids.shape[1] < self.cfg.k:  # short sequences: pad to k positions
            ids = nn.functional.pad(ids, (0, self.cfg.k - ids.shape[1]))
        x, mask = self.encoder.encode(target, ids, lengths)  # (B, k+1, D), (B, k+1)
        x = x * mask.unsqueeze(-1).to(x.dtype)
        return x.flatten(1)  # (B, (k+1) * D)
