import json

from typer.testing import CliRunner

from adsformer.cli import app
from adsformer.simulator import SimulatorConfig, simulate


def test_daily_protocol_end_to_end(tmp_path):
    data = tmp_path / "data"
    simulate(SimulatorConfig.preset("tiny").with_overrides(images=False), data)
    res = CliRunner().invoke(
        app,
        [
            "daily",
            "--data",
            str(data),
            "--task",
            "ctr",
            "--days",
            "2",
            "--train-days",
            "2",
            "--config",
            "configs/ctr_test.yaml",
            "--out",
            str(tmp_path / "daily"),
        ],
    )
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "daily" / "daily.json").read_text())
    days = summary["days"]
    assert len(days) == 2 and days[1]["test_start"] - days[0]["test_start"] == 86_400
    for d in days:
        assert d["baseline"]["n_test"] == d["adsformer"]["n_test"] > 0
        lift = 100 * (d["adsformer"]["roc_auc"] / d["baseline"]["roc_auc"] - 1)
        assert abs(d["roc_auc_lift"] - lift) < 1e-9
    assert (tmp_path / "daily" / "daily_lift.png").stat().st_size > 0
    # the summary line agrees with the per-day lifts (computed here, not read back from the code's own count)
    positive = sum(d["roc_auc_lift"] > 0 for d in days)
    mean = sum(d["roc_auc_lift"] for d in days) / len(days)
    assert abs(summary["roc_auc_lift_mean"] - mean) < 1e-9
    md = (tmp_path / "daily" / "daily.md").read_text()
    assert f"Mean ROC-AUC lift {mean:+.2f}%; positive on {positive} of 2 days." in md
