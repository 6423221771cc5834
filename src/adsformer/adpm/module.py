"""ADPM: maps a user's short-term action sequences to a user vector ``u = concat(o1, o4, o2, o3)``
(with target-attention pooling in component 3, its attended pairs move before o2).

Each component can be switched off by configuration (the paper's ablations are subsets of components 1-3;
component 4, the target-aware touch signals, goes beyond the paper). The columns that depend on the target
(o1, o4) come first, the ones every candidate shares (o2, o3) last: the fast one-user scorer relies on it.

Letters: B batch, M sequence length; ``out_dim`` = width of ``u``.
"""

from __future__ import annotations

import torch

from adsformer.adpm.config import ADPMConfig
from adsformer.adpm.encoder import AdSformerEncoder
from adsformer.adpm.fast import pooled_cached_sequence, pooled_one_user
from adsformer.adpm.learned import LearnedComponent
from adsformer.adpm.pretrained import FrozenTable, PretrainedComponent
from adsformer.adpm.touch import TouchComponent
from adsformer.config import ConfigError
from adsformer.data.features import MERGED_PAIR, choose_listing_pair
from adsformer.data.inputs import ModelInputs
from adsformer.layers.user import OneUser, OneUserMode, UserModule, no_columns, require_eval


def select_pairs(patterns: tuple[str, ...], available: list[str], *, merged: bool = True) -> list[str]:
    """Expand ``all`` and ``entity:*`` against the pairs the data has; named pairs must exist. Without
    ``merged`` (components 2 and 3, which read plain listing ids) the merged listing sequence is left out of
    the expansions and refused by name."""
    out: list[str] = []
    if not merged and MERGED_PAIR in patterns:
        raise ConfigError(
            f"{MERGED_PAIR} packs actions into its ids: only the encoder and touch signals read it; "
            f"take it out of model.adpm.learned.pairs / model.adpm.pretrained.pairs"
        )
    available = [p for p in available if merged or p != MERGED_PAIR]
    for pattern in patterns:
        if pattern == "all":
            matches = list(available)
        elif pattern.endswith(":*"):
            matches = [p for p in available if p.startswith(pattern[:-1])]
        elif pattern in available:
            matches = [pattern]
        else:
            raise ConfigError(
                f"sequence pair {pattern!r} is not built for this dataset; use one of {available} "
                f"(or add it to data.sequences.pairs)"
            )
        out += [m for m in matches if m not in out]
    return out


