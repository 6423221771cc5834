"""What training records as it goes: :class:`EpochRecord` (a row of ``epochs.csv``, what ``on_epoch``
callbacks receive, the ``epochs`` of ``train_summary.json``) and :class:`StepRecord` (a row of
``history.csv``).

Both are public file formats: :meth:`EpochRecord.to_dict` and :meth:`StepRecord.to_dict` give the columns
in the files' order (:data:`EpochRecord.COLUMNS`, :data:`StepRecord.COLUMNS`), with the values as recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from adsformer.run.config import Monitor


@dataclass(frozen=True)
class EpochRecord:
    """One finished epoch: its mean training loss and its validation scores at the natural rate (NaN
    without validation rows), made by :func:`adsformer.training.loop.epoch_record`."""

    COLUMNS: ClassVar[tuple[str, ...]] = ("epoch", "train_loss", "val_log_loss", "val_roc_auc", "step")

    epoch: int  # 0-based
    train_loss: float  # the epoch's mean training loss over every training row (and rank)
    val_log_loss: float
    val_roc_auc: float
    step: int  # optimizer steps taken when the epoch ended

    def val(self, metric: Monitor) -> float:
        """The validation value of ``metric`` (``roc_auc`` or ``log_loss``)."""
        return self.val_roc_auc if metric == "roc_auc" else self.val_log_loss

    def to_dict(self) -> dict[str, Any]:
        """The ``epochs.csv`` row (and ``train_summary.json`` entry): :data:`COLUMNS` in order."""
        return {name: getattr(self, name) for name in self.COLUMNS}


@dataclass(frozen=True)
class StepRecord:
    """A logged training step: the epoch's running mean training loss so far and the learning rate."""

    COLUMNS: ClassVar[tuple[str, ...]] = ("step", "epoch", "train_loss", "lr")

    step: int
    epoch: int  # 0-based
    train_loss: float  # running mean over the epoch's rows so far (every rank)
    lr: float  # the dense optimizer's learning rate after the step

    def to_dict(self) -> dict[str, Any]:
        """The ``history.csv`` row: :data:`COLUMNS` in order."""
        return {name: getattr(self, name) for name in self.COLUMNS}
