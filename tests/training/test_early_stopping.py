"""Training that fits the data: early stopping, the best epoch restored, the auto batch size, the few-steps
warning and the range checks of the training settings."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from adsformer.cli import app
from adsformer.config import ConfigError
from adsformer.data.features import FeatureSet, build_features
from adsformer.data.schema import write_dataset
from adsformer.models.registry import build_model
from adsformer.run.calibration import Calibrator
from adsformer.run.config import ExperimentConfig, TrainConfig, load_experiment
from adsformer.run.model import spec_from_features
from adsformer.training import loop
from adsformer.training.loop import TrainResult, auto_batch_size, resolve_batch_size, train
from adsformer.training.metrics import log_loss
from tinydata import make_tiny_dataset

FAST = ["split_mode=fraction", "batch_size=4", "model=baseline"]


@pytest.fixture(scope="module")
def tiny() -> tuple[ExperimentConfig, FeatureSet]:
    cfg = load_experiment(None, FAST)
    return cfg, build_features(make_tiny_dataset(), cfg.data)


def _scripted(values: list[float]) -> Callable[..., float]:
    """A metric that returns ``values`` in turn (one per epoch), whatever the predictions."""
    it: Iterator[float] = iter(values)
    return lambda *_args, **_kw: next(it)


def _train(
    tiny: tuple[ExperimentConfig, FeatureSet], overrides: list[str]
) -> tuple[torch.nn.Module, TrainResult, list[dict[str, torch.Tensor]]]:
    """Train the baseline on the tiny data; also returns a copy of the model's state after every epoch."""
    base, fs = tiny
    cfg = load_experiment(None, [*FAST, *overrides])
    assert cfg.data == base.data
    torch.manual_seed(0)
    model = build_model(cfg.model, spec_from_features(fs))
    states: list[dict[str, torch.Tensor]] = []
    result = train(
        model,
        fs,
        "ctr",
        cfg.train,
        show_progress=False,
        on_epoch=lambda _r: states.append({k: v.clone() for k, v in model.state_dict().items()}),
    )
    return model, result, states


def _val_log_loss(model: torch.nn.Module, fs: FeatureSet, result: TrainResult) -> float:
    rows = fs.rows("val", "ctr")
    logits = loop.predict_logits(model, fs, rows)
    return log_loss(fs.labels("ctr")[rows], Calibrator(result.calibrator.keep_rate).uncalibrated(logits))


def _same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_stops_after_patience_epochs_without_improvement_and_restores_the_best(tiny, monkeypatch):
    # validation AUC rises to epoch 1, then falls: with patience 2 epochs 2 and 3 run, then it stops
    monkeypatch.setattr(loop, "roc_auc", _scripted([0.60, 0.70, 0.65, 0.64, 0.90, 0.95]))
    model, result, states = _train(tiny, ["epochs=6", "patience=2"])
    assert result.best_epoch == 1 and result.stopped_early and result.epochs_run == 4
    assert [e.epoch for e in result.epochs] == [0, 1, 2, 3]
    assert result.best == result.epochs[1] and result.best.val_roc_auc == 0.70
    assert _same_state(model.state_dict(), states[1]) and not _same_state(states[1], states[3])
    # the returned model scores the validation rows exactly as the best epoch did
    assert _val_log_loss(model, tiny[1], result) == pytest.approx(result.epochs[1].val_log_loss, abs=1e-6)


def test_monitor_log_loss_keeps_the_lowest_loss(tiny, monkeypatch):
    monkeypatch.setattr(loop, "log_loss", _scripted([0.50, 0.40, 0.45, 0.30]))
    model, result, states = _train(tiny, ["epochs=4", "patience=2", "monitor=log_loss"])
    assert result.monitor == "log_loss" and result.best_epoch == 3 and not result.stopped_early
    assert result.epochs_run == 4 and _same_state(model.state_dict(), states[3])


@pytest.mark.parametrize(
    "aucs, patience, epochs, run, stopped, best",
    [
        ([0.6, 0.5], 0, 5, 2, True, 0),  # patience 0: the first epoch without improvement stops it
        ([0.6, 0.7, 0.8], 1, 3, 3, False, 2),  # always improving: every epoch
        ([0.6, 0.5, 0.5], 2, 3, 3, False, 0),  # patience runs out on the last epoch: not early
        ([0.6, 0.6, 0.7, 0.6, 0.6], 1, 5, 2, True, 0),  # equal is no improvement
    ],
)
def test_patience(tiny, monkeypatch, aucs, patience, epochs, run, stopped, best):
    monkeypatch.setattr(loop, "roc_auc", _scripted(aucs))
    _model, result, _states = _train(tiny, [f"epochs={epochs}", f"patience={patience}"])
    assert (result.epochs_run, result.stopped_early, result.best_epoch) == (run, stopped, best)


@pytest.mark.parametrize(
    "n_train, batch",
    [
        (1, 256),
        (10_000, 256),
        (51_200, 256),
        (102_399, 256),
        (102_400, 512),
        (500_000, 2048),
        (1_000_000, 4096),
        (1_638_399, 4096),
        (1_638_400, 8192),
        (50_000_000, 8192),
    ],
)
def test_auto_batch_size_golden_values(n_train, batch):
    assert auto_batch_size(n_train) == batch
    assert n_train < 200 * 256 or n_train // batch >= 200  # at least 200 steps whenever 256 allows it


def test_resolve_batch_size():
    assert resolve_batch_size(0, 1_000_000) == 4096  # auto
    assert resolve_batch_size(0, 100) == 100  # never more than the training rows
    assert resolve_batch_size(1024, 1_000_000) == 1024  # an explicit batch size is kept
    assert resolve_batch_size(1024, 10) == 10
    with pytest.raises(ValueError, match="batch_size"):
        resolve_batch_size(-1, 10)


