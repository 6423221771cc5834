"""The adSformer encoder for many target listings and one user's sequence, with the shared work done once.

At serving, one request scores B candidate listings against the *same* user sequence. The plain batched
forward repeats the whole sequence for every candidate: B copies of the token embeddings, of the Q/K/V
projections, of the (L x L) attention and of the feed-forward over every position. This module computes
exactly the same per-position outputs with less work.

The default encoder (``sequence_sees_target: false``) keeps its sequence from the target: the sequence is
encoded once per request, and each candidate's target position attends to the cached keys and values of
every block (:func:`pooled_cached_sequence`, one position per candidate).

The paper's encoder (``sequence_sees_target: true``) puts the target listing at position 0 and lets every
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

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from adsformer.adpm.encoder import AdSformerEncoder
from adsformer.layers.attention import AdSformerBlock

#: Candidates are processed in chunks of about this many positions (chunk x L), so that the per-candidate
#: intermediates (the feed-forward's (chunk, L, ffn_mult * D) hidden layer above all) stay in cache.
CHUNK_POSITIONS = 4096


@dataclass(frozen=True)
class SharedSequence:
    """The first block's work on the sequence alone, done once per request (n >= 1).

    ``base`` (n, D): sequence inputs + the attention output over the sequence keys alone, projected (the
    residual input of the sequence positions when the target key takes no weight); ``q``, ``k``, ``v``
    (H, n, Dh); ``lse`` (H, n) the log-sum-exp of the sequence-to-sequence scores; ``p_s`` (H, n, D) each
    head's projected sequence-only attention output.
    """

    base: torch.Tensor
    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    lse: torch.Tensor
    p_s: torch.Tensor


def share_sequence(block: AdSformerBlock, x_s: torch.Tensor) -> SharedSequence:
    """x_s (n, D) sequence inputs (embeddings + positions 1..n) -> the shared part of the first block."""
    attn = block.attn
    H, Dh = attn.heads, attn.head_dim
    n, D = x_s.shape
    q, k, v = (t.reshape(n, H, Dh).transpose(0, 1) for t in attn.qkv(x_s).split(H * Dh, dim=-1))  # (H, n, Dh)
    s_ss = torch.einsum("hid,hjd->hij", q, k) * Dh**-0.5  # (H, n, n)
    o_ss = torch.softmax(s_ss, dim=-1) @ v  # (H, n, Dh)
    w_proj = attn.proj.weight.reshape(D, H, Dh)  # (D, H*Dh) -> (D, H, Dh)
    p_s = torch.einsum("dhe,hie->hid", w_proj, o_ss).contiguous()  # (H, n, D)
    base = x_s + p_s.sum(0) + attn.proj.bias  # (n, D)
    return SharedSequence(base, q, k, v, torch.logsumexp(s_ss, dim=-1), p_s)


def first_block_candidates(
    block: AdSformerBlock, x_t: torch.Tensor, shared: SharedSequence | None
) -> torch.Tensor:
    """The first block's outputs (C, L, D) for C targets x_t (C, D) (embedding + position 0) against the
    shared sequence (None: an empty sequence, L = 1)."""
    attn = block.attn
    H, Dh = attn.heads, attn.head_dim
    C, D = x_t.shape
    scale = Dh**-0.5  # scaled_dot_product_attention's default
    q_t, k_t, v_t = (t.reshape(C, H, Dh) for t in attn.qkv(x_t).split(H * Dh, dim=-1))  # 3 x (C, H, Dh)
    if shared is None:  # the target attends to itself alone
        x = (x_t + attn.proj(v_t.reshape(C, H * Dh))).unsqueeze(1)  # (C, 1, D)
    else:
        # position 0: the target's query against the target key and the n sequence keys
        s_tt = (q_t * k_t).sum(-1, keepdim=True) * scale  # (C, H, 1)
        s_ts = torch.einsum("chd,hjd->chj", q_t, shared.k) * scale  # (C, H, n)
        p = torch.softmax(torch.cat([s_tt, s_ts], dim=-1), dim=-1)  # (C, H, L)
        o_t = p[..., :1] * v_t + torch.einsum("chj,hjd->chd", p[..., 1:], shared.v)  # (C, H, Dh)
        x_0 = x_t + attn.proj(o_t.reshape(C, H * Dh))  # (C, D)
        # positions 1..n: the weight w of the target key in each sequence query's softmax, then
        # proj(w v_t + (1 - w) o_seq) = base + sum_h w_h (W_h v_t,h - W_h o_seq,h)
        s_st = torch.einsum("hid,chd->chi", shared.q, k_t) * scale  # (C, H, n)
        w = torch.sigmoid(s_st - shared.lse)  # (C, H, n)
        p_t = torch.einsum("dhe,che->chd", attn.proj.weight.reshape(D, H, Dh), v_t)  # (C, H, D)
        x_seq = torch.baddbmm(shared.base, w.transpose(1, 2), p_t)  # (C, n, D)
        for h in range(H):
            x_seq.addcmul_(w[:, h, :, None], shared.p_s[h], value=-1.0)  # (C, n, D)
        x = torch.cat([x_0.unsqueeze(1), x_seq], dim=1)  # (C, L, D)
    x = block.norm1(x)
    return block.norm2(x + _ffn(block.ffn, x))  # (C, L, D)


def _ffn(ffn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The block's feed-forward; Linear -> LeakyReLU -> Linear with the activation in place."""
    if isinstance(ffn, nn.Sequential) and len(ffn) == 3:
        first, act, second = ffn
        if isinstance(first, nn.Linear) and isinstance(act, nn.LeakyReLU) and isinstance(second, nn.Linear):
            h = nn.functional.linear(x, first.weight, first.bias)  # (C, L, ffn_mult * D)
            return second(nn.functional.leaky_relu_(h, act.negative_slope))
    return ffn(x)


