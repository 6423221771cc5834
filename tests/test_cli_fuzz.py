"""A generated corpus of bad datasets and bad configs through the command line (issue 18).

Each dataset is the tiny hand-made one with one to three mutations drawn by hypothesis (values of the
wrong type or range, dropped or added columns and rows, times in milliseconds or far in the future,
corrupt, empty or missing files, manifests with keys of the wrong type). For every one:

* ``adsformer validate`` and ``adsformer train`` never end in a traceback: a clean exit whose every
  ``error:`` line names the file (and column or key) at fault;
* when ``validate`` passes, ``train`` (configs/ctr_test.yaml, one epoch) succeeds on the data.

Each config is a valid command line with one to three ``--set`` overrides of generated bad values: the
command fails before reading data, on one line naming the key.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from adsformer.cli import app
from adsformer.data.schema import write_dataset
from adsformer.run.config import ExperimentConfig
from tinydata import make_tiny_dataset

runner = CliRunner()
CONFIG = str(Path(__file__).parents[1] / "configs" / "ctr_test.yaml")
TABLES = ("listings", "events", "impressions")
FILES = (*(f"{t}.parquet" for t in TABLES), "dataset.json")
EXAMPLES = 120
#: What train may still refuse on data that validates: too few impressions for the configured split
SPLIT_LIMITS = ("too concentrated to cut into three time-ordered splits", "no training rows for task")
OUTCOMES: Counter[str] = Counter()
SEEN: set[str] = set()  # distinct generated inputs

COLUMNS = {
    "listings": ["listing_id", "shop_id", "taxonomy_id", "title", "tags", "price", "c_color"],
    "events": ["user_id", "ts", "action", "listing_id", "query"],
    "impressions": ["request_id", "user_id", "ts", "listing_id", "clicked", "position", "query", "purchased"],
}
BAD_VALUES = [
    None, -1, 0, 2, 7, 2**31, 2**40, 2**62, -(2**40), 1.5, math.nan, math.inf, -math.inf, 1e300, "", "x",
    "1700000000", True, "view", "l1",
]  # fmt: skip
MANIFEST_VALUES = [
    "view", 5, [1], [""], None, {}, "yes", 1, 1.5, True, 99, 0, [], "x", ["view", 3],
]  # fmt: skip
MANIFEST_KEYS = [
    "name",
    "source",
    "actions",
    "has_conversions",
    "notes",
    "protocol",
    "counts",
    "format_version",
]


def _arrow(values: list) -> pa.Array:
    try:
        return pa.array(values)
    except (pa.ArrowException, OverflowError, TypeError, ValueError):  # mixed types: their text
        return pa.array([None if v is None else str(v) for v in values])


def _rewrite_column(d: Path, table: str, column: str, fn) -> None:  # type: ignore[no-untyped-def]
    path = d / f"{table}.parquet"
    try:
        t = pq.read_table(path)
    except (pa.ArrowException, OSError):
        return
    if column not in t.column_names:
        return
    i = t.column_names.index(column)
    col = fn(t.column(i))
    t = t.remove_column(i) if col is None else t.set_column(i, column, col)
    pq.write_table(t, path)


@st.composite
def mutation(draw) -> tuple:  # type: ignore[no-untyped-def]
    kind = draw(
        st.sampled_from(
            [
                "values", "values", "values", "retype", "retype", "drop_column", "drop_rows", "add_column",
                "ts", "ts", "file", "manifest", "manifest", "duplicate_ids", "labels",
            ]
        )
    )  # fmt: skip
    table = draw(st.sampled_from(TABLES))
    column = draw(st.sampled_from(COLUMNS[table]))
    if kind == "values":
        rows = draw(st.lists(st.integers(0, 24), min_size=1, max_size=4, unique=True))
        return kind, table, column, draw(st.sampled_from(BAD_VALUES)), tuple(rows)
    if kind == "retype":
        return (
            kind,
            table,
            column,
            draw(st.sampled_from(["int64", "float64", "string", "bool_", "list", "uint8"])),
        )
    if kind == "drop_rows":
        return kind, table, draw(st.sampled_from([0, 1, 3])), draw(st.integers(0, 3))
    if kind == "add_column":
        return (
            kind,
            table,
            draw(st.sampled_from(["zzz", "f_x", "c_x", "ts", "tags"])),
            draw(st.sampled_from(BAD_VALUES)),
        )
    if kind == "ts":
        return (
            kind,
            draw(st.sampled_from(["events", "impressions"])),
            draw(st.sampled_from(["ms", "us", "ns", "2^62", "negative", "float", "2099", "1970"])),
        )
    if kind == "file":
        return (
            kind,
            draw(st.sampled_from(FILES)),
            draw(st.sampled_from(["empty", "junk", "truncated", "missing", "directory", "binary"])),
        )
    if kind == "manifest":
        return (
            kind,
            draw(st.sampled_from([*MANIFEST_KEYS, "<whole>"])),
            draw(st.integers(0, len(MANIFEST_VALUES) - 1)),
        )
    return kind, table, column


def apply(d: Path, m: tuple) -> None:
    kind = m[0]
    if kind == "values":
        _, table, column, value, rows = m

        def put(col: pa.ChunkedArray) -> pa.Array:
            values = col.to_pylist()
            for r in rows:
                if r < len(values):
                    values[r] = value
            return _arrow(values)

        _rewrite_column(d, table, column, put)
    elif kind == "retype":
        _, table, column, target = m

        def cast(col: pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
            if target == "list":
                return _arrow([[v] for v in col.to_pylist()])
            try:
                return col.cast(getattr(pa, target)(), safe=False)
            except (pa.ArrowException, NotImplementedError, TypeError, ValueError):
                return _arrow([None if v is None else str(v) for v in col.to_pylist()])

        _rewrite_column(d, table, column, cast)
    elif kind == "drop_column":
        _rewrite_column(d, m[1], m[2], lambda col: None)
    elif kind == "drop_rows":
        _, table, keep_every, offset = m
        path = d / f"{table}.parquet"
        with _Readable(path) as df:
            out = (
                df.head(0)
                if keep_every == 0
                else df.gather_every(keep_every + 1, offset=min(offset, keep_every))
            )
            out.write_parquet(path)
    elif kind == "add_column":
        _, table, name, value = m
        path = d / f"{table}.parquet"
        try:
            t = pq.read_table(path)
        except (pa.ArrowException, OSError):
            return
        t = t.append_column(name, _arrow([value] * t.num_rows))
        pq.write_table(t, path)
    elif kind == "ts":
        _, table, how = m
        exprs = {
            "ms": pl.col("ts") * 1000,
            "us": pl.col("ts") * 1_000_000,
            "ns": pl.col("ts") * 1_000_000_000,
            "2^62": pl.col("ts") + 2**62,
            "negative": -pl.col("ts"),
            "float": pl.col("ts").cast(pl.Float64) + 0.25,
            "2099": pl.col("ts") - pl.col("ts").min() + 4_070_000_000,
            "1970": pl.col("ts") - pl.col("ts").min(),
        }
        path = d / f"{table}.parquet"
        with _Readable(path) as df:
            if "ts" in df.columns and df.schema["ts"].is_integer():
                df.with_columns(exprs[how].alias("ts")).write_parquet(path)
    elif kind == "file":
        _, name, how = m
        path = d / name
        if path.is_dir():
            shutil.rmtree(path)
        data = path.read_bytes() if path.is_file() else b""
        if how == "missing":
            path.unlink(missing_ok=True)
        elif how == "directory":
            path.unlink(missing_ok=True)
            path.mkdir()
        else:
            path.write_bytes(
                {
                    "empty": b"",
                    "junk": b"PAR1 not parquet",
                    "truncated": data[: len(data) // 2],
                    "binary": b"\xff\xfe\x00",
                }[how]
            )
    elif kind == "manifest":
        _, key, i = m
        path = d / "dataset.json"
        try:
            obj = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        value = MANIFEST_VALUES[i]
        if key == "<whole>":
            path.write_text(json.dumps(value))
        elif isinstance(obj, dict):
            path.write_text(json.dumps({**obj, key: value}))
    elif kind == "duplicate_ids":
        path = d / "listings.parquet"
        with _Readable(path) as df:
            if df.height and "listing_id" in df.columns:
                pl.concat([df, df.head(1)], how="vertical_relaxed").write_parquet(path)
    elif kind == "labels":
        _, table, _column = m
        path = d / "impressions.parquet"
        with _Readable(path) as df:
            if {"clicked", "purchased"} <= set(df.columns) and df.schema["clicked"].is_integer():
                df.with_columns(
                    pl.lit(0, pl.Int8).alias("clicked"), pl.lit(1, pl.Int8).alias("purchased")
                ).write_parquet(path)


class _Readable:
    """``with _Readable(path) as df``: the Parquet file as polars, or skip the block when unreadable."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> pl.DataFrame:
        try:
            return pl.read_parquet(self.path)
        except Exception:  # an earlier mutation broke the file: nothing to mutate
            return pl.DataFrame({"__unreadable": []})

    def __exit__(self, *exc: object) -> bool:
        return False


