"""The adSformer block: multi-head self-attention and a LeakyReLU feed-forward, each with dropout, a
residual connection and layer norm (post-norm, as in the paper's figure 2).

Letters: B batch, L positions, D model width, H heads, Dh width per head (``head_dim``; defaults to D / H,
and may be any width, as in Keras' ``MultiHeadAttention(num_heads, key_dim)``: the paper uses D = 32 with 3
heads).
Padding never influences a real position: padded keys are masked out of every softmax. Padded query rows
are computed (they are dropped by the pooling that follows) but cannot produce NaN, because every row keeps
at least its own key unmasked.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class MultiHeadSelfAttention(nn.Module):
    """Scaled dot-product self-attention with H heads and a key-padding mask."""

    def __init__(self, dim: int, heads: int, head_dim: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        if head_dim is None:
            if dim % heads:
                raise ValueError(f"model width {dim} is not divisible by {heads} heads; set head_dim")
            head_dim = dim // heads
        self.heads, self.head_dim = heads, head_dim
        self.qkv = nn.Linear(dim, 3 * heads * head_dim)
        self.proj = nn.Linear(heads * head_dim, dim)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, L, D), mask (B, L) bool (True = real) -> (B, L, D)."""
        B, L, _ = x.shape
        H, Dh = self.heads, self.head_dim
        q, k, v = self.qkv(x).split(H * Dh, dim=-1)  # 3 x (B, L, H*Dh)
        drop = self.dropout if self.training else 0.0
        if L == 1 and drop == 0.0:  # one position attends to itself alone: softmax weight 1, output v
            return self.proj(v)  # (B, 1, D), exactly what the attention below returns
        q, k, v = (t.view(B, L, H, Dh).transpose(1, 2) for t in (q, k, v))  # (B, H, L, Dh)
        # a query may attend to real keys, and always to itself (keeps all-padding rows finite)
        eye = (
            torch.eye(L, device=x.device) > 0
        )  # (L, L); a float eye exports to ONNX (EyeLike has no bool kernel)
        allowed = mask[:, None, None, :] | eye  # (B, 1, L, L)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=drop)  # (B, H, L, Dh)
        out = out.transpose(1, 2).reshape(B, L, H * Dh)  # (B, L, H*Dh)
        return self.proj(out)  # (B, L, D)


class AdSformerBlock(nn.Module):
    """Self-attention -> dropout -> residual -> layer norm -> LeakyReLU FFN -> dropout -> residual -> norm."""

    def __init__(
        self, dim: int, heads: int, head_dim: int | None = None, ffn_mult: int = 4, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.attn = MultiHeadSelfAttention(dim, heads, head_dim, dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn_mult * dim), nn.LeakyReLU(), nn.Linear(ffn_mult * dim, dim)
        )
        self.norm2 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, L, D), mask (B, L) -> (B, L, D)."""
        x = self.norm1(x + self.dropout(self.attn(x, mask)))
        return self.norm2(x + self.dropout(self.ffn(x)))
