"""train_summary.json is a public contract: the typed summary writes the same fields in the same order."""

from adsformer.experiments.train_summary import SplitRecord, TrainSummary

FIELDS = [
    "task", "model", "dataset", "data_dir", "split", "n_train", "n_val", "parameters", "train_examples_per_s",
    "train_seconds", "features_seconds", "batch_size", "steps_per_epoch", "max_epochs", "epochs_run",
    "stopped_early", "monitor", "best_epoch", "epochs", "calibration",
]  # fmt: skip


def _summary(world_size=1, epochs=({"epoch": 0, "val_roc_auc": 0.6}, {"epoch": 1, "val_roc_auc": 0.7})):
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
    assert written["epochs"] == [{"epoch": 0, "val_roc_auc": 0.6}, {"epoch": 1, "val_roc_auc": 0.7}]
    assert list(_summary(world_size=2).to_dict()) == [*FIELDS, "world_size"]


def test_best_is_the_restored_epochs_record():
    assert _summary().best == {"epoch": 1, "val_roc_auc": 0.7}
    assert _summary(epochs=()).best == {}
