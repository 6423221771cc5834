"""The adSformer block: multi-head self-attention and a LeakyReLU feed-forward, each with dropout, a
residual connection and layer norm (post-norm, as in the paper's figure 2).

Letters: B batch, L positions, D model width, H heads, Dh width per head (``head_dim``; defaults to D / H,
and may be any width, as in Keras' ``MultiHeadAttention(num_heads, key_dim)``: the paper uses D = 32 with 3
heads).
Padding never influences a real position: padded keys are masked out of every softmax. Padded query rows
are computed (they are dropped by the pooling that follows) but cannot produce NaN, because every row keeps
at least its own key unmasked. With ``private_first`` position 0 (the encoder's target) reads every
position but no other position reads it: the other positions' outputs do not depend on position 0.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from adsformer.layers.packing import Packing


class MultiHeadSelfAttention(nn.Module):
    """Scaled dot-product self-attention with H heads and a key-padding mask; ``private_first``: no position
    but position 0 itself attends to position 0's key."""

    def __init__(
        self,
        dim: int,
        heads: int,
        head_dim: int | None = None,
        dropout: float = 0.0,
        *,
        private_first: bool = False,
    ) -> None:
        super().__init__()
        if head_dim is None:
            if dim % heads:
                raise ValueError(f"model width {dim} is not divisible by {heads} heads; set head_dim")
            head_dim = dim // heads
        self.heads, self.head_dim = heads, head_dim
        self.qkv = nn.Linear(dim, 3 * heads * head_dim)
        self.proj = nn.Linear(heads * head_dim, dim)
        self.dropout = dropout
        self.private_first = private_first

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, L, D), mask (B, L) bool (True = real) -> (B, L, D)."""
        return self.proj(self.attend(self.qkv(x), mask))  # (B, L, D)

    def forward_packed(self, x: torch.Tensor, packing: Packing) -> torch.Tensor:
        """x (T, D) packed real positions -> (T, D): the same values as :meth:`forward` at the real
        positions, the projections run once over all T positions and the attention one width group
        at a time."""
        padded = packing.pad(self.qkv(x))  # (B_g, W_g, 3*H*Dh) per group
        attended = [self.attend(part, group.mask) for part, group in zip(padded, packing.groups, strict=True)]
        return self.proj(packing.unpad(attended))  # (T, D)

    def attend(self, qkv: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The attention of projected queries, keys and values qkv (B, L, 3*H*Dh) -> (B, L, H*Dh),
        before the output projection; mask (B, L)."""
        B, L, _ = qkv.shape
        H, Dh = self.heads, self.head_dim
        q, k, v = qkv.split(H * Dh, dim=-1)  # 3 x (B, L, H*Dh)
        drop = self.dropout if self.training else 0.0
        if L == 1 and drop == 0.0:  # one position attends to itself alone: softmax weight 1, output v
            return v  # (B, 1, H*Dh), exactly what the attention below returns
        q, k, v = (t.view(B, L, H, Dh).transpose(1, 2) for t in (q, k, v))  # (B, H, L, Dh)
        # a query may attend to real keys, and always to itself (keeps all-padding rows finite)
        eye = (
            torch.eye(L, device=qkv.device) > 0
        )  # (L, L); a float eye exports to ONNX (EyeLike has no bool kernel)
        allowed = mask[:, None, None, :] | eye  # (B, 1, L, L)
        if self.private_first:  # key 0 is read by query 0 alone
            first = torch.arange(L, device=qkv.device) == 0  # (L,)
            allowed = allowed & (first[:, None] | ~first[None, :])  # (B, 1, L, L)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=drop)  # (B, H, L, Dh)
        return out.transpose(1, 2).reshape(B, L, H * Dh)  # (B, L, H*Dh)


class AdSformerBlock(nn.Module):
    """Self-attention -> dropout -> residual -> layer norm -> LeakyReLU FFN -> dropout -> residual -> norm."""

    def __init__(
        self,
        dim: int,
        heads: int,
        head_dim: int | None = None,
        ffn_mult: int = 4,
        dropout: float = 0.0,
        *,
        private_first: bool = False,
    ) -> None:
        super().__init__()
        self.attn = MultiHeadSelfAttention(dim, heads, head_dim, dropout, private_first=private_first)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn_mult * dim), nn.LeakyReLU(), nn.Linear(ffn_mult * dim, dim)
        )
        self.norm2 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, L, D), mask (B, L) -> (B, L, D)."""
        return self.after_attention(x, self.attn(x, mask))

    def forward_packed(self, x: torch.Tensor, packing: Packing) -> torch.Tensor:
        """x (T, D) packed real positions -> (T, D), equal to :meth:`forward` at the real positions."""
        return self.after_attention(x, self.attn.forward_packed(x, packing))

    def after_attention(self, x: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        """x, attended (..., D) -> (..., D): dropout, residual and norm, then the feed-forward's."""
        x = self.norm1(x + self.dropout(attended))
        return self.norm2(x + self.dropout(self.ffn(x)))
