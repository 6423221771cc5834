"""train_summary.json is a public contract: the typed summary writes the same fields in the same order."""

from adsformer.experiments.train_summary import SplitRecord, TrainSummary
from adsformer.training.records import EpochRecord, StepRecord

FIELDS = [
    "task", "model", "dataset", "data_dir", "split", "n_train", "n_val", "parameters", "train_examples_per_s",
    "train_seconds", "features_seconds", "batch_size", "steps_per_epoch", "max_epochs", "epochs_run",
    "stopped_early", "monitor", "best_epoch", "epochs", "calibration",
]  # fmt: skip


EPOCHS = (EpochRecord(0, 0.31, 0.18, 0.6, 35), EpochRecord(1, 0.29, 0.17, 0.7, 70))


def _summary(world_size=1, epochs=EPOCHS):
    return TrainSummary(
        task="ctr",
        model="baseline",
        dataset="d",
        data_dir=None,
        split=SplitRecord("fraction", None, 100, 200, 301),
        n_train=10,
        n_val=5,
        parameters=7,
        train_examples_per_s=1.5,
        train_seconds=2.0,
        features_seconds=0.5,
        batch_size=4,
        steps_per_epoch=3,
        max_epochs=2,
        epochs_run=len(epochs),
        stopped_early=False,
        monitor="roc_auc",
        best_epoch=1 if epochs else 0,
        epochs=tuple(epochs),
        calibration={"keep_rate": 0.5},
        world_size=world_size,
    )


def test_the_summary_writes_every_field_in_order_and_world_size_only_when_distributed():
    written = _summary().to_dict()
    assert list(written) == FIELDS
    assert written["split"] == {"mode": "fraction", "train_start": None, "val_start": 100, "test_start": 200,
                                "end": 301}  # fmt: skip
    assert written["epochs"] == [
        {"epoch": 0, "train_loss": 0.31, "val_log_loss": 0.18, "val_roc_auc": 0.6, "step": 35},
        {"epoch": 1, "train_loss": 0.29, "val_log_loss": 0.17, "val_roc_auc": 0.7, "step": 70},
    ]
    assert all(
        list(e) == ["epoch", "train_loss", "val_log_loss", "val_roc_auc", "step"] for e in written["epochs"]
    )
    assert list(_summary(world_size=2).to_dict()) == [*FIELDS, "world_size"]


def test_best_is_the_restored_epochs_record():
    assert _summary().best == EpochRecord(1, 0.29, 0.17, 0.7, 70) and _summary().best.val("roc_auc") == 0.7
    assert _summary(epochs=()).best is None


def test_records_write_the_csv_columns_in_order():
    """epochs.csv and history.csv columns, as written before the records were typed."""
    assert list(EPOCHS[0].to_dict()) == ["epoch", "train_loss", "val_log_loss", "val_roc_auc", "step"]
    assert EPOCHS[0].val("log_loss") == 0.18
    step = StepRecord(step=20, epoch=0, train_loss=0.305, lr=0.0016)
    assert step.to_dict() == {"step": 20, "epoch": 0, "train_loss": 0.305, "lr": 0.0016}
    assert list(step.to_dict()) == ["step", "epoch", "train_loss", "lr"]
