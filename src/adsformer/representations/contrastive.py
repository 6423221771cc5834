"""In-batch softmax training over related pairs, shared by AIR (listing, listing) and the retrieval two-tower
model (query, listing): the symmetric loss and the seeded epoch loop.

Letters: B pairs in a batch, D vector width.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn


def in_batch_softmax_loss(
    za: torch.Tensor, zb: torch.Tensor, a: torch.Tensor, b: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Symmetric in-batch softmax over cosine / temperature. za, zb (B, D) unit vectors of the pairs'
    listings a, b (B,) (row indices); copies of the positive listing among the negatives are masked."""
    logits = za @ zb.T / temperature  # (B, B)
    eye = torch.eye(len(a), dtype=torch.bool, device=za.device)
    same_b = (b.unsqueeze(0) == b.unsqueeze(1)) & ~eye  # (B, B): column j is listing b_i again
    same_a = (a.unsqueeze(0) == a.unsqueeze(1)) & ~eye
    target = torch.arange(len(a), device=za.device)
    loss_ab = nn.functional.cross_entropy(logits.masked_fill(same_b, float("-inf")), target)
    loss_ba = nn.functional.cross_entropy(logits.T.masked_fill(same_a, float("-inf")), target)
    return (loss_ab + loss_ba) / 2


def fit_pairs(
    batch_loss: Callable[[np.ndarray], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    n_pairs: int,
    *,
    epochs: int,
    batch_size: int,
    rng: np.random.Generator,
    on_step: Callable[[], None] = lambda: None,
    on_epoch: Callable[[int, float], None] = lambda _epoch, _loss: None,
) -> list[float]:
    """Train for ``epochs`` epochs over ``n_pairs`` pairs; returns each epoch's mean loss.

    Each epoch draws a permutation of the pairs from ``rng`` and takes ``max(1, n_pairs // batch_size)``
    batches of it (the last partial batch is dropped); ``batch_loss(rows)`` gets a batch's pair rows (B,)
    and returns its loss (e.g. :func:`in_batch_softmax_loss`), which one ``optimizer`` step follows.
    ``on_step()`` runs after every step, ``on_epoch(epoch, mean_loss)`` after every epoch (0-based).
    """
    steps = max(1, n_pairs // batch_size)
    losses: list[float] = []
    for epoch in range(epochs):
        order = rng.permutation(n_pairs)
        total = 0.0
        for s in range(steps):
            loss = batch_loss(order[s * batch_size : (s + 1) * batch_size])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
            on_step()
        losses.append(total / steps)
        on_epoch(epoch, total / steps)
    return losses
