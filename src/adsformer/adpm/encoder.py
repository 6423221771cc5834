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
from adsformer.layers.pooling import lengths_to_mask, masked_max, masked_mean

#: Length groups hold at least this many rows: fewer rows per group cost more in per-group work (a dozen
#: small operations forward and backward) than the padding they save. Training the encoder alone on the
#: simulator (forward + backward, one thread) measured fastest at about 64 rows a group: 4 groups at batch
#: 256 (25% faster than 32 groups), 16 at 1024 (17% faster), 32 at 4096.
ROWS_PER_GROUP = 64


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
            AdSformerBlock(cfg.dim, cfg.heads, cfg.head_dim, cfg.ffn_mult, cfg.dropout)
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

        With ``length_groups = G > 1`` the rows, sorted by length, are encoded in up to G groups (at least
        :data:`ROWS_PER_GROUP` rows each: below that a group's fixed cost outweighs its padding), each trimmed
        to its longest sequence, and put back in order: the same values as one padded block (rows never
        interact), at a fraction of the attention and feed-forward cost when lengths vary. Neighbouring
        groups of the same width are encoded as one (empty sequences, the common case, often fill several
        groups): fewer, larger passes for the same padding. Tracing (export) takes the single-block path,
        whose graph does not depend on the data.
        """
        B = ids.shape[0]
        G = min(self.cfg.length_groups, B // ROWS_PER_GROUP)
        if G <= 1 or torch.jit.is_tracing():
            return self.pooled(target, ids, lengths)
        lengths = lengths.clamp(max=min(ids.shape[1], self.cfg.max_len))
        order = torch.argsort(lengths, stable=True)  # (B,) shortest first
        parts = []
        for rows, width in _width_groups(order, lengths[order], G):  # (B_g,) rows of one width
            parts.append(self.pooled(target[rows], ids[rows, :width], lengths[rows]))  # (B_g, D)
        return torch.cat(parts)[torch.argsort(order)]  # (B, D) in the input order


def _width_groups(
    order: torch.Tensor, sorted_lengths: torch.Tensor, G: int
) -> list[tuple[torch.Tensor, int]]:
    """``order`` (B,) split into G near-equal groups, each with its width (its longest length);
    neighbours of equal width merged. ``sorted_lengths`` (B,) are the lengths in that order."""
    bounds = [len(r) for r in sorted_lengths.tensor_split(G)]  # group sizes
    ends = torch.tensor(bounds).cumsum(0).tolist()
    widths = [int(sorted_lengths[e - 1]) if e else 0 for e in ends]  # sorted: its last row is the longest
    groups: list[tuple[int, int, int]] = []  # (start, end, width)
    start = 0
    for end, width in zip(ends, widths, strict=True):
        if end == start:
            continue
        if groups and groups[-1][2] == width:
            groups[-1] = (groups[-1][0], end, width)
        else:
            groups.append((start, end, width))
        start = end
    return [(order[a:b], w) for a, b, w in groups]
