import numpy as np
import pytest
from typer.testing import CliRunner

from adsformer.cli import app
from adsformer.report.curves import pr_curve, reliability, roc_curve
from adsformer.report.html import build_report
from adsformer.report.inputs import ReportError
from adsformer.training.metrics import pr_auc, roc_auc


def _data(n=5000, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.random(n) ** 3
    y = (rng.random(n) < p).astype(np.int8)
    return y, np.round(p, 3)  # rounding makes ties


def test_roc_curve_area_equals_roc_auc_and_pr_curve_ends_at_base_rate():
    y, p = _data()
    roc = roc_curve(y, p, points=10**6)
    assert (roc.x[0], roc.y[0], roc.x[-1], roc.y[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(roc.x) >= 0) and np.all(np.diff(roc.y) >= 0)
    assert np.trapezoid(roc.y, roc.x) == pytest.approx(roc_auc(y, p), abs=1e-9)
    pr = pr_curve(y, p, points=10**6)
    assert pr.x[-1] == 1.0 and pr.y[-1] == pytest.approx(y.mean())
    assert pr_auc(y, p) > y.mean()
    assert roc_curve(y, p, points=50).x.size <= 51  # thinned for plotting


def test_reliability_bins_cover_every_row_and_track_a_calibrated_model():
    y, p = _data(200_000, 1)
    r = reliability(y, p, bins=10)
    assert r.count.sum() == y.size and r.predicted.size <= 10
    assert np.abs(r.predicted - r.observed).max() < 0.02  # y was drawn from p


def test_report_of_demo_runs_and_errors(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["demo", "--scale", "tiny", "--out", str(tmp_path / "demo")])
    assert res.exit_code == 0, res.output
    page = (tmp_path / "demo" / "report" / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 8  # 2 ROC/PR + 4 reliability + 2 training
    for text in ("Test metrics", "CTR: ranking", "PCCVR: calibration", "ECE before", "baseline", "adsformer"):
        assert text in page
    data = page[page.index("<h2>Data</h2>") :]  # the data section of the demo's summary, in the HTML too
    for text in ("Splits", "Sequences (window", "Clicks by position", "Vocabularies", "quality", "Timings"):
        assert text in data, text
    assert 'class="warnings"' in page and "positives in the test split (&lt; 200)" in page  # tiny scale
    assert "report.html" in " ".join(res.output.split())
    out = tmp_path / "r.html"
    res = runner.invoke(app, ["report", str(tmp_path / "demo" / "runs" / "ctr-adsformer"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "CTR: ranking" in out.read_text() and "PCCVR" not in out.read_text()
    res = runner.invoke(app, ["report", str(tmp_path / "demo" / "data"), "--out", str(tmp_path / "x.html")])
    assert res.exit_code == 1 and "no evaluated run" in res.output and not (tmp_path / "x.html").exists()
    with pytest.raises(ReportError, match="does not exist"):
        build_report([tmp_path / "nope"])


def test_ablation_table_and_lift_chart(tmp_path):
    import json

    def ms(m, s=0.001):
        return {"mean": m, "std": s}

    rows = [
        {
            "name": "baseline",
            "roc_auc": ms(0.65),
            "pr_auc": ms(0.09),
            "log_loss": ms(0.19),
            "ece": ms(0.002),
            "roc_auc_lift": ms(0.0, 0.0),
            "pr_auc_lift": ms(0.0, 0.0),
        },
        {
            "name": "ADPM-3[MaxPool]",
            "roc_auc": ms(0.66),
            "pr_auc": ms(0.1),
            "log_loss": ms(0.188),
            "ece": ms(0.002),
            "roc_auc_lift": ms(1.5, 0.2),
            "pr_auc_lift": ms(4.0, 1.0),
        },
        {
            "name": "Ebay-k=5",
            "roc_auc": ms(0.64),
            "pr_auc": ms(0.08),
            "log_loss": ms(0.191),
            "ece": ms(0.003),
            "roc_auc_lift": ms(-1.2, 0.3),
            "pr_auc_lift": ms(-2.0, 1.0),
        },
    ]
    ab = tmp_path / "ablation"
    ab.mkdir()
    (ab / "ablation.json").write_text(
        json.dumps({"task": "ctr", "dataset": "sim", "seeds": 3, "rows": rows, "skipped": []})
    )
    page = build_report([tmp_path])
    assert "Ablation: CTR on sim (3 seeds)" in page
    assert '<td class="pos">+1.50% ± 0.20</td>' in page and '<td class="neg">-1.20% ± 0.30</td>' in page
    assert page.count("data:image/png;base64,") == 1
