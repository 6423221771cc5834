"""The report's warnings box, intervals, data section and best-epoch marks (fabricated run directories:
nothing is trained)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.axes
import numpy as np
import polars as pl
import pytest

from adsformer.report import checks, plots
from adsformer.report.html import build_report
from adsformer.report.inputs import load_run

PLATT_HURT_VAL = {
    "method": "downsampling",
    "decision": "skipped",
    "val_ece_before": 0.0036,
    "val_ece_platt": 0.0182,
}


def _run(
    directory: Path,
    *,
    model: str,
    positives: int,
    nce: float = 0.9,
    calibration: dict | None = None,
    ece: tuple[float, float] = (0.02, 0.01),
    best_epoch: int = 1,
) -> Path:
    """A run directory as train + evaluate leave it, with ``positives`` of 2,000 test rows."""
    directory.mkdir(parents=True)
    (directory / "model.pt").write_bytes(b"")
    rng = np.random.default_rng(0)
    labels = np.zeros(2000, np.int8)
    labels[:positives] = 1
    p = np.clip(0.1 + 0.2 * labels + 0.05 * rng.standard_normal(2000), 0.001, 0.999)
    pl.DataFrame({"label": labels, "p_uncalibrated": p, "p": p}).write_parquet(
        directory / "test_predictions.parquet"
    )
    metrics = {
        "task": "ctr",
        "model": model,
        "dataset": "fabricated",
        "n_test": 2000,
        "roc_auc": 0.70 if model == "baseline" else 0.75,
        "pr_auc": 0.2,
        "log_loss": 0.3,
        "ece": ece[1],
        "nce": nce,
        "before_calibration": {"log_loss": 0.31, "ece": ece[0], "nce": nce},
        "calibrated": (calibration or {}).get("method", "platt") == "platt",
        "calibration": calibration or {"method": "platt", "val_ece_before": 0.03, "val_ece_platt": 0.01},
        "roc_auc_ci": [0.6781, 0.8070],
        "pr_auc_ci": [0.1603, 0.3627],
        "gauc": 0.71,
        "gauc_ci": [0.7038, 0.8426],
        "ece_bins": 15,
    }
    (directory / "metrics.json").write_text(json.dumps(metrics))
    epochs = [
        {
            "epoch": e,
            "train_loss": 0.4 - 0.01 * e,
            "val_log_loss": 0.3,
            "val_roc_auc": 0.7 + 0.01 * e,
            "step": 10 * (e + 1),
        }
        for e in range(3)
    ]
    (directory / "epochs.csv").write_text(
        "epoch,train_loss,val_log_loss,val_roc_auc,step\n"
        + "".join(
            f"{e['epoch']},{e['train_loss']},{e['val_log_loss']},{e['val_roc_auc']},{e['step']}\n"
            for e in epochs
        )
    )
    (directory / "train_summary.json").write_text(json.dumps({"best_epoch": best_epoch, "epochs": epochs}))
    return directory


@pytest.mark.parametrize(("positives", "warned"), [(199, True), (200, False)])
def test_too_few_test_positives(positives, warned):
    found = checks.few_positives("PCCVR adsformer", positives)
    assert (found is not None) == warned
    if warned:
        assert "only 199 positives in the test split (< 200)" in found


def test_calibration_that_hurt_validation_ece_is_said_with_its_figures():
    found = checks.calibration_hurt("CTR m", {"calibration": PLATT_HURT_VAL})
    assert found is not None and "(0.0036 -> 0.0182)" in found and "not applied" in found
    improved = {"method": "platt", "decision": "applied", "val_ece_before": 0.0182, "val_ece_platt": 0.0036}
    assert checks.calibration_hurt("CTR m", {"calibration": improved}) is None


def test_a_run_without_validation_figures_is_judged_on_its_test_ece():
    legacy = {"calibration": {"method": "platt"}, "before_calibration": {"ece": 0.0036}, "ece": 0.0182}
    found = checks.calibration_hurt("CTR m", legacy)
    assert found is not None and "test ECE worse (0.0036 -> 0.0182)" in found
    assert checks.calibration_hurt("CTR m", {**legacy, "ece": 0.003}) is None
    assert checks.calibration_hurt("CTR m", {**legacy, "calibration": {"method": "downsampling"}}) is None


@pytest.mark.parametrize(("nce", "warned"), [(1.0, True), (1.2, True), (0.999, False), (None, False)])
def test_nce_at_least_one(nce, warned):
    assert (checks.nce_at_least_one("CTR m", {"nce": nce}) is not None) == warned


def test_report_shows_warnings_intervals_and_calibration_choice(tmp_path):
    _run(tmp_path / "runs" / "base", model="baseline", positives=150, nce=1.05, calibration=PLATT_HURT_VAL)
    _run(tmp_path / "runs" / "ads", model="adsformer", positives=400)
    page = build_report([tmp_path / "runs"])
    box = page[page.index('<div class="warnings">') : page.index("</div>")]
    assert "CTR baseline: only 150 positives" in box
    assert "CTR baseline: Platt scaling would have made validation ECE worse (0.0036 -&gt; 0.0182)" in box
    assert "CTR baseline: NCE 1.0500 &gt;= 1" in box
    assert "adsformer" not in box  # 400 positives, calibration helped, NCE < 1
    assert '<span class="ci">[0.6781, 0.8070]</span>' in page and "[0.7038, 0.8426]" in page
    assert "none (Platt hurt val ECE)" in page and "<td>Platt</td>" in page


def test_report_without_warnings_has_no_box(tmp_path):
    _run(tmp_path / "run", model="adsformer", positives=400)
    assert 'class="warnings"' not in build_report([tmp_path / "run"])


def test_best_epoch_is_marked_on_the_training_curves(tmp_path, monkeypatch):
    run = load_run(_run(tmp_path / "run", model="adsformer", positives=400, best_epoch=1))
    assert run.best_epoch == 1
    marks: list[tuple[list, list]] = []
    original = matplotlib.axes.Axes.scatter

    def spy(self, x, y, *args, **kwargs):
        marks.append((list(x), list(y)))
        return original(self, x, y, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "scatter", spy)
    plots.training_figure([run])
    assert marks == [([20.0], [0.3]), ([20.0], [pytest.approx(0.71)])]  # loss and ROC-AUC panels, epoch 1
    marks.clear()
    (tmp_path / "run" / "train_summary.json").write_text("{}")  # best epoch unknown: nothing marked
    plots.training_figure([load_run(tmp_path / "run")])
    assert marks == []


def test_data_summary_becomes_the_data_section(tmp_path):
    _run(tmp_path / "runs" / "ads", model="adsformer", positives=400)
    report = tmp_path / "report"
    report.mkdir()
    summary = {
        "dataset": {"users": 120, "actions": {"view": 10, "search": 2}},
        "splits": [{"split": "train", "impressions": 3000, "ctr": 0.07}],
        "sequences": [{"sequence": "listing:view", "mean_len": 2.5}],
        "vocab_sizes": {"listing": 802},
        "skipgram": {"n": 800, "separation_auc": 0.91},
        "timings": {"simulate_s": 1.5},
        "info": {"window_s": 3600, "max_len": 50},
    }
    (report / "summary.json").write_text(json.dumps(summary))
    # the figures the demo writes beside it are embedded when present
    (report / "ctr_by_position.png").write_bytes(b"\x89PNG fake")
    page = build_report([tmp_path / "runs", report])
    data = page[page.index("<h2>Data</h2>") :]
    for text in (
        "view=10, search=2",
        "listing:view",
        "802",
        "separation_auc",
        "0.9100",
        "simulate_s",
        "M = 50",
    ):
        assert text in data, text
    assert data.count("data:image/png;base64,") == 1  # the position chart; no sequence-length chart here
