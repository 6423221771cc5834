"""ADPM component 1: the adSformer encoder.

Over the merged listing sequence (every listing interaction, any action) each id packs the listing and the
action (``listing * A + action``, see :func:`adsformer.data.features.pack_actions`) and a token is the
listing's embedding plus the action's; the target's action slot is 0 (no action embedding).

Letters: B batch, M sequence length (after truncation to ``max_len``), L = M + 1 positions (the target
listing first), D = d1 model width, A action vocabulary size (0: plain listing ids).
"""

from __future__ import annotations

import torch
from torch import nn

from adsformer.adpm.config import EncoderConfig
from adsformer.layers.attention import AdSformerBlock
from adsformer.layers.packing import Packing
from adsformer.layers.pooling import lengths_to_mask, masked_max, masked_mean

#: Below this many rows per allowed group (``B // ROWS_PER_GROUP`` groups at most) the batch is one padded
#: block: packing costs a few operations of its own, which a small batch does not repay. The encoder alone on
#: the simulator (forward + backward, one thread) against 64: batch 64 5.4 ms against 7.9 (packed at last),
#: 128 8.3 against 8.7, 1,024 38.8 against 41.2; never slower.
ROWS_PER_GROUP = 32


class AdSformerEncoder(nn.Module):
    """Embed ids, put the target at position 0, add learned positions, N adSformer blocks, masked pooling."""

    def __init__(self, cfg: EncoderConfig, vocab_size: int, n_actions: int = 0) -> None:
        super().__init__()
        if cfg.pooling not in ("max", "mean"):
            raise ValueError(f"encoder pooling must be 'max' or 'mean', got {cfg.pooling!r}")
        self.cfg = cfg
        self.n_actions = int(n_actions)
        self.embed = nn.Embedding(vocab_size, cfg.dim, padding_idx=0)
        self.action = nn.Embedding(n_actions, cfg.dim, padding_idx=0) if n_actions else None
        self.position = nn.Embedding(cfg.max_len + 1, cfg.dim)
        self.blocks = nn.ModuleList(
            AdSformerBlock(
                cfg.dim,
                cfg.heads,
                cfg.head_dim,
                cfg.ffn_mult,
                cfg.dropout,
                private_first=not cfg.sequence_sees_target,  # the target is position 0
            )
            for _ in range(cfg.blocks)
        )
        self.out_dim = cfg.dim

    def tokens(
        self, target: torch.Tensor, ids: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids (B, L) with the target at position 0, and the mask (B, L) of real positions."""
        M = min(ids.shape[1], self.cfg.max_len)
        ids = ids[:, :M]  # (B, M) newest first
        lengths = lengths.clamp(max=M)
        if self.n_actions:
            target = target * self.n_actions  # packed, action slot 0
        tokens = torch.cat([target.unsqueeze(1), ids], dim=1)  # (B, L)
        target_real = torch.ones_like(lengths, dtype=torch.bool).unsqueeze(1)  # (B, 1)
        mask = torch.cat([target_real, lengths_to_mask(lengths, M)], dim=1)  # (B, L)
        return tokens, mask

    def encode(
        self, target: torch.Tensor, ids: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-position outputs (B, L, D) and their mask (B, L)."""
        tokens, mask = self.tokens(target, ids, lengths)
        L = tokens.shape[1]
        x = self.embed_tokens(tokens) + self.position.weight[:L].unsqueeze(0)  # (B, L, D)
        for block in self.blocks:
            x = block(x, mask)
        return x, mask

    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token embeddings (..., D) of ids (...): the listing's, plus the action's for packed ids."""
        if self.action is None:
            return self.embed(tokens)
        return self.embed(tokens // self.n_actions) + self.action(tokens % self.n_actions)

    def pooled(self, target: torch.Tensor, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """target (B,), ids (B, M), lengths (B,) -> (B, D): encode, then masked max or mean pooling."""
        x, mask = self.encode(target, ids, lengths)
        return masked_max(x, mask) if self.cfg.pooling == "max" else masked_mean(x, mask)

    def forward(self, target: torch.Tensor, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """target (B,), ids (B, M), lengths (B,) -> o1 (B, D).

        With ``length_groups = G > 1`` the real positions of all rows are packed (no padding) and every
        per-position layer -- embeddings, Q/K/V and output projections, layer norms, the feed-forward --
        runs once over them; attention and pooling, which mix positions, run on the rows sorted by length
        in at most ``min(G, B // ROWS_PER_GROUP)`` groups, each padded to its longest row only, the split
        the cheapest under the attention's cost model (see :class:`adsformer.layers.packing.Packing`). The
        same values as one padded block (rows never interact), at a fraction of the cost when lengths vary.
        Tracing (export) takes the single-block path, whose graph does not depend on the data.
        """
        B = ids.shape[0]
        G = min(self.cfg.length_groups, B // ROWS_PER_GROUP)
        if G <= 1 or torch.jit.is_tracing():
            return self.pooled(target, ids, lengths)
        tokens, mask = self.tokens(target, ids, lengths)  # (B, L), (B, L)
        packing = Packing.of(mask, G)
        positions = torch.arange(tokens.shape[1], device=tokens.device).expand_as(tokens)  # (B, L)
        x = self.embed_tokens(packing.pack(tokens)) + self.position(packing.pack(positions))  # (T, D)
        for block in self.blocks:
            assert isinstance(block, AdSformerBlock)
            x = block.forward_packed(x, packing)  # (T, D)
        pool = masked_max if self.cfg.pooling == "max" else masked_mean
        padded = packing.pad(x)  # (B_g, W_g, D) per group
        pooled = [pool(part, group.mask) for part, group in zip(padded, packing.groups, strict=True)]
        return packing.in_input_order(torch.cat(pooled))  # (B, D)
