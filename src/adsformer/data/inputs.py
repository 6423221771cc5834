"""The model's inputs: :class:`ModelInputs`, one type for training batches, online requests and export.

Every path that feeds a ranker builds one: :func:`adsformer.data.batching.make_batch` (a
:class:`~adsformer.data.batching.Batch` is model inputs plus labels and row indices), the ranking service's
:class:`~adsformer.serving.online_features.OnlineFeatures` (a ``RequestFeatures`` is model inputs plus the
candidates' ids and the raw sequences used) and the exported TorchScript module, whose plain tensors
(:data:`adsformer.run.export.INPUT_NAMES`) are :meth:`ModelInputs` taken apart and put back together.
:class:`~adsformer.models.ranker.Ranker` and its user module read nothing else.

Two forms share the type. *Per row* (training, evaluation, the plain forward): every row has its own
sequences, ``seq_ids`` pair -> (B, M). *One user* (a ranking request): B candidates of one user share one
set of sequences, ``seq_ids`` pair -> (1, M) and ``seq_len`` pair -> (1,); :meth:`repeated` turns it into the
per-row form.

Letters: B rows (or candidates), F dense features, M sequence width, P touch pairs.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Self

import torch


@dataclass(frozen=True)
class ModelInputs:
    """What a ranker reads for B rows (shapes per field; ids are vocabulary indices, 0 = padding/missing).

    * ``target``: entity (``listing``, ``shop``, ``taxonomy``) -> (B,) int64, the target listing's ids;
    * ``categorical``: name (``query``, ``c_*``) -> (B,) int64;
    * ``dense``: (B, F) float32, standardized numeric features in the run's order;
    * ``seq_ids``: pair -> (B, M) int64 (one user: (1, M)), newest first, 0 = padding;
    * ``seq_len``: pair -> (B,) int64 (one user: (1,)), lengths 0..M;
    * ``touch``: (B, P, 2) float32 raw touch signals ``[count, age_s]`` of every pair (age -1: never), or
      None where the features carry none;
    * ``position``: (B,) int64 display position (1 = top, 0 = unknown), or None. The ranker adds its
      position tower's logit only when it is given: training passes it, scoring never does.
    """

    target: dict[str, torch.Tensor]
    categorical: dict[str, torch.Tensor]
    dense: torch.Tensor
    seq_ids: dict[str, torch.Tensor]
    seq_len: dict[str, torch.Tensor]
    touch: torch.Tensor | None = None
    position: torch.Tensor | None = None

    def __len__(self) -> int:
        """B: the rows (candidates) scored."""
        return int(self.dense.shape[0])

    @property
    def listing(self) -> torch.Tensor:
        """(B,) the target listing ids: what a user module attends with."""
        return self.target["listing"]

    def without_position(self) -> Self:
        """These inputs as scoring reads them: no position (the ranker adds no position logit)."""
        return replace(self, position=None)

    def repeated(self) -> Self:
        """The one-user form as the per-row form: the sequences (1, M) and lengths (1,) repeated for each of
        the B rows (what the plain batched forward reads)."""
        B = len(self)
        return replace(
            self,
            seq_ids={k: v.expand(B, -1).contiguous() for k, v in self.seq_ids.items()},
            seq_len={k: v.expand(B).contiguous() for k, v in self.seq_len.items()},
        )

    def to(self, device: torch.device | str) -> Self:
        """The same inputs (and a subclass's other fields, same type) with every tensor on ``device``."""

        def move(value: Any) -> Any:
            if isinstance(value, torch.Tensor):
                return value.to(device, non_blocking=True)
            if isinstance(value, dict):
                return {k: move(v) for k, v in value.items()}
            return value

        return replace(self, **{f.name: move(getattr(self, f.name)) for f in fields(self)})
