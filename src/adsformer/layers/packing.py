"""Variable-length sequences packed without padding, padded again one width group at a time.

B sequences of ``n_b >= 1`` real positions each are held as one packed (T, C) tensor, T = sum n_b, with
the rows sorted by length (shortest first) so that every width group's positions are one contiguous
slice. Layers that act on each position alone (linear maps, layer norm, a feed-forward) run once over the
T real positions: no padding, one operation for the whole batch. What mixes positions (attention,
pooling) pads one group at a time to that group's width, where the rows are of near-equal length.

Letters: B rows, L padded width, T real positions in all, B_g rows and W_g width of one group, P padded
positions of all groups (sum of B_g * W_g), C channels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class WidthGroup:
    """Consecutive rows of the sorted batch, padded to width W_g = the longest of them; ``mask`` (B_g, W_g)
    marks their real positions (a prefix of each row)."""

    mask: torch.Tensor

    @property
    def size(self) -> int:
        """B_g * W_g padded positions."""
        return self.mask.numel()


@dataclass(frozen=True)
class Packing:
    """How a padded (B, L, ...) batch with mask (B, L) packs into (T, ...), and its width groups."""

    order: torch.Tensor  # (B,) input rows, shortest first: the packed row order
    inverse: torch.Tensor  # (B,) position of each input row in ``order``
    flat: torch.Tensor  # (T,) the real positions of the padded (B * L) batch, in packed order
    gather: torch.Tensor  # (P,) each group's padded positions, group after group: the packed row, T = zeros
    real: torch.Tensor  # (T,) the real positions among those P, in packed order
    groups: tuple[WidthGroup, ...]

    @classmethod
    def of(cls, mask: torch.Tensor, groups: int) -> Packing:
        """The packing of rows with real positions ``mask`` (B, L) (a prefix of each row, at least one),
        in at most ``groups`` width groups, the cheapest under the attention's cost model (:func:`_spans`)."""
        if groups < 1 or mask.shape[0] == 0:
            raise ValueError(
                f"packing needs at least one row and one group, got {mask.shape[0]} and {groups}"
            )
        L, device = mask.shape[1], mask.device
        lengths = mask.sum(1)  # (B,)
        order = torch.argsort(lengths, stable=True)  # (B,)
        sorted_mask = mask[order]  # (B, L)
        T = int(lengths.sum())
        packed_at = torch.full(sorted_mask.shape, T, device=device).masked_scatter_(
            sorted_mask, torch.arange(T, device=device)
        )  # (B, L)
        spans = _spans(lengths[order], groups)
        gather = torch.cat([packed_at[a:b, :width].flatten() for a, b, width in spans])  # (P,)
        flat = (order.unsqueeze(1) * L + torch.arange(L, device=device))[sorted_mask]  # (T,)
        built = tuple(WidthGroup(sorted_mask[a:b, :width]) for a, b, width in spans)
        return cls(order, torch.argsort(order), flat, gather, (gather < T).nonzero().squeeze(1), built)

    def pack(self, padded: torch.Tensor) -> torch.Tensor:
        """padded (B, L, ...) in input row order -> (T, ...): the real positions, group by group."""
        return padded.flatten(0, 1).index_select(0, self.flat)

    def pad(self, packed: torch.Tensor) -> list[torch.Tensor]:
        """packed (T, C) -> one (B_g, W_g, C) per group, zeros at padded positions."""
        C = packed.shape[1]
        padder = torch.cat([packed, packed.new_zeros(1, C)])  # (T + 1, C): row T is the padding
        flat = padder.index_select(0, self.gather)  # (P, C)
        parts = flat.split([group.size for group in self.groups])
        return [part.view(*group.mask.shape, C) for part, group in zip(parts, self.groups, strict=True)]

    def unpad(self, padded: list[torch.Tensor]) -> torch.Tensor:
        """One (B_g, W_g, C) per group -> the real positions (T, C), in packed order."""
        flat = torch.cat([part.reshape(-1, part.shape[-1]) for part in padded])  # (P, C)
        return flat.index_select(0, self.real)

    def in_input_order(self, per_row: torch.Tensor) -> torch.Tensor:
        """Per-row values (B, ...) in the packed (sorted) row order -> the input row order."""
        return per_row.index_select(0, self.inverse)


