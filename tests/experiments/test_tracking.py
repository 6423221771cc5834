"""``--log-to tensorboard|mlflow``: the per-epoch and test metrics a tracker receives are the run's own, each
backend is imported only when asked for, and a missing one is one line naming the extra."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adsformer import extras
from adsformer.cli import app
from adsformer.data.schema import write_dataset
from adsformer.experiments import tracking
from tinydata import make_tiny_dataset

runner = CliRunner()
TINY = ["--config", "ctr_test", "--set", "epochs=2"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_dataset(make_tiny_dataset(), tmp_path_factory.mktemp("track") / "ds")


def _epochs(run: Path) -> list[dict[str, str]]:
    with (run / "epochs.csv").open() as f:
        return list(csv.DictReader(f))


def test_tensorboard_gets_every_epoch_and_the_test_metrics(data, tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.setenv("ADSFORMER_TENSORBOARD_DIR", str(tmp_path / "tb"))
    run = tmp_path / "run"
    res = runner.invoke(
        app, ["train", "--data", str(data), "--out", str(run), *TINY, "--log-to", "tensorboard"]
    )
    assert res.exit_code == 0, res.output
    record = json.loads((run / tracking.TRACKING_FILE).read_text())
    assert record["backend"] == "tensorboard" and Path(record["log_dir"]).parent == tmp_path / "tb"
    res = runner.invoke(app, ["evaluate", str(run), "--log-to", "tensorboard"])
    assert res.exit_code == 0, res.output

    events = EventAccumulator(record["log_dir"])
    events.Reload()
    epochs = _epochs(run)
    got = events.Scalars("val_log_loss")
    assert [e.step for e in got] == [int(r["epoch"]) for r in epochs] == [0, 1]
    assert [e.value for e in got] == pytest.approx([float(r["val_log_loss"]) for r in epochs], rel=1e-6)
    loss = [e.value for e in events.Scalars("train_loss")]
    assert loss == pytest.approx([float(r["train_loss"]) for r in epochs], rel=1e-6)
    metrics = json.loads((run / "metrics.json").read_text())
    assert events.Scalars("test_log_loss")[0].value == pytest.approx(metrics["log_loss"], rel=1e-6)
    assert "epoch" not in events.Tags()["scalars"] and "test_ece_bins" not in events.Tags()["scalars"]


def test_mlflow_gets_the_config_every_epoch_and_the_test_metrics(data, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "adsformer-tests")
    run = tmp_path / "run"
    res = runner.invoke(app, ["train", "--data", str(data), "--out", str(run), *TINY, "--log-to", "mlflow"])
    assert res.exit_code == 0, res.output
    record = json.loads((run / tracking.TRACKING_FILE).read_text())
    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # evaluate finds the tracked run by what the run recorded
    res = runner.invoke(app, ["evaluate", str(run), "--log-to", "mlflow"])
    assert res.exit_code == 0, res.output

    client = MlflowClient(tracking_uri=uri)
    tracked = client.get_run(record["run_id"])
    assert tracked.info.status == "FINISHED" and tracked.info.run_name == "run"
    assert tracked.data.params["train.epochs"] == "2" and tracked.data.params["task"] == "ctr"
    history = client.get_metric_history(record["run_id"], "val_log_loss")
    got = sorted((m.step, m.value) for m in history)
    assert [step for step, _ in got] == [0, 1]
    assert [v for _, v in got] == pytest.approx([float(r["val_log_loss"]) for r in _epochs(run)], rel=1e-6)
    metrics = json.loads((run / "metrics.json").read_text())
    assert tracked.data.metrics["test_roc_auc"] == pytest.approx(metrics["roc_auc"])
    summary = json.loads((run / "train_summary.json").read_text())
    best = summary["epochs"][summary["best_epoch"]]
    assert tracked.data.metrics["best_val_roc_auc"] == pytest.approx(best["val_roc_auc"])


@pytest.mark.parametrize("backend, package", [("tensorboard", "tensorboard"), ("mlflow", "mlflow")])
def test_a_missing_backend_is_one_line_naming_the_track_extra(data, tmp_path, monkeypatch, backend, package):
    monkeypatch.setattr(extras, "installed", lambda name: name != package)
    out = tmp_path / "run"
    res = runner.invoke(app, ["train", "--data", str(data), "--out", str(out), *TINY, "--log-to", backend])
    assert res.exit_code == 1
    lines = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert lines == [f"error: '--log-to {backend}' needs the track extra: pip install 'adsformer[track]'"]
    assert not out.exists()  # refused before any work


def test_an_unknown_backend_is_one_line(data, tmp_path):
    res = runner.invoke(
        app, ["train", "--data", str(data), "--out", str(tmp_path / "r"), *TINY, "--log-to", "wandb"]
    )
    assert res.exit_code == 1 and "--log-to 'wandb': expected one of ['tensorboard', 'mlflow']" in res.output
