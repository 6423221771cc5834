"""The adSformer encoder for many target listings and one user's sequence, with the shared work done once.

At serving, one request scores B candidate listings against the *same* user sequence. The plain batched
forward repeats the whole sequence for every candidate: B copies of the token embeddings, of the Q/K/V
projections, of the (L x L) attention and of the feed-forward over every position. This module computes
exactly the same per-position outputs with less work.

What can be shared exactly. The encoder puts the target listing at position 0 and self-attention lets every
position attend to it, so after the first block every position depends on the target: from the first
block's output on, nothing is shareable. Inside the first block, for the n real sequence positions:

* shared (computed once per request): the sequence token embeddings + positions ``X_s`` (n, D); their
  Q, K, V projections; the sequence-to-sequence attention scores (H, n, n), their softmax normaliser
  (log-sum-exp) and the attention output over the sequence keys alone, already projected by the output
  matrix (H, n, D);
* per candidate (B rows): the target's embedding and Q, K, V; the target row of attention (the target
  query against all L keys); for each sequence query, the one score against the target's key, which
  enters the softmax as ``w = sigmoid(s_target - logsumexp(s_sequence))`` -- the weight the target key
  takes -- so the attention output is ``w * v_target + (1 - w) * o_sequence`` and, by linearity, its
  projection is ``c + sum_h w_h * (W_h v_target_h - W_h o_sequence_h)`` (an (n, H) x (H, D) product per
  candidate instead of the (L, L) attention and the (L, H*Dh) x (H*Dh, D) projection);
* then, per candidate as before: residual, layer norm, the feed-forward over all L positions, later
  blocks (all positions are real, so no mask is needed), pooling.

Padding never enters: only the ``n = min(length, max_len)`` real events are used, which is what the padded
forward computes for its real positions (padded keys are masked out of every softmax; pooling ignores
padded rows). Outputs equal the plain batched forward up to float rounding (tested to 1e-5). Dropout must
be off (``eval()``); with ``training`` set the functions refuse.

Letters: B candidates, M sequence width given, n real events used (n <= max_len), L = n + 1 positions
(target first), D model width, H heads, Dh width per head.
"""

from __future__ import annotations

import torch

from adsformer.adpm.encoder import AdSformerEncoder
from adsformer.layers.attention import AdSformerBlock


def first_block_shared(block: AdSformerBlock, x_t: torch.Tensor, x_s: torch.Tensor) -> torch.Tensor:
    """One adSformer block over ``[target_b, sequence]`` for every b, sharing the sequence-side work.

    x_t (B, D) target inputs (embedding + position 0), x_s (n, D) sequence inputs -> (B, L, D).
    """
    attn = block.attn
    if block.training:
        raise RuntimeError("first_block_shared needs eval() mode (dropout would differ per candidate)")
    H, Dh = attn.heads, attn.head_dim
    B, D = x_t.shape
    n = x_s.shape[0]
    scale = Dh**-0.5  # scaled_dot_product_attention's default
    q_t, k_t, v_t = (t.reshape(B, H, Dh) for t in attn.qkv(x_t).split(H * Dh, dim=-1))  # 3 x (B, H, Dh)
    if n == 0:  # the target attends to itself alone
        x = (x_t + attn.proj(v_t.reshape(B, H * Dh))).unsqueeze(1)  # (B, 1, D)
    else:
        q_s, k_s, v_s = (
            t.reshape(n, H, Dh).transpose(0, 1) for t in attn.qkv(x_s).split(H * Dh, dim=-1)
        )  # 3 x (H, n, Dh)
        # position 0: the target's query against the target key and the n sequence keys
        s_tt = (q_t * k_t).sum(-1, keepdim=True) * scale  # (B, H, 1)
        s_ts = torch.einsum("bhd,hjd->bhj", q_t, k_s) * scale  # (B, H, n)
        p = torch.softmax(torch.cat([s_tt, s_ts], dim=-1), dim=-1)  # (B, H, L)
        o_t = p[..., :1] * v_t + torch.einsum("bhj,hjd->bhd", p[..., 1:], v_s)  # (B, H, Dh)
        a_t = attn.proj(o_t.reshape(B, H * Dh))  # (B, D)
        # positions 1..n: shared sequence-to-sequence attention, then the target key's share per candidate
        s_ss = torch.einsum("hid,hjd->hij", q_s, k_s) * scale  # (H, n, n)
        lse = torch.logsumexp(s_ss, dim=-1)  # (H, n)
        o_ss = torch.softmax(s_ss, dim=-1) @ v_s  # (H, n, Dh)
        w_proj = attn.proj.weight.reshape(D, H, Dh)  # (D, H*Dh) -> (D, H, Dh)
        p_s = torch.einsum("dhe,hie->hid", w_proj, o_ss)  # (H, n, D) projected sequence-only outputs
        c = p_s.sum(0) + attn.proj.bias  # (n, D)
        p_t = torch.einsum("dhe,bhe->bhd", w_proj, v_t)  # (B, H, D) projected target values
        s_st = torch.einsum("hid,bhd->bhi", q_s, k_t) * scale  # (B, H, n)
        w = torch.sigmoid(s_st - lse)  # (B, H, n): softmax weight of the target key for each query
        a_s = c + torch.bmm(w.transpose(1, 2), p_t)  # (B, n, D)
        for h in range(H):
            a_s = a_s - w[:, h, :, None] * p_s[h]  # (B, n, D)
        x = torch.cat([(x_t + a_t).unsqueeze(1), x_s + a_s], dim=1)  # (B, L, D)
    x = block.norm1(x)
    return block.norm2(x + block.ffn(x))  # (B, L, D)


def encode_one_user(
    encoder: AdSformerEncoder, target: torch.Tensor, ids: torch.Tensor, length: int
) -> torch.Tensor:
    """Per-position outputs (B, L, D) for targets (B,) and one sequence ``ids`` (M,) of ``length`` events.

    Equal to ``encoder.encode(target, ids.expand(B, M), full(length))`` at its real positions (the first
    ``L = 1 + min(length, max_len)``); every position returned is real.
    """
    if encoder.training:
        raise RuntimeError("encode_one_user needs eval() mode")
    if ids.dim() != 1:
        raise ValueError(f"ids must be one sequence (M,), got shape {tuple(ids.shape)}")
    n = max(0, min(int(length), ids.shape[0], encoder.cfg.max_len))
    pos = encoder.position.weight  # (max_len + 1, D)
    x_t = encoder.embed(target) + pos[0]  # (B, D)
    x_s = encoder.embed(ids[:n]) + pos[1 : n + 1]  # (n, D)
    blocks = [b for b in encoder.blocks if isinstance(b, AdSformerBlock)]  # all of them
    if not blocks:
        return torch.cat([x_t.unsqueeze(1), x_s.unsqueeze(0).expand(x_t.shape[0], -1, -1)], dim=1)
    x = first_block_shared(blocks[0], x_t, x_s)  # (B, L, D)
    if len(blocks) > 1:
        mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)  # (B, L) all real
        for block in blocks[1:]:
            x = block(x, mask)
    return x


def pooled_one_user(
    encoder: AdSformerEncoder, target: torch.Tensor, ids: torch.Tensor, length: int
) -> torch.Tensor:
    """o1 (B, D) for targets (B,) and one sequence: :func:`encode_one_user`, then max or mean pooling."""
    x = encode_one_user(encoder, target, ids, length)  # (B, L, D), all real
    return x.amax(dim=1) if encoder.cfg.pooling == "max" else x.mean(dim=1)
