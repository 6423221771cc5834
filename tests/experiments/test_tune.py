"""``adsformer tune``: trials on the validation split only, their files, resuming, pruning, the space."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from adsformer import extras
from adsformer.cli import app
from adsformer.config import ConfigError
from adsformer.data.features import FeatureSet
from adsformer.data.schema import write_dataset
from adsformer.io import growing_dir
from adsformer.run.config import ExperimentConfig, load_experiment
from tinydata import make_tiny_dataset

optuna = pytest.importorskip("optuna")

from adsformer.experiments.tune import (  # noqa: E402  (needs optuna)
    STUDY_FILE,
    base_params,
    canonical_space,
    open_study,
    run_tune,
    short_name,
    trial_config,
)

runner = CliRunner()
#: Tiny trials: two epochs, log loss (tiny validation splits make ROC-AUC ties), the median pruner off
TINY = [
    "--config",
    "ctr_test",
    "--set",
    "epochs=2",
    "--set",
    "tune.metric=log_loss",
    "--set",
    "tune.prune=false",
]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_dataset(make_tiny_dataset(), tmp_path_factory.mktemp("tune") / "ds")


@pytest.fixture
def no_test_split(monkeypatch):
    """Any read of the test rows fails the test: trials must never touch them."""
    rows = FeatureSet.rows

    def guarded(self, split, task="ctr"):
        assert split != "test", "a trial read the test split"
        return rows(self, split, task)

    monkeypatch.setattr(FeatureSet, "rows", guarded)


def _tune(data: Path, out: Path, *args: str):
    return runner.invoke(app, ["tune", "--data", str(data), "--out", str(out), *TINY, *args])


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_tune_trials_on_validation_writes_its_files_and_resumes(data, tmp_path, no_test_split):
    out = tmp_path / "tune"
    res = _tune(data, out, "--trials", "2")
    assert res.exit_code == 0, res.output
    for name in ("tune.json", "trials.csv", "best_config.yaml", "trials.png", "tune.md", STUDY_FILE):
        assert (out / name).is_file(), name
    first = json.loads((out / "tune.json").read_text())
    assert first["metric"] == "val_log_loss" and first["direction"] == "minimize"
    assert [t["state"] for t in first["trials"]] == ["complete", "complete"]

    # trial 0 is the config itself: its own values of the searched keys
    cfg = load_experiment("ctr_test", ["epochs=2", "tune.metric=log_loss"])
    space = canonical_space(cfg)
    assert first["trials"][0]["base"] and first["trials"][0]["params"] == base_params(cfg, space)
    assert first["trials"][0]["params"]["train.lr"] == cfg.train.lr
    assert first["trials"][0]["params"]["train.weight_decay"] == 0.0  # unset: CTR's effective 0

    # each trial's value is its run's validation metric at the restored epoch
    for trial in first["trials"]:
        summary = json.loads((out / trial["run"] / "train_summary.json").read_text())
        assert summary["monitor"] == "log_loss"
        assert trial["value"] == summary["epochs"][summary["best_epoch"]]["val_log_loss"]
        intermediate = {int(k): v for k, v in trial["intermediate"].items()}
        assert intermediate == {e["epoch"]: e["val_log_loss"] for e in summary["epochs"]}
        assert not (out / trial["run"] / "metrics.json").exists()  # never evaluated on test

    best = first["best"]
    assert best["value"] == min(t["value"] for t in first["trials"])

    # the same command with more trials continues the study: the first trials kept, new points drawn
    res = _tune(data, out, "--trials", "3")
    assert res.exit_code == 0, res.output
    again = json.loads((out / "tune.json").read_text())
    assert len(again["trials"]) == 3 and again["trials"][:2] == first["trials"]
    assert again["trials"][2]["params"] not in [t["params"] for t in first["trials"]]
    rows = _csv(out / "trials.csv")
    assert [r["number"] for r in rows] == ["0", "1", "2"] and rows[2]["state"] == "complete"
    assert float(rows[2]["value"]) == again["trials"][2]["value"]
    assert (
        len(optuna.load_study(study_name="adsformer-tune", storage=f"sqlite:///{out / STUDY_FILE}").trials)
        == 3
    )
    # run once more as is: nothing left to run
    res = _tune(data, out, "--trials", "3")
    assert res.exit_code == 0 and len(json.loads((out / "tune.json").read_text())["trials"]) == 3
    # other settings are another study: refused in one line
    res = runner.invoke(
        app, ["tune", "--data", str(data), "--out", str(out), *TINY, "--trials", "4", "--set", "epochs=1"]
    )
    assert res.exit_code == 1 and "holds a study of other settings (config.train.epochs)" in res.output


def test_pruned_trials_report_every_epoch_and_leave_no_run(data, tmp_path, no_test_split):
    """A pruner that prunes whatever it sees: each trial reports its first epoch and stops there; a trial
    of one epoch is never pruned (its work is done)."""
    cfg = load_experiment("ctr_test", ["epochs=3", "tune.metric=log_loss", "trials=2"])
    out = tmp_path / "pruned"
    summary = run_tune(data, cfg, out, pruner=optuna.pruners.ThresholdPruner(upper=0.0))
    assert [t["state"] for t in summary["trials"]] == ["pruned", "pruned"]
    for trial in summary["trials"]:
        assert list(trial["intermediate"]) == [0] and trial["epochs_run"] == 1
        assert trial["value"] is None and trial["run"] is None
    assert summary["best"] is None and not (out / "trials").exists()
    assert not (out / "best_config.yaml").exists()
    assert [r["state"] for r in _csv(out / "trials.csv")] == ["pruned", "pruned"]
    with pytest.raises(ConfigError, match="no complete trial"):
        run_tune(data, cfg, out, final=True, pruner=optuna.pruners.ThresholdPruner(upper=0.0))

    one = load_experiment("ctr_test", ["epochs=1", "tune.metric=log_loss", "trials=1"])
    done = run_tune(data, one, tmp_path / "one", pruner=optuna.pruners.ThresholdPruner(upper=0.0))
    assert [t["state"] for t in done["trials"]] == ["complete"]


def test_final_evaluates_the_best_and_the_config_itself_on_test(data, tmp_path):
    out = tmp_path / "final"
    res = _tune(data, out, "--trials", "2", "--final")
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "tune.json").read_text())
    final = summary["final"]
    assert final["best"]["trial"] == summary["best"]["number"] and final["base"]["trial"] == 0
    for rec in final.values():
        metrics = json.loads((out / rec["run"] / "metrics.json").read_text())
        assert rec["roc_auc"] == metrics["roc_auc"] and rec["log_loss"] == metrics["log_loss"]
    assert "## Test split (one seed each)" in (out / "tune.md").read_text()


def test_a_run_cut_short_is_run_again(data, tmp_path):
    """A trial left running by a killed process is marked failed and its parameters run again."""
    cfg = load_experiment("ctr_test", ["epochs=1", "tune.metric=log_loss", "trials=1"])
    out = growing_dir(tmp_path / "killed")
    study = open_study(out, cfg, data)
    trial = study.ask()
    lr = trial.suggest_float("train.lr", 3e-4, 1e-2, log=True)  # ... and the process dies here
    summary = run_tune(data, cfg, out)
    states = [t["state"] for t in summary["trials"]]
    assert states == ["fail", "complete"]
    assert summary["trials"][1]["params"]["train.lr"] == pytest.approx(lr)


def test_the_search_space_is_checked_before_any_trial(data, tmp_path):
    def space(text: str) -> ExperimentConfig:
        path = tmp_path / "c.yaml"
        path.write_text(f"extends: ctr_test\ntune:\n  space:\n{text}")
        return load_experiment(path)

    cfg = space("    lr: {low: 1.0e-4, high: 1.0e-2, log: true}\n    deep: {choices: [[8], [16], [16, 8]]}\n")
    assert set(canonical_space(cfg)) == {"train.lr", "model.ranker.deep"}  # short keys expanded
    for text, needle in [
        ("    train.lrr: {low: 0.1, high: 0.2}\n", "unknown config key 'train.lrr'"),
        ("    model.ranker.deep: {low: 1, high: 2}\n", "a range needs a numeric key"),
        ("    model.ranker.dropout: {low: 0, high: 1.5}\n", "the value 1.5 is not valid"),
        ("    model.ranker.cross_layers: {low: 0, high: 2.5}\n", "is an integer"),
        ("    task: {choices: [ctr, pccvr]}\n", "not searchable"),
    ]:
        with pytest.raises(ConfigError, match=needle):
            canonical_space(space(text))
    res = runner.invoke(
        app,
        ["tune", "--data", str(data), "--out", str(tmp_path / "t"), "--config", str(tmp_path / "c.yaml")],
    )
    assert res.exit_code == 1 and "error: tune.space.task: not searchable" in res.output
    assert not (tmp_path / "t").exists()
    # a file's space replaces the space of the file it extends (no merge of their keys)
    child = tmp_path / "child.yaml"
    child.write_text("extends: c.yaml\ntune:\n  space:\n    lr: {low: 1.0e-3, high: 1.0e-2}\n")
    (tmp_path / "c.yaml").write_text("extends: ctr_test\ntune:\n  space:\n    deep: {choices: [[8]]}\n")
    assert set(canonical_space(load_experiment(child))) == {"train.lr"}
    # the default space follows the model: the baseline has no encoder to regularize
    baseline = load_experiment("ctr_test", ["model=baseline"])
    assert "model.adpm.encoder.dropout" not in canonical_space(baseline)
    assert "model.adpm.encoder.dropout" in canonical_space(load_experiment("ctr_test"))
    assert (
        short_name("model.ranker.dropout", canonical_space(load_experiment("ctr_test"))) == "ranker.dropout"
    )


def test_tune_without_optuna_is_one_line(data, tmp_path, monkeypatch):
    monkeypatch.setattr(extras, "installed", lambda name: name != "optuna")
    res = _tune(data, tmp_path / "t")
    assert res.exit_code == 1
    lines = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert lines == ["error: 'adsformer tune' needs the tune extra: pip install 'adsformer[tune]'"]
    assert not (tmp_path / "t").exists()


def test_best_config_is_usable_as_config(data, tmp_path):
    """The overlay of the best trial: as --config it gives the trial's own config (the tune section aside);
    a list choice (layer widths) goes through the study and back as a list."""
    space = tmp_path / "space.yaml"
    space.write_text(
        "extends: ctr_test\ntrain: {epochs: 2}\n"
        "tune:\n  metric: log_loss\n  space:\n    deep: {choices: [[8], [16], [16, 8]]}\n    lr: {low: 1.0e-3, high: 1.0e-2}\n"
    )
    out = tmp_path / "t"
    res = runner.invoke(
        app, ["tune", "--data", str(data), "--out", str(out), "--config", str(space), "--trials", "2"]
    )
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "tune.json").read_text())
    assert summary["trials"][0]["params"]["model.ranker.deep"] == [16]  # the config's own widths
    assert all(t["params"]["model.ranker.deep"] in ([8], [16], [16, 8]) for t in summary["trials"])
    text = (out / "best_config.yaml").read_text()
    assert text.startswith(f"# adsformer tune: the best trial ({summary['best']['number']})")
    want = trial_config(load_experiment(space), summary["best"]["params"])
    got = load_experiment(out / "best_config.yaml")
    assert got.train == want.train and got.model == want.model and got.data == want.data
    assert "tune" not in yaml.safe_load(text)


def test_tune_tracks_each_trial_and_the_final_test_metrics(data, tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.setenv("ADSFORMER_TENSORBOARD_DIR", str(tmp_path / "tb"))
    out = tmp_path / "t"
    res = _tune(data, out, "--trials", "1", "--final", "--log-to", "tensorboard")
    assert res.exit_code == 0, res.output
    run = out / "trials" / "trial-0000"
    record = json.loads((run / "tracking.json").read_text())
    assert Path(record["log_dir"]).name.startswith("t-trial-0000-")
    events = EventAccumulator(record["log_dir"])
    events.Reload()
    summary = json.loads((run / "train_summary.json").read_text())
    assert [e.value for e in events.Scalars("val_log_loss")] == pytest.approx(
        [e["val_log_loss"] for e in summary["epochs"]], rel=1e-6
    )
    metrics = json.loads((run / "metrics.json").read_text())
    assert events.Scalars("test_log_loss")[0].value == pytest.approx(metrics["log_loss"], rel=1e-6)
