"""The command line as a user runs it (typer's runner, tiny data)."""

import polars as pl
from typer.testing import CliRunner

from adsformer.cli import app
from adsformer.data.schema import write_dataset

runner = CliRunner()


def flat(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(text.split())


def test_help_lists_commands():
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    for cmd in ("prepare", "validate", "sequences", "demo"):
        assert cmd in res.output


def test_validate_ok_and_bad(tmp_path, tiny_dataset):
    d = write_dataset(tiny_dataset, tmp_path / "ds")
    res = runner.invoke(app, ["validate", str(d)])
    assert res.exit_code == 0, res.output
    assert "valid" in res.output and "impressions" in res.output
    df = pl.read_parquet(d / "events.parquet").with_columns(pl.lit("zap").alias("action"))
    df.write_parquet(d / "events.parquet")
    res = runner.invoke(app, ["validate", str(d)])
    assert res.exit_code == 1
    assert "events.parquet, column 'action'" in res.output and "unknown action ['zap']" in res.output


def test_validate_missing_directory(tmp_path):
    res = runner.invoke(app, ["validate", str(tmp_path / "nope")])
    assert res.exit_code == 1 and "not a directory" in res.output


def test_sequences_with_overrides(tmp_path, tiny_dataset):
    d = write_dataset(tiny_dataset, tmp_path / "ds")
    res = runner.invoke(
        app,
        [
            "sequences",
            "--data",
            str(d),
            "--set",
            "window_s=5",
            "--set",
            "max_len=3",
            "--set",
            "split_mode=fraction",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "window 5 s, M = 3" in flat(res.output) and "listing:view" in res.output


def test_bad_override_is_a_clear_error(tmp_path, tiny_dataset):
    d = write_dataset(tiny_dataset, tmp_path / "ds")
    res = runner.invoke(app, ["sequences", "--data", str(d), "--set", "windw_s=5"])
    assert res.exit_code == 1 and "unknown config key 'windw_s'" in res.output


def test_config_file(tmp_path, tiny_dataset):
    d = write_dataset(tiny_dataset, tmp_path / "ds")
    from pathlib import Path

    cfg = Path(__file__).parents[1] / "configs" / "data_test.yaml"
    res = runner.invoke(app, ["sequences", "--data", str(d), "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    assert "window 1800 s, M = 10" in flat(res.output)