def _candidate_chunks(
    encoder: AdSformerEncoder, target: torch.Tensor, ids: torch.Tensor, length: int
) -> Iterator[torch.Tensor]:
    """Per chunk of candidates, their per-position outputs (C, L, D): the shared work first, once."""
    if not encoder.cfg.sequence_sees_target:  # the sharing below assumes the sequence reads the target
        raise ValueError("an encoder whose sequence does not see the target scores by pooled_cached_sequence")
    n = _real_events(encoder, ids, length)
    pos = encoder.position.weight  # (max_len + 1, D)
    x_t = encoder.embed(target) + pos[0]  # (B, D): the target's action slot is 0 (no action embedding)
    x_s = encoder.embed_tokens(ids[:n]) + pos[1 : n + 1]  # (n, D)
    blocks = [b for b in encoder.blocks if isinstance(b, AdSformerBlock)]  # all of them
    shared = share_sequence(blocks[0], x_s) if blocks and n else None
    chunk = max(1, CHUNK_POSITIONS // (n + 1))
    for x_c in x_t.split(chunk):
        if not blocks:
            yield torch.cat([x_c.unsqueeze(1), x_s.unsqueeze(0).expand(x_c.shape[0], -1, -1)], dim=1)
            continue
        x = first_block_candidates(blocks[0], x_c, shared)  # (C, L, D)
        if len(blocks) > 1:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)  # (C, L) all real
            for block in blocks[1:]:
                x = block(x, mask)
        yield x


def _real_events(encoder: AdSformerEncoder, ids: torch.Tensor, length: int) -> int:
    """The number of real events the encoder reads of one sequence ``ids`` (M,); refuses training mode."""
    if encoder.training:
        raise RuntimeError("the one-user encoder path needs eval() mode (dropout would differ per candidate)")
    if ids.dim() != 1:
        raise ValueError(f"ids must be one sequence (M,), got shape {tuple(ids.shape)}")
    return max(0, min(int(length), ids.shape[0], encoder.cfg.max_len))


