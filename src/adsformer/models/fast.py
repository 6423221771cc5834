"""Fast scoring of many candidate listings for one user: :class:`FastScorer`.

A ranking request scores B candidates (up to ~600) against one user's sequences: one
:class:`~adsformer.data.inputs.ModelInputs` in its one-user form. The plain batched forward
(:meth:`Ranker.forward` of ``inputs.repeated()``: the user's sequences repeated B times) recomputes
everything the candidates share. :class:`FastScorer` computes the same logits with the shared work done
once, through :meth:`Ranker.one_user_logits`: each part says itself what it shares.

* **the user vector**: every user module splits itself into per-candidate and shared columns
  (:meth:`adsformer.layers.user.UserModule.one_user`). ADPM's default encoder, whose sequence never sees
  the target, encodes the sequence once and each candidate's target position alone; the paper's encoder
  shares its first block's sequence-side work (:mod:`adsformer.adpm.fast`); components 2 and 3 (frozen and learned tables, average
  pooled) read no target and are computed once. Last-k reads no target either; BST shares its first block
  too; the baseline has no user vector.
* **the ranker**: the first cross and deep layers multiply the shared columns once; the last cross layer
  folds into the head (:meth:`adsformer.layers.dcn.CrossNetwork.read_out`).

``mode="exact"`` (the default) equals the plain batched forward up to float rounding (tested to 1e-5 over
configurations, lengths and padding). ``mode="cached-sequence"`` encodes the sequence once and only the
target row per candidate (see :data:`~adsformer.layers.user.OneUserMode`): what ``exact`` does for the
default encoder; for the paper's encoder several times cheaper on long windows, an approximation whose
effect ``benchmarks/scoring.py`` measures. Dropout and batch norm must be
in eval mode. Computation runs under ``torch.inference_mode`` (no autograd bookkeeping).

Letters: B candidates, M sequence width, P touch pairs, F_d dense features.
"""

from __future__ import annotations

import torch

from adsformer.data.inputs import ModelInputs
from adsformer.layers.user import ONE_USER_MODES, OneUserMode
from adsformer.models.ranker import Ranker


class FastScorer:
    """Logits of a trained :class:`Ranker` for B candidates of one user; see the module docstring."""

    def __init__(self, model: Ranker, *, mode: OneUserMode = "exact") -> None:
        if model.training:
            raise ValueError("FastScorer needs a model in eval() mode")
        if mode not in ONE_USER_MODES:
            raise ValueError(f"unknown one-user scoring mode {mode!r}; expected one of {ONE_USER_MODES}")
        self.model = model
        self.mode: OneUserMode = mode

    @torch.inference_mode()
    def logits(self, inputs: ModelInputs) -> torch.Tensor:
        """The one-user form of B candidates' inputs (target / categorical name -> (B,) ids, dense (B, F_d);
        seq_ids pair -> (1, M), seq_len pair -> (1,) for the one user; touch (B, P, 2) each candidate's
        touch signals)  ->  logits (B,), as ``model(inputs.repeated())`` gives without position (exact
        mode)."""
        if self.model.training:
            raise ValueError("FastScorer needs a model in eval() mode")
        return self.model.one_user_logits(inputs, mode=self.mode)
