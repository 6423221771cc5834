"""User modules other than ADPM: none (non-personalized), last-k average (eBay), BST.

Each is a :class:`~adsformer.layers.user.UserModule`: it maps the model's inputs
(:class:`~adsformer.data.inputs.ModelInputs`: the target listing (B,), seq_ids {pair: (B, M)}, seq_len
{pair: (B,)}, touch (B, P, 2)) to ``(B, out_dim)``, so the ranker can take any of them (only ADPM reads the
touch signals), and splits its one-user form into per-target and shared columns itself.

Letters: B batch (or candidates of one user), M sequence length, k positions used, D width.
"""

from __future__ import annotations

import torch
from torch import nn

from adsformer.adpm.config import EncoderConfig
from adsformer.adpm.encoder import AdSformerEncoder
from adsformer.adpm.fast import encode_one_user
from adsformer.data.inputs import ModelInputs
from adsformer.layers.pooling import lengths_to_mask, masked_mean
from adsformer.layers.user import OneUser, OneUserMode, UserModule, no_columns, require_eval
from adsformer.models.config import BSTConfig, LastKConfig


class NoUser(UserModule):
    """The non-personalized baseline: an empty user vector."""

    out_dim = 0
    shared_dim = 0

    def forward(self, inputs: ModelInputs) -> torch.Tensor:
        return no_columns(inputs.listing)  # (B, 0)

    def one_user(self, inputs: ModelInputs, *, mode: OneUserMode = "exact") -> OneUser:
        empty = no_columns(inputs.listing)  # (B, 0)
        return OneUser(empty, empty.new_zeros(0))


class LastKAverage(UserModule):
    """Mean of learned embeddings of the newest k events of one sequence."""

    def __init__(self, cfg: LastKConfig, vocab_size: int, n_actions: int = 0) -> None:
        super().__init__()
        self.cfg = cfg
        self.n_actions = int(n_actions)  # > 0: the merged sequence, ids pack listing * A + action
        self.embed = nn.Embedding(vocab_size, cfg.dim, padding_idx=0)
        self.out_dim = cfg.dim
        self.shared_dim = cfg.dim  # reads no target: every column is shared
        self.pairs = (cfg.pair,)

    def forward(self, inputs: ModelInputs) -> torch.Tensor:
        ids, lengths = inputs.seq_ids[self.cfg.pair], inputs.seq_len[self.cfg.pair]
        k = min(self.cfg.k, ids.shape[1])
        ids = ids[:, :k]  # (B, k) newest first
        if self.n_actions:
            ids = ids // self.n_actions  # the listing of each merged-sequence token
        mask = lengths_to_mask(lengths.clamp(max=k), k)  # (B, k)
        return masked_mean(self.embed(ids), mask)  # (B, D)

    def one_user(self, inputs: ModelInputs, *, mode: OneUserMode = "exact") -> OneUser:
        u = self(inputs)[0]  # (D,) computed once from the one user's (1, M) sequences: reads no target
        return OneUser(u.new_zeros((len(inputs), 0)), u)


class BST(UserModule):
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
            sequence_sees_target=True,  # BST: every position attends to every other
        )
        self.encoder = AdSformerEncoder(enc, vocab_size, n_actions)
        self.out_dim = (cfg.k + 1) * cfg.dim
        self.shared_dim = 0  # every position attends to the target
        self.pairs = (cfg.pair,)

    def forward(self, inputs: ModelInputs) -> torch.Tensor:
        ids, lengths = inputs.seq_ids[self.cfg.pair], inputs.seq_len[self.cfg.pair]
        if ids.shape[1] < self.cfg.k:  # short sequences: pad to k positions
            ids = nn.functional.pad(ids, (0, self.cfg.k - ids.shape[1]))
        x, mask = self.encoder.encode(inputs.listing, ids, lengths)  # (B, k+1, D), (B, k+1)
        x = x * mask.unsqueeze(-1).to(x.dtype)
        return x.flatten(1)  # (B, (k+1) * D)

    def one_user(self, inputs: ModelInputs, *, mode: OneUserMode = "exact") -> OneUser:
        """Exact in either mode: the first block's sequence-side work shared (:mod:`adsformer.adpm.fast`)."""
        require_eval(self)
        pair, k = self.cfg.pair, self.cfg.k
        ids, length = inputs.seq_ids[pair][0], int(inputs.seq_len[pair][0])
        x = encode_one_user(self.encoder, inputs.listing, ids, length)  # (B, L, D)
        x = nn.functional.pad(x, (0, 0, 0, k + 1 - x.shape[1]))  # (B, k+1, D): padded positions are zero
        return OneUser(x.flatten(1), x.new_zeros(0))