def test_default_trains_several_epochs_with_auto_batch():
    cfg = TrainConfig()
    assert (cfg.batch_size, cfg.epochs, cfg.patience, cfg.monitor) == (0, 10, 2, "roc_auc")


def test_warns_when_an_epoch_has_few_steps(tiny, monkeypatch, capsys):
    _model, result, _states = _train(tiny, ["epochs=1"])
    err = capsys.readouterr().err
    n = result.n_train
    assert result.batch_size == 4 and result.steps_per_epoch == -(-n // 4) < 50
    assert err.count("warning:") == 1 and len(err.strip().splitlines()) == 1
    assert f"only {result.steps_per_epoch} optimizer steps an epoch ({n} training rows, batch 4)" in err
    monkeypatch.setattr(loop, "FEW_STEPS", 1)
    _train(tiny, ["epochs=1"])
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "item, message",
    [
        ("batch_size=-1", "train.batch_size must be >= 0 (0 = auto), got -1"),
        ("epochs=0", "train.epochs (the most epochs to run) must be >= 1, got 0"),
        ("max_epochs=0", "train.epochs (the most epochs to run) must be >= 1, got 0"),
        ("patience=-1", "train.patience must be >= 0, got -1"),
        ("lr=0", "train.lr must be a finite number > 0, got 0.0"),
        ("lr=-0.1", "train.lr must be a finite number > 0, got -0.1"),
        ("lr=.nan", "train.lr must be a finite number > 0, got nan"),
        ("lr=inf", "train.lr must be a finite number > 0, got inf"),
        ("monitor=auc", "train.monitor must be one of ['roc_auc', 'log_loss'], got 'auc'"),
    ],
)
def test_range_checks_name_the_key(item, message):
    with pytest.raises(ConfigError) as err:
        load_experiment(None, [item])
    assert str(err.value) == message


def test_range_checks_in_a_yaml_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  patience: -2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: train.patience must be >= 0, got -2"):
        load_experiment(path)
    path.write_text("train:\n  max_epochs: 3\n")  # the short key is for --set; the field is epochs
    with pytest.raises(ConfigError, match=r"unknown config key 'train\.max_epochs'"):
        load_experiment(path)
    assert load_experiment(None, ["max_epochs=3"]).train.epochs == 3


def test_cli_train_prints_and_records_the_best_epoch(tmp_path, monkeypatch):
    monkeypatch.setattr(loop, "roc_auc", _scripted([0.6, 0.8, 0.7, 0.7, 0.9]))
    data = write_dataset(make_tiny_dataset(), tmp_path / "ds")
    args = ["train", "--data", str(data), "--model", "baseline", "--out", str(tmp_path / "run")]
    args += [f"--set={s}" for s in ["split_mode=fraction", "epochs=5", "patience=2", "threads=1"]]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    summary: dict[str, Any] = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    assert summary["best_epoch"] == 1 and summary["stopped_early"] is True and summary["epochs_run"] == 4
    assert summary["max_epochs"] == 5 and summary["monitor"] == "roc_auc"
    assert summary["batch_size"] == summary["n_train"] and summary["steps_per_epoch"] == 1  # auto, tiny data
    out = " ".join(res.output.replace("│", " ").split())  # the table's cells, one space apart
    assert "best epoch (from 0, restored) 1 " in out and "best epoch's val roc_auc (monitored) 0.8000" in out
    assert f"best epoch's val log_loss {summary['epochs'][1]['val_log_loss']:.4f}" in out
    assert "epochs run 4 of at most 5, stopped early" in out and "last epoch" not in out
    assert f"batch size {summary['n_train']} (auto), 1 step an epoch" in out
    assert "warning: only 1 optimizer step an epoch" in out


def test_cli_refuses_an_out_of_range_value(tmp_path):
    res = CliRunner().invoke(
        app, ["train", "--data", str(tmp_path), "--out", str(tmp_path / "r"), "--set", "batch_size=-8"]
    )
    assert res.exit_code == 1
    assert res.output.strip() == "error: train.batch_size must be >= 0 (0 = auto), got -8"


def test_no_validation_rows_never_stops_early(tiny, monkeypatch):
    base, fs = tiny
    empty = np.zeros(0, np.int64)
    rows = fs.rows

    def no_val(split: str, task: str = "ctr") -> np.ndarray:
        return empty if split == "val" else rows(split, task)

    monkeypatch.setattr(fs, "rows", no_val)
    _model, result, _states = _train((base, fs), ["epochs=3", "patience=0"])
    assert result.epochs_run == 3 and not result.stopped_early and result.n_val == 0


def test_stream_source_resolves_the_auto_batch_size(tiny, tmp_path):
    """The streamed path resolves batch_size=0 from the store's training row count, in the same place."""
    from adsformer.data.stream import FeatureStore, StreamSource, write_store

    cfg, fs = tiny
    write_store(fs, tmp_path / "store", cfg.data, dataset="tiny", row_group_rows=4)
    source = StreamSource(FeatureStore.open(tmp_path / "store"), "ctr", buffer_rows=8)
    torch.manual_seed(0)
    model = build_model(cfg.model, spec_from_features(fs))
    result = train(model, source, "ctr", TrainConfig(epochs=2, patience=5), show_progress=False)
    assert result.batch_size == source.n_train == fs.rows("train", "ctr").size and result.steps_per_epoch == 1
    assert result.train_examples == 2 * source.n_train and result.epochs_run == 2