class ADPM(UserModule):
    """The adSformer diversifiable personalization module (paper figure 2)."""

    def __init__(
        self,
        cfg: ADPMConfig,
        vocab_sizes: dict[str, int],
        pairs: list[str],
        tables: list[FrozenTable] | None = None,
        *,
        window_s: int = 3600,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.touch: TouchComponent | None = None
        self.encoder: AdSformerEncoder | None = None
        self.pretrained: PretrainedComponent | None = None
        self.learned: LearnedComponent | None = None
        if cfg.encoder.enabled:  # "auto" unresolved (a model built without data) reads as on
            requested = cfg.encoder.pair
            if requested == "auto":  # unresolved (a model built without data): views, else the first
                requested = choose_listing_pair("auto", dict.fromkeys(pairs, 1))
            (self.encoder_pair,) = select_pairs((requested,), pairs)
            entity = self.encoder_pair.split(":", 1)[0]
            if entity != "listing":
                raise ConfigError(
                    f"model.adpm.encoder.pair: the encoder puts the target listing at position 0, so it "
                    f"needs a listing sequence (or auto), got {cfg.encoder.pair!r}"
                )
            n_actions = vocab_sizes.get("action", 0) if self.encoder_pair == MERGED_PAIR else 0
            if self.encoder_pair == MERGED_PAIR and not n_actions:
                raise ValueError(f"the {MERGED_PAIR} sequence needs the action vocabulary's size")
            self.encoder = AdSformerEncoder(cfg.encoder, vocab_sizes["listing"], n_actions)
        if cfg.pretrained.enabled:
            comp2_pairs = select_pairs(cfg.pretrained.pairs, pairs, merged=False)
            if any(not p.startswith("listing:") for p in comp2_pairs):
                raise ConfigError(
                    f"model.adpm.pretrained.pairs: tables are per listing, so the pairs must be listing "
                    f"pairs, got {comp2_pairs}"
                )
            if len(tables or []) != len(cfg.pretrained.tables):
                raise ValueError(
                    f"component 2 is configured with {len(cfg.pretrained.tables)} table(s) but "
                    f"{len(tables or [])} were loaded"
                )
            self.pretrained = PretrainedComponent(list(tables or []), comp2_pairs)
        if cfg.learned.enabled:
            comp3_pairs = select_pairs(cfg.learned.pairs, pairs, merged=False)
            dims = {p.split(":", 1)[0]: cfg.learned.dim(p.split(":", 1)[0]) for p in comp3_pairs}
            self.learned = LearnedComponent(comp3_pairs, vocab_sizes, dims, cfg.learned.pooling)
        if cfg.touch.enabled:
            self.touch = TouchComponent(select_pairs(cfg.touch.pairs, pairs), pairs, window_s)
        parts = [m for m in (self.encoder, self.touch, self.pretrained, self.learned) if m is not None]
        if not parts:
            raise ValueError("ADPM needs at least one component enabled (use the baseline model for none)")
        self.out_dim = sum(int(m.out_dim) for m in parts)
        # o2 and the averaged pairs of o3 read no target: the trailing, shared columns
        averaged = 0 if self.learned is None else self.learned.out_dim - self.learned.attended_dim
        self.shared_dim = int(averaged + (0 if self.pretrained is None else self.pretrained.out_dim))
        read = [self.encoder_pair] if self.encoder is not None else []
        read += self.pretrained.pairs if self.pretrained is not None else []
        read += self.learned.pairs if self.learned is not None else []
        self.pairs = tuple(dict.fromkeys(read))  # the sequences read (touch reads the touch block)

    def forward(self, inputs: ModelInputs) -> torch.Tensor:
        """Per-row inputs: the target listing (B,), seq_ids pair -> (B, M), seq_len pair -> (B,), touch
        (B, P_all, 2) raw touch signals of every pair  ->  u (B, out_dim)."""
        target, seq_ids, seq_len = inputs.listing, inputs.seq_ids, inputs.seq_len
        parts = []
        if self.encoder is not None:
            parts.append(self.encoder(target, seq_ids[self.encoder_pair], seq_len[self.encoder_pair]))  # o1
        if self.touch is not None:
            parts.append(self.touch(_require_touch(inputs.touch)))  # o4
        if self.learned is not None and self.learned.attended:
            parts.append(self.learned.attend(target, seq_ids, seq_len))  # o3, target-attended pairs
        if self.pretrained is not None:
            parts.append(self.pretrained(seq_ids, seq_len))  # o2
        if self.learned is not None:
            parts.append(self.learned.averaged(seq_ids, seq_len))  # o3, averaged pairs
        return torch.cat(parts, dim=1)

    def one_user(self, inputs: ModelInputs, *, mode: OneUserMode = "exact") -> OneUser:
        """B targets (B,) and one user (seq_ids pair -> (1, M), seq_len pair -> (1,)), touch (B, P_all, 2):
        o1 with the encoder's sequence-side work once (:mod:`adsformer.adpm.fast`; ``cached-sequence``:
        the sequence encoded once, see :data:`~adsformer.layers.user.OneUserMode`, in both modes for an
        encoder with ``sequence_sees_target: false``, where it is exact), o4 and attended o3 per target; o2
        and averaged o3 once."""
        require_eval(self)
        target, seq_ids, seq_len = inputs.listing, inputs.seq_ids, inputs.seq_len
        per_target = [no_columns(target)]
        if self.encoder is not None:
            ids, length = seq_ids[self.encoder_pair][0], int(seq_len[self.encoder_pair][0])
            # the cached sequence is exact for an encoder whose sequence never sees the target
            cached = mode == "cached-sequence" or not self.encoder.cfg.sequence_sees_target
            pool = pooled_cached_sequence if cached else pooled_one_user
            per_target.append(pool(self.encoder, target, ids, length))  # o1 (B, D)
        if self.touch is not None:
            per_target.append(self.touch(_require_touch(inputs.touch)))  # o4 (B, 3P)
        shared = [target.new_zeros(0, dtype=torch.float32)]
        if self.learned is not None:
            attended, averaged = self.learned.one_user(target, seq_ids, seq_len)
            per_target.append(attended)  # o3, attended pairs (B, d_attended)
        if self.pretrained is not None:
            shared.append(self.pretrained.one_user(seq_ids, seq_len))  # o2
        if self.learned is not None:
            shared.append(averaged)  # o3, averaged pairs
        return OneUser(torch.cat(per_target, dim=1), torch.cat(shared))


def _require_touch(touch: torch.Tensor | None) -> torch.Tensor:
    if touch is None:
        raise ConfigError(
            "ADPM's touch component needs the touch signals, which these features lack (a feature "
            "store written before them): rebuild it with adsformer features, or set "
            "model.adpm.touch.enabled=false"
        )
    return touch
