"""A trained run ready to serve: :class:`ServingModel`.

It holds the run's :class:`~adsformer.run.predictor.Predictor` (model, vocabularies, dense statistics, the
calibration saved with the run), an :class:`~adsformer.serving.online_features.OnlineFeatures` over the
catalog, and a :class:`~adsformer.models.fast.FastScorer`. Probabilities are the calibrated ones, as
``adsformer predict`` and ``evaluate`` give: CTR at the natural click rate, PCCVR as P(purchase | click).

Letters: B candidates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adsformer.layers.user import OneUserMode
from adsformer.models.fast import FastScorer
from adsformer.run.predictor import Predictor
from adsformer.serving.catalog import Catalog
from adsformer.serving.online_features import OnlineFeatures, RequestFeatures, RequestMemo
from adsformer.serving.store import UserState


class ServingModel:
    """One run (CTR or PCCVR) over one catalog."""

    def __init__(
        self,
        predictor: Predictor,
        catalog: Catalog,
        *,
        name: str | None = None,
        mode: OneUserMode = "exact",
    ) -> None:
        """``mode``: how the fast path scores (:data:`~adsformer.layers.user.OneUserMode`): ``exact`` (the
        plain forward's scores) or ``cached-sequence`` (the sequence encoded once: the same as ``exact`` for
        the default encoder; for the paper's encoder several times cheaper on long windows, an
        approximation whose cost and accuracy ``benchmarks/scoring.py`` measures)."""
        self.predictor = predictor
        self.task = predictor.task
        self.name = name or (predictor.run_dir.name if predictor.run_dir is not None else self.task)
        self.online = OnlineFeatures(predictor, catalog)
        self.scorer = FastScorer(predictor.model, mode=mode)

    @classmethod
    def load(cls, run_dir: str | Path, catalog: Catalog, *, mode: OneUserMode = "exact") -> ServingModel:
        return cls(Predictor.load(run_dir), catalog, mode=mode)

    @property
    def pairs(self) -> list[str]:
        return self.online.pairs

    def features(
        self,
        listing_ids: Sequence[str],
        *,
        query: str | None,
        state: UserState | None,
        now: int,
        bids: np.ndarray,
        context: Mapping[str, Any] | None = None,
        shared: RequestMemo | None = None,
    ) -> RequestFeatures:
        """The run's inputs for one request (``shared``: the request's touch memo, see
        :meth:`~adsformer.serving.online_features.OnlineFeatures.build`)."""
        return self.online.build(
            listing_ids, query=query, state=state, now=now, bids=bids, context=context, shared=shared
        )

    def logits(self, feats: RequestFeatures, *, fast: bool = True) -> torch.Tensor:
        """Model logits (B,): the fast path (in the model's ``mode``), or the plain batched forward (sequences
        repeated B times)."""
        if not feats.listing_ids:
            return torch.zeros(0)
        if fast:
            return self.scorer.logits(feats)
        with torch.inference_mode():
            return self.predictor.model(feats.repeated())

    def probabilities(self, feats: RequestFeatures, *, fast: bool = True) -> np.ndarray:
        """Calibrated probabilities (B,) float64."""
        z = self.logits(feats, fast=fast)
        return np.asarray(self.predictor.calibrator(z.double().numpy()), np.float64)