#: The cost model of one group's attention, forward and backward, in units of one row-position:
#: ``GROUP_COST + B_g * (W_g + W_g**2 / WIDTH_SCALE)`` (the flash attention kernel on one CPU thread, 3
#: heads of 32, measured at 64 and 256 rows and widths 2 to 51: a group's fixed cost is about 600 row-positions;
#: the quadratic term takes over from width 16).
GROUP_COST = 600.0
WIDTH_SCALE = 16.0


def _spans(sorted_lengths: torch.Tensor, groups: int) -> list[tuple[int, int, int]]:
    """(first row, end row, width) of the cheapest split, under the cost model above, of rows sorted by
    length into at most ``groups`` groups of consecutive rows, each padded to its longest row.

    Groups only ever end where the length changes, so the search runs over the K distinct lengths (K <= L):
    ``best[j] = min_i best[i] + GROUP_COST + rows(i, j] * f(width_j)``, O(K^2); only when that split has
    more than ``groups`` groups (the cap rarely binds: the model wants few groups) is the search repeated
    with the count of groups bounded, O(groups K^2)."""
    widths, counts = torch.unique_consecutive(sorted_lengths.cpu(), return_counts=True)  # K host values
    w = widths.double().numpy()
    ends = counts.cumsum(0).numpy()  # rows up to and including each distinct length
    cuts = _cheapest_cuts(w, ends, None)
    if len(cuts) > groups:
        cuts = _cheapest_cuts(w, ends, groups)
    spans, start = [], 0
    for j in cuts:
        spans.append((start, int(ends[j]), int(w[j])))
        start = int(ends[j])
    return spans


def _cheapest_cuts(w: np.ndarray, ends: np.ndarray, most: int | None) -> list[int]:
    """Indices j of the distinct lengths that end a group in the cheapest split (the last is K - 1), with
    at most ``most`` groups (None: any number).

    ``best[j + 1]``: the cheapest cost of the rows up to distinct length j; bounded, one such row per
    number of groups g, each built from the row of g - 1 (the row of 0 groups: only no rows cost 0)."""
    K = len(w)
    starts = np.concatenate([[0], ends[:-1]])  # rows before each distinct length
    rows = ends[:, None] - starts[None, :]  # (K, K) at [j, i]: rows of the group of distinct lengths i..j
    cost = GROUP_COST + rows * (w + w**2 / WIDTH_SCALE)[:, None]  # (K, K) that group's cost at [j, i]
    backs = []
    if most is None:  # each prefix's best reads the shorter prefixes' bests: one distinct length at a time
        best = np.zeros(K + 1)
        back = np.zeros(K, dtype=np.int64)
        for j in range(K):
            total = best[: j + 1] + cost[j, : j + 1]  # the last group: distinct lengths i..j
            back[j] = int(np.argmin(total))
            best[j + 1] = total[back[j]]
        backs.append(back)
    else:  # g groups from the bests of g - 1: every prefix at once
        prev = np.full(K + 1, np.inf)
        prev[0] = 0.0  # no groups: only the empty prefix
        later = np.triu(np.ones((K, K), dtype=bool), k=1)  # [j, i]: i > j, not a group
        for _ in range(most):
            total = np.where(later, np.inf, prev[None, :K] + cost)  # (K, K) last group i..j at [j, i]
            back = total.argmin(1)
            prev = np.concatenate([[0.0], total[np.arange(K), back]])
            backs.append(back)
    cuts, j, g = [], K - 1, len(backs) - 1
    while j >= 0:
        cuts.append(j)
        j = int(backs[g][j]) - 1
        g = g if most is None else g - 1
    return cuts[::-1]