def assert_clean(res, what: str) -> list[str]:  # type: ignore[no-untyped-def]
    """No traceback; a clean exit; every ``error:`` line short of a newline; returns the error lines."""
    assert res.exception is None or isinstance(res.exception, SystemExit), (
        what,
        repr(res.exception),
        res.output,
    )
    assert "Traceback" not in res.output and "internal error" not in res.output, (what, res.output)
    assert res.exit_code in (0, 1), (what, res.exit_code, res.output)
    return [line for line in res.output.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def base_dataset(tmp_path_factory) -> Path:
    return write_dataset(make_tiny_dataset(), tmp_path_factory.mktemp("fuzz") / "ds")


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=(Phase.explicit, Phase.generate),  # no shrinking: each example runs the CLI (slow to shrink)
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(mutations=st.lists(mutation(), min_size=1, max_size=3))
def test_generated_bad_datasets(base_dataset, mutations):
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "ds"
        shutil.copytree(base_dataset, d)
        SEEN.add(repr(mutations))
        for m in mutations:
            apply(d, m)
        res = runner.invoke(app, ["validate", str(d)])
        errors = assert_clean(res, f"validate {mutations}")
        for line in errors:
            assert any(f in line for f in FILES), (mutations, line)
        trained = runner.invoke(
            app,
            [
                "train",
                "--data",
                str(d),
                "--out",
                str(Path(tmp) / "run"),
                "--config",
                CONFIG,
                "--set",
                "epochs=1",
            ],
        )
        train_errors = assert_clean(trained, f"train {mutations}")
        if res.exit_code == 0:
            OUTCOMES["valid"] += 1
            # validate passing: train works, unless the data is too small for the config's split (a clean,
            # one-line error saying what to change: validate cannot know the split a config will ask for)
            if trained.exit_code != 0:
                (line,) = train_errors
                assert any(s in line for s in SPLIT_LIMITS), (mutations, line)
                OUTCOMES["valid_but_too_small_to_split"] += 1
        else:
            OUTCOMES["invalid"] += 1
            assert trained.exit_code == 1 and len(train_errors) == 1, (mutations, trained.output)
            assert any(f in train_errors[0] for f in FILES), (mutations, train_errors[0])


SET_KEYS = [
    "window_s", "max_len", "neg_keep_rate", "listing_top_k", "num_oov", "split_mode", "test_days", "val_days",
    "end_days_ago", "batch_size", "lr", "epochs", "patience", "monitor", "seed", "threads", "heads", "blocks",
    "pooling", "encoder_pair", "deep", "cross_layers", "ece_bins", "bootstrap", "model", "pairs",
    "model.ranker.dropout", "model.adpm.encoder.dim", "model.adpm.encoder.head_dim", "model.bst.k",
    "model.lastk.dim", "model.ranker.embedding_std", "model.adpm.learned.pooling", "train.weight_decay",
    "train.min_lr_ratio", "train.device", "data.split.val_fraction", "data.vocab.shop_top_k",
    "model.ranker.cross_rank",
]  # fmt: skip
SET_BAD = [
    "-1",
    "-10",
    "nan",
    ".nan",
    ".inf",
    "-.inf",
    "1e30",
    "abc",
    "[a",
    "[1, -2]",
    "{}",
    "-0.5",
    "2.5",
    "99999999",
]


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=(Phase.explicit, Phase.generate),
)
@given(sets=st.lists(st.tuples(st.sampled_from(SET_KEYS), st.sampled_from(SET_BAD)), min_size=1, max_size=3))
def test_generated_bad_configs(sets):
    """Bad ``--set`` values are refused when the config is built, naming the key: the command never gets to
    the data (an empty events table, which would fail next with its own one-line error)."""
    with tempfile.TemporaryDirectory() as tmp:
        ds = make_tiny_dataset()
        ds.events = ds.events.head(0)
        d = write_dataset(ds, Path(tmp) / "ds")
        args = ["train", "--data", str(d), "--out", str(Path(tmp) / "run"), "--config", CONFIG]
        SEEN.add(repr(sets))
        for key, value in sets:
            args += ["--set", f"{key}={value}"]
        res = runner.invoke(app, args)
        (line,) = assert_clean(res, f"train {sets}")
        assert res.exit_code == 1
        if "events.parquet" in line:  # every override happened to be valid for its key
            OUTCOMES["config_valid"] += 1
            return
        OUTCOMES["config_refused"] += 1
        named = [k for k, _ in sets if ExperimentConfig.SHORT_KEYS.get(k, k) in line or f"'{k}" in line]
        assert named, (sets, line)


def test_corpus_size():
    """At least 100 distinct generated datasets and 100 generated configs ran (where this process ran the
    generated tests: under pytest-xdist they may have run in another worker)."""
    datasets = OUTCOMES["valid"] + OUTCOMES["invalid"]
    configs = OUTCOMES["config_valid"] + OUTCOMES["config_refused"]
    if not datasets and not configs:
        pytest.skip("the generated tests ran in another process")
    if datasets:
        assert datasets >= 100 and OUTCOMES["invalid"] >= 60 and OUTCOMES["valid"] >= 5, OUTCOMES
    if configs:
        assert configs >= 100 and OUTCOMES["config_refused"] >= 80, OUTCOMES
    assert len(SEEN) >= 100 * (bool(datasets) + bool(configs)) - 10, len(SEEN)
