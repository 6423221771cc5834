"""The FuxiCTR peers (DIN, TransAct) as ablation rows: skipped with the install command without fuxictr,
trained on our split and features with it."""

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adsformer.cli import app
from adsformer.experiments import peers
from adsformer.simulator import SimulatorConfig, simulate

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
runner = CliRunner()
HAVE_FUXICTR = peers.peers_unavailable() is None
needs_fuxictr = pytest.mark.skipif(not HAVE_FUXICTR, reason="the optional package fuxictr is not installed")


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim") / "data"
    simulate(SimulatorConfig.preset("tiny").with_overrides(images=False), out)
    return out


def _ablate(sim_dir, out, *extra):
    res = runner.invoke(
        app,
        ["ablate", "--data", str(sim_dir), "--config", str(CONFIGS / "ctr_test.yaml"), "--seeds", "1",
         "--out", str(out), *extra],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    return json.loads((out / "ablation.json").read_text())


def test_missing_fuxictr_is_one_line_naming_the_install(monkeypatch):
    monkeypatch.setattr(peers.importlib.util, "find_spec", lambda name: None)
    peers._import_fuxictr.cache_clear()
    try:
        reason = peers.peers_unavailable()
        with pytest.raises(peers.PeersUnavailableError, match=r"pip install --no-deps fuxictr==2\.3\.10"):
            peers.import_fuxictr()
    finally:
        peers._import_fuxictr.cache_clear()
    assert reason is not None and "\n" not in reason and "adsformer[peers]" in reason


def test_without_fuxictr_the_peer_rows_are_skipped_with_the_reason(sim_dir, tmp_path, monkeypatch):
    from adsformer.experiments import ablation

    monkeypatch.setattr(ablation, "peers_unavailable", lambda: "the peers need fuxictr: pip install X")
    result = _ablate(sim_dir, tmp_path / "a", "--only", "DIN", "--only", "TransAct")
    assert [r["name"] for r in result["rows"]] == ["baseline"]
    skipped = {s["name"]: s["reason"] for s in result["skipped"]}
    assert skipped == {"DIN": "the peers need fuxictr: pip install X", "TransAct": skipped["DIN"]}
    assert "peers" not in result
    assert "skipped DIN: the peers need fuxictr" in (tmp_path / "a" / "ablation.md").read_text()


@needs_fuxictr
def test_peer_rows_train_on_our_split_and_report_the_same_fields(sim_dir, tmp_path):
    result = _ablate(sim_dir, tmp_path / "a", "--only", "DIN", "--only", "TransAct")
    rows = {r["name"]: r for r in result["rows"]}
    assert list(rows) == ["baseline", "DIN", "TransAct"] and not result["skipped"]
    base = rows["baseline"]
    for name in ("DIN", "TransAct"):
        row = rows[name]
        assert set(row) == set(base), name
        assert math.isfinite(row["roc_auc"]["mean"]) and 0 < row["roc_auc"]["mean"] < 1
        assert row["n_test"] == base["n_test"]  # the same test rows
        assert row["roc_auc_logged"] is None  # no position tower
        assert row["gauc"] is not None and row["train_examples_per_s"]["mean"] > 0
        run = row["runs"][0]
        assert run["calibrated"] and run["roc_auc_ci"] is not None
    assert result["peers"] == {"package": "fuxictr 2.3.10", "sequence": "listing:view"}
    assert "DIN, TransAct: fuxictr 2.3.10" in (tmp_path / "a" / "ablation.md").read_text()


@needs_fuxictr
def test_peer_training_mirrors_the_loop(sim_dir):
    """Up to `epochs` epochs with early stopping on the validation monitor, the resolved batch size, the
    best epoch restored and Platt fit on validation."""
    from adsformer.data.features import build_features
    from adsformer.data.validate import read_dataset
    from adsformer.experiments.peers import fit_peer, peer_logits
    from adsformer.run.config import load_experiment

    cfg = load_experiment(CONFIGS / "ctr_test.yaml", ["epochs=3", "patience=0", "batch_size=0", "max_len=5"])
    fs = build_features(read_dataset(sim_dir), cfg.data)
    model, result, adapter = fit_peer("din", cfg, fs)
    n_train = fs.rows("train").size
    assert result.batch_size == min(256, n_train) and result.n_train == n_train
    assert 1 <= result.epochs_run <= 3 and result.best_epoch < result.epochs_run
    assert result.stopped_early == (result.epochs_run < 3)
    assert result.calibrator.method == "platt" and result.calibrator.fit_rows == fs.rows("val").size
    z = peer_logits(model, adapter, fs.rows("val"), 64)  # the restored (best) state scores validation
    assert z.shape == (fs.rows("val").size,)
    best = result.epochs[result.best_epoch].val_roc_auc
    assert best == max(e.val_roc_auc for e in result.epochs)
