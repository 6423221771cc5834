"""The command line as a user runs it (typer's runner, tiny data)."""

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from adsformer.cli import app
from adsformer.config import ConfigError
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
    cfg = Path(__file__).parents[1] / "configs" / "data_test.yaml"
    res = runner.invoke(app, ["sequences", "--data", str(d), "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    assert "window 1800 s, M = 10" in flat(res.output)


# -- issue 18: a hostile user's inputs end as one clear line, never a traceback -----------------------------
CONFIG = str(Path(__file__).parents[1] / "configs" / "ctr_test.yaml")


def one_error(res, *needles: str, code: int = 1) -> str:
    """The result is a clean exit ``code`` whose output holds exactly one ``error:`` line, naming ``needles``."""
    assert isinstance(res.exception, SystemExit), (res.exception, res.output)
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output, res.output
    assert code == 2 or "internal error" not in res.output, res.output
    lines = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, res.output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def train(data, out, *sets: str, extra: tuple[str, ...] = ()):
    args = ["train", "--data", str(data), "--out", str(out), "--config", CONFIG, "--set", "epochs=1"]
    for item in sets:
        args += ["--set", item]
    return runner.invoke(app, [*args, *extra])


@pytest.fixture
def ds_dir(tmp_path, tiny_dataset):
    return write_dataset(tiny_dataset, tmp_path / "ds")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from tinydata import make_tiny_dataset

    root = tmp_path_factory.mktemp("trained")
    data = write_dataset(make_tiny_dataset(), root / "ds")
    res = train(data, root / "run")
    assert res.exit_code == 0, res.output
    return data, root / "run"


def test_version_and_debug(ds_dir, tmp_path):
    from adsformer import __version__

    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"adsformer {__version__}"
    res = runner.invoke(
        app, ["--debug", "train", "--data", str(ds_dir), "--out", str(tmp_path / "r"), "--set", "lr=nan"]
    )
    assert isinstance(res.exception, ConfigError)  # --debug: the exception itself, with its traceback
    one_error(train(ds_dir, tmp_path / "r", "lr=nan"), "train.lr must be a finite number > 0, got nan")


def test_integer_listing_ids_validate_and_train(ds_dir, tmp_path):
    for table in ("listings", "events", "impressions"):
        df = pl.read_parquet(ds_dir / f"{table}.parquet")
        df.with_columns(pl.col("listing_id").str.slice(1).cast(pl.Int64)).write_parquet(
            ds_dir / f"{table}.parquet"
        )
    res = runner.invoke(app, ["validate", str(ds_dir)])
    assert res.exit_code == 0, res.output
    res = train(ds_dir, tmp_path / "run")
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize(
    "table, expr, needles",
    [
        ("events", pl.col("ts") * 1000, ("events.parquet", "column 'ts'", "milliseconds", "divide by 1,000")),
        ("impressions", pl.col("ts") + 2**62, ("impressions.parquet", "column 'ts'", "before 2100-01-01")),
    ],
)
def test_bad_times_fail_validate_and_train_alike(ds_dir, tmp_path, table, expr, needles):
    pl.read_parquet(ds_dir / f"{table}.parquet").with_columns(expr.alias("ts")).write_parquet(
        ds_dir / f"{table}.parquet"
    )
    res = runner.invoke(app, ["validate", str(ds_dir)])
    assert res.exit_code == 1 and all(n in flat(res.output) for n in needles), res.output
    one_error(train(ds_dir, tmp_path / "run"), *needles)


def test_empty_events(ds_dir, tmp_path):
    pl.read_parquet(ds_dir / "events.parquet").head(0).write_parquet(ds_dir / "events.parquet")
    assert runner.invoke(app, ["validate", str(ds_dir)]).exit_code == 1
    one_error(train(ds_dir, tmp_path / "run"), "events.parquet", "table has no rows")


def test_manifest_actions_string(ds_dir, tmp_path):
    manifest = json.loads((ds_dir / "dataset.json").read_text())
    (ds_dir / "dataset.json").write_text(json.dumps({**manifest, "actions": "view"}))
    res = runner.invoke(app, ["validate", str(ds_dir)])
    assert res.exit_code == 1 and "dataset.json, key 'actions': expected a list of action words" in res.output
    one_error(train(ds_dir, tmp_path / "run"), "dataset.json", "'actions'")


@pytest.mark.parametrize(
    "item, key",
    [
        ("batch_size=-5", "train.batch_size"),
        ("window_s=-10", "data.sequences.window_s"),
        ("max_len=-1", "data.sequences.max_len"),
        ("lr=nan", "train.lr"),
        ("neg_keep_rate=0", "data.sampling.neg_keep_rate"),
        ("epochs=0", "train.epochs"),
        ("heads=0", "model.adpm.encoder.heads"),
        ("model.ranker.dropout=1.5", "model.ranker.dropout"),
        ("deep=[a", "--set 'deep=[a'"),
        ("windw_s=5", "unknown config key 'windw_s'"),
    ],
)
def test_bad_set_values_name_the_key(ds_dir, tmp_path, item, key):
    one_error(train(ds_dir, tmp_path / "run", item), key)
    assert not (tmp_path / "run").exists()


def test_batch_size_zero_is_auto(ds_dir, tmp_path):
    res = train(ds_dir, tmp_path / "run", "batch_size=0")
    assert res.exit_code == 0 and "(auto)" in res.output, res.output


def _copy_run(run, dest):
    import shutil

    shutil.copytree(run, dest)
    return dest


@pytest.mark.parametrize(
    "damage, needles",
    [
        (
            lambda r: (r / "model.pt").write_bytes((r / "model.pt").read_bytes()[:4000]),
            ("model.pt", "not a readable model file"),
        ),
        (lambda r: (r / "model.pt").write_bytes(b""), ("model.pt", "not a readable model file")),
        (lambda r: (r / "model.pt").write_bytes(b"hello"), ("model.pt", "not a readable model file")),
        (lambda r: (r / "calibration.json").write_text("{nope"), ("calibration.json", "not valid JSON")),
        (
            lambda r: (r / "calibration.json").write_text('{"scale": "x"}'),
            ("calibration.json", "scale must be a finite number"),
        ),
        (lambda r: (r / "features.json").unlink(), ("features.json", "missing")),
        (lambda r: (r / "vocab" / "vocab.json").write_text("[]"), ("vocab", "not readable vocabularies")),
    ],
)
def test_corrupt_run_files_are_named(trained, tmp_path, damage, needles):
    data, run = trained
    bad = _copy_run(run, tmp_path / "bad")
    damage(bad)
    one_error(runner.invoke(app, ["evaluate", str(bad), "--data", str(data)]), *needles)
    one_error(
        runner.invoke(app, ["predict", str(bad), "--data", str(data), "--out", str(tmp_path / "p.parquet")]),
        *needles,
    )


class _Payload:
    """Unpickling this runs code: it creates the file named in ``marker``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_pickled_objects_in_model_pt_are_refused_not_run(trained, tmp_path):
    import torch

    data, run = trained
    bad = _copy_run(run, tmp_path / "evil")
    blob = torch.load(bad / "model.pt", weights_only=True)
    marker = tmp_path / "pwned"
    torch.save({**blob, "extra": _Payload(str(marker))}, bad / "model.pt")
    one_error(
        runner.invoke(app, ["evaluate", str(bad), "--data", str(data)]),
        "model.pt",
        "holds pickled objects other than tensors and plain data",
    )
    assert not marker.exists()  # the payload never ran
    from adsformer.run.artifact import load_artifact

    assert load_artifact(run).config.task == "ctr"  # a run as train writes it loads with weights_only=True


def test_out_refuses_a_directory_it_did_not_write(ds_dir, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    one_error(
        train(ds_dir, mine), "mine: is not empty and was not written by adsformer (notes.txt)", "--overwrite"
    )
    res = train(ds_dir, mine, extra=("--overwrite",))
    assert res.exit_code == 0, res.output
    assert (mine / "notes.txt").read_text() == "keep" and (mine / "model.pt").exists()
    one_error(train(ds_dir, mine), "mine: holds files adsformer did not write (notes.txt)")
    run = tmp_path / "runs" / "r1"  # its own output: rewritten without --overwrite
    assert train(ds_dir, run).exit_code == 0
    assert train(ds_dir, run).exit_code == 0
    (tmp_path / "file").write_text("x")
    one_error(train(ds_dir, tmp_path / "file"), "exists and is not a directory")


def test_outputs_follow_the_umask(ds_dir, tmp_path):
    import os

    old = os.umask(0o022)
    try:
        assert train(ds_dir, tmp_path / "run").exit_code == 0
    finally:
        os.umask(old)
    assert (tmp_path / "run").stat().st_mode & 0o777 == 0o755
    for name in ("model.pt", "calibration.json", "train_summary.json", "vocab/vocab.json"):
        assert (tmp_path / "run" / name).stat().st_mode & 0o777 == 0o644, name


def test_internal_errors_are_one_line_too(ds_dir, tmp_path, monkeypatch):
    import adsformer.experiments.runs as runs

    def broken(*_a, **_k):
        raise KeyError("boom")

    monkeypatch.setattr(runs, "train_run", broken)
    line = one_error(train(ds_dir, tmp_path / "run"), "internal error (KeyError: 'boom')", "--debug", code=2)
    assert "report it" in line


def test_more_hostile_inputs_are_one_line(trained, tmp_path):
    import shutil

    data, run = trained
    one_error(runner.invoke(app, ["sequences", "--data", str(tmp_path / "nope")]), "nope: not a directory")
    one_error(runner.invoke(app, ["validate", str(data / "dataset.json")]), "is a file, not a directory")
    bad = tmp_path / "bad"
    shutil.copytree(run, bad)
    assert runner.invoke(app, ["evaluate", str(bad), "--data", str(data)]).exit_code == 0
    (bad / "metrics.json").write_text("{nope")
    one_error(
        runner.invoke(app, ["report", str(bad), "--out", str(tmp_path / "r.html")]),
        "metrics.json: not valid JSON",
    )
    one_error(
        runner.invoke(app, ["predict", str(run), "--data", str(data), "--out", str(tmp_path)]),
        "is a directory; choose a file path",
    )


def test_prepare_simulate_bad_scale(tmp_path):
    one_error(
        runner.invoke(app, ["prepare", "simulate", "--scale", "huge", "--out", str(tmp_path / "s")]),
        "--scale: unknown simulator scale 'huge'",
    )


def test_evaluate_defaults_to_the_runs_own_data(trained, tmp_path):
    """Without --data, evaluate scores the dataset the run recorded at training, says so, and gives the
    metrics that --data of the same directory gives; a run whose data is gone or unrecorded is one line."""
    import shutil

    data, run = trained
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["data_dir"] == str(data.resolve())
    mine = _copy_run(run, tmp_path / "run")
    res = runner.invoke(app, ["evaluate", str(mine)])
    assert res.exit_code == 0, res.output
    assert f"the test split of {data.resolve()} (the run's own data)" in flat(res.output)
    implicit = json.loads((mine / "metrics.json").read_text())
    assert implicit["data_dir"] == str(data.resolve())
    res = runner.invoke(app, ["evaluate", str(mine), "--data", str(data)])
    assert res.exit_code == 0, res.output
    explicit = json.loads((mine / "metrics.json").read_text())
    assert implicit["roc_auc"] == explicit["roc_auc"] and implicit["n_test"] == explicit["n_test"] > 0

    moved = _copy_run(run, tmp_path / "moved-run")
    summary["data_dir"] = str(tmp_path / "gone")
    (moved / "train_summary.json").write_text(json.dumps(summary))
    one_error(runner.invoke(app, ["evaluate", str(moved)]), "no longer there", "pass --data DIR")
    del summary["data_dir"]
    (moved / "train_summary.json").write_text(json.dumps(summary))
    one_error(runner.invoke(app, ["evaluate", str(moved)]), "does not record the data", "pass --data DIR")
    shutil.rmtree(moved)
    one_error(runner.invoke(app, ["evaluate", str(moved)]), "pass --data DIR")
