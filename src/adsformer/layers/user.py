"""The contract every user module meets: :class:`UserModule`.

A user module maps one row's short-term sequences (and the target listing) to the user vector ``u`` the
ranker concatenates to its wide input. The ranker and the fast one-user scorer know nothing else about it:

* ``out_dim``: the width of ``u``;
* ``pairs``: the (entity, action) sequences ``forward`` reads (batches need carry no other);
* ``shared_dim``: the width of ``u``'s *trailing* columns that do not depend on the target listing (a
  module lays out its columns target-dependent first, shared last);
* ``forward``: the model's inputs (:class:`~adsformer.data.inputs.ModelInputs`, per-row form) -> ``u``
  (B, out_dim), one user per row (training, evaluation, the plain forward). A user module reads the target
  listing (``inputs.listing`` (B,)), the sequences (``seq_ids`` pair -> (B, M), ``seq_len`` pair -> (B,))
  and the touch signals (``touch`` (B, P, 2) | None), nothing else;
* ``one_user``: the same for B targets and *one* user (the one-user form: ``seq_ids`` pair -> (1, M),
  ``seq_len`` pair -> (1,)), split into the per-target columns (B, out_dim - shared) and the shared ones
  (shared,) computed once. ``mode="exact"`` equals ``forward`` with the sequences repeated B times, up to
  float rounding; ``mode="cached-sequence"`` lets a module use a cheaper approximation where it has one
  (see :data:`OneUserMode`); a module without one computes exactly.

A new user module is one file: a subclass implementing ``forward`` and ``one_user``, plus its builder line
in :mod:`adsformer.models.registry`.

Two more typed hints are read by the training code (any module, not only user modules):
:class:`LearnsFaster` (``lr_scale``: the optimizer trains its parameters at ``lr * lr_scale``) and
:class:`FrozenState` (``frozen``: its buffers never change, so snapshots and DDP leave them out).

Letters: B targets (rows or candidates), M sequence width, P touch pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import torch
from torch import nn

from adsformer.data.inputs import ModelInputs

#: How :meth:`UserModule.one_user` computes: ``exact`` (equal to the plain forward) or ``cached-sequence``:
#: the sequence positions of a transformer are encoded once, without attending to the target, and each
#: candidate's target position attends to them (a key/value cache). Only the target row depends on the
#: candidate, so the per-candidate cost drops from L positions to one. Exact for an encoder whose sequence
#: never sees the target (the default, ``sequence_sees_target: false``), which takes it in both modes; for the
#: paper's encoder an approximation (measure it with ``benchmarks/scoring.py`` before serving with it).
OneUserMode = Literal["exact", "cached-sequence"]
ONE_USER_MODES: tuple[OneUserMode, ...] = ("exact", "cached-sequence")


@dataclass(frozen=True)
class OneUser:
    """A user vector for B targets of one user: ``per_target`` (B, U - S) and ``shared`` (S,), so that
    ``u = concat(per_target, broadcast(shared))`` (B, U)."""

    per_target: torch.Tensor
    shared: torch.Tensor

    def full(self) -> torch.Tensor:
        """The whole user vector (B, U)."""
        B = self.per_target.shape[0]
        return torch.cat([self.per_target, self.shared.expand(B, -1)], dim=1)


class UserModule(nn.Module):
    """Base of every user module (ADPM, BST, last-k, none); see the module docstring for the contract."""

    out_dim: int = 0
    shared_dim: int = 0
    pairs: tuple[str, ...] = ()

    def forward(self, inputs: ModelInputs) -> torch.Tensor:
        """Per-row inputs of B rows -> u (B, out_dim)."""
        raise NotImplementedError

    def one_user(self, inputs: ModelInputs, *, mode: OneUserMode = "exact") -> OneUser:
        """One-user inputs of B targets -> :class:`OneUser` with ``shared`` of width ``shared_dim`` in exact
        mode. Needs eval mode (no dropout)."""
        raise NotImplementedError


def no_columns(target: torch.Tensor) -> torch.Tensor:
    """An empty (B, 0) float block for targets (B,)."""
    return target.new_zeros((target.shape[0], 0), dtype=torch.float32)


def require_eval(module: nn.Module) -> None:
    """The one-user path computes each candidate once, with no dropout: refuse a module in training mode."""
    if module.training:
        raise ValueError(
            f"one-user scoring needs the model in eval() mode ({type(module).__name__} is training)"
        )


@runtime_checkable
class LearnsFaster(Protocol):
    """A module whose parameters train at ``lr * lr_scale`` (the position tower)."""

    lr_scale: float


@runtime_checkable
class FrozenState(Protocol):
    """A module whose state never changes in training (pretrained tables): ``frozen`` is True."""

    frozen: bool