def encode_one_user(
    encoder: AdSformerEncoder, target: torch.Tensor, ids: torch.Tensor, length: int
) -> torch.Tensor:
    """Per-position outputs (B, L, D) for targets (B,) and one sequence ``ids`` (M,) of ``length`` events.

    Equal to ``encoder.encode(target, ids.expand(B, M), full(length))`` at its real positions (the first
    ``L = 1 + min(length, max_len)``); every position returned is real.
    """
    return torch.cat(list(_candidate_chunks(encoder, target, ids, length)))


def pooled_one_user(
    encoder: AdSformerEncoder, target: torch.Tensor, ids: torch.Tensor, length: int
) -> torch.Tensor:
    """o1 (B, D) for targets (B,) and one sequence: :func:`encode_one_user`, then max or mean pooling
    (per chunk of candidates)."""
    use_max = encoder.cfg.pooling == "max"
    parts = [
        x.amax(dim=1) if use_max else x.mean(dim=1) for x in _candidate_chunks(encoder, target, ids, length)
    ]
    return torch.cat(parts)  # (B, D)


def pooled_cached_sequence(
    encoder: AdSformerEncoder, target: torch.Tensor, ids: torch.Tensor, length: int
) -> torch.Tensor:
    """o1 (B, D) for targets (B,) and one sequence: the sequence positions are encoded once and attend only
    to each other (never to the target); in every block each target's position attends to itself and to
    the sequence's keys and values of that block (a key/value cache), then pooling over [target, sequence].
    Per candidate: one position per block instead of L.

    Exact for an encoder built with ``sequence_sees_target: false`` (its sequence positions never read the
    target). For the paper's encoder an approximation: the target's own row is what it computes for a
    target the sequence positions cannot see; the difference from :func:`pooled_one_user` is only the
    target's weight in the sequence positions' attention (``benchmarks/scoring.py`` measures it on a test
    split)."""
    n = _real_events(encoder, ids, length)
    pos = encoder.position.weight  # (max_len + 1, D)
    x_t = encoder.embed(target) + pos[0]  # (B, D)
    x_s = encoder.embed_tokens(ids[:n]) + pos[1 : n + 1]  # (n, D)
    for block in encoder.blocks:
        assert isinstance(block, AdSformerBlock)
        attn = block.attn
        H, Dh = attn.heads, attn.head_dim
        q_t, k_t, v_t = (t.reshape(-1, H, Dh) for t in attn.qkv(x_t).split(H * Dh, dim=-1))  # (B, H, Dh)
        if n:
            q_s, k_s, v_s = (t.reshape(n, H, Dh).transpose(0, 1) for t in attn.qkv(x_s).split(H * Dh, dim=-1))
            scale = Dh**-0.5
            s_tt = (q_t * k_t).sum(-1, keepdim=True) * scale  # (B, H, 1)
            s_ts = torch.einsum("bhd,hjd->bhj", q_t, k_s) * scale  # (B, H, n)
            p = torch.softmax(torch.cat([s_tt, s_ts], dim=-1), dim=-1)  # (B, H, L)
            o_t = p[..., :1] * v_t + torch.einsum("bhj,hjd->bhd", p[..., 1:], v_s)  # (B, H, Dh)
            o_s = nn.functional.scaled_dot_product_attention(q_s, k_s, v_s)  # (H, n, Dh)
            x_s = _block_rest(block, x_s, attn.proj(o_s.transpose(0, 1).reshape(n, H * Dh)))  # (n, D)
        else:
            o_t = v_t  # the target attends to itself alone
        x_t = _block_rest(block, x_t, attn.proj(o_t.reshape(-1, H * Dh)))  # (B, D)
    if not n:
        return x_t
    if encoder.cfg.pooling == "max":
        return torch.maximum(x_t, x_s.amax(dim=0))  # (B, D)
    return (x_t + x_s.sum(dim=0)) / (n + 1)  # (B, D)


def _block_rest(block: AdSformerBlock, x: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
    """The block after its attention: x (N, D) inputs, attended (N, D) the projected attention output
    -> (N, D) (residual, layer norm, feed-forward, residual, layer norm; no dropout in eval)."""
    x = block.norm1(x + attended)
    return block.norm2(x + _ffn(block.ffn, x))
