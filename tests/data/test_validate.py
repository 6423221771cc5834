"""Every bad input gets a clear error naming file, column, rows and what was expected."""

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from adsformer.data.schema import write_dataset
from adsformer.data.validate import DatasetError, read_dataset, validate_dataset


@pytest.fixture
def ds_dir(tmp_path, tiny_dataset):
    return write_dataset(tiny_dataset, tmp_path / "ds")


def _rewrite(path, table: pa.Table):
    pq.write_table(table, path)


def _errors(directory):
    return [str(p) for p in validate_dataset(directory).errors]


def test_clean_dataset_is_ok_and_round_trips(ds_dir, tiny_dataset):
    report = validate_dataset(ds_dir)
    assert report.ok, report.problems
    back = read_dataset(ds_dir)
    assert back.impressions.equals(tiny_dataset.impressions)
    assert back.listings["tags"].to_list() == tiny_dataset.listings["tags"].to_list()
    assert back.meta.counts["impressions"] == 25


def test_missing_required_column(ds_dir):
    t = pq.read_table(ds_dir / "impressions.parquet").drop(["clicked"])
    _rewrite(ds_dir / "impressions.parquet", t)
    assert _errors(ds_dir) == [
        "error: impressions.parquet, column 'clicked': required column is missing (expected int8)"
    ]


def test_wrong_type(ds_dir):
    t = pq.read_table(ds_dir / "events.parquet")
    t = t.set_column(t.schema.get_field_index("user_id"), "user_id", pa.array([True] * t.num_rows))
    _rewrite(ds_dir / "events.parquet", t)
    errs = _errors(ds_dir)
    assert errs == [
        "error: events.parquet, column 'user_id': expected type string (integer ids are fine too), found bool"
    ]


def test_integer_ids_read_as_their_decimal_text(ds_dir):
    """The commonest real id type: integer listing / user ids validate and load as their decimal text."""
    for table in ("listings", "events", "impressions"):
        df = pl.read_parquet(ds_dir / f"{table}.parquet")
        df.with_columns(pl.col("listing_id").str.slice(1).cast(pl.Int64)).write_parquet(
            ds_dir / f"{table}.parquet"
        )
    t = pq.read_table(ds_dir / "events.parquet")
    users = pa.array([int(u[1:]) for u in t.column("user_id").to_pylist()], pa.uint32())
    _rewrite(ds_dir / "events.parquet", t.set_column(t.schema.get_field_index("user_id"), "user_id", users))
    assert validate_dataset(ds_dir).ok, _errors(ds_dir)
    ds = read_dataset(ds_dir)
    assert ds.listings["listing_id"].to_list() == ["1", "2", "3", "4"]
    assert ds.events["user_id"].dtype == pl.String and set(ds.events["user_id"]) == {"1", "2"}


def test_float_ids_are_named(ds_dir):
    df = pl.read_parquet(ds_dir / "listings.parquet")
    df.with_columns(pl.col("listing_id").str.slice(1).cast(pl.Float64)).write_parquet(
        ds_dir / "listings.parquet"
    )
    errs = _errors(ds_dir)
    assert errs[0].startswith(
        "error: listings.parquet, column 'listing_id': ids are floating-point numbers (double)"
    ), errs


def test_unknown_action_names_rows(ds_dir):
    df = pl.read_parquet(ds_dir / "events.parquet")
    df = df.with_columns(
        pl.when(pl.int_range(pl.len()) == 3)
        .then(pl.lit("teleport"))
        .otherwise(pl.col("action"))
        .alias("action")
    )
    df.write_parquet(ds_dir / "events.parquet")
    (err,) = _errors(ds_dir)
    assert err.startswith(
        "error: events.parquet, column 'action', row 3: unknown action ['teleport']; expected one of"
    )


def test_null_id_and_negative_ts(ds_dir):
    df = pl.read_parquet(ds_dir / "impressions.parquet")
    df = df.with_columns(
        pl.when(pl.int_range(pl.len()).is_in([2, 7]))
        .then(None)
        .otherwise(pl.col("user_id"))
        .alias("user_id"),
        pl.when(pl.int_range(pl.len()) == 4).then(-5).otherwise(pl.col("ts")).alias("ts"),
    )
    df.write_parquet(ds_dir / "impressions.parquet")
    errs = _errors(ds_dir)
    assert (
        "error: impressions.parquet, column 'user_id', rows 2, 7: null value in a required id/time column"
        in errs
    )
    assert (
        "error: impressions.parquet, column 'ts', row 4: expected Unix seconds >= 0, found a negative value"
        in errs
    )


def test_non_integer_ts(ds_dir):
    df = pl.read_parquet(ds_dir / "events.parquet").with_columns(pl.col("ts").cast(pl.Float64))
    df = df.with_columns(
        pl.when(pl.int_range(pl.len()) == 1).then(pl.col("ts") + 0.5).otherwise(pl.col("ts")).alias("ts")
    )
    df.write_parquet(ds_dir / "events.parquet")
    (err,) = _errors(ds_dir)
    assert err == (
        "error: events.parquet, column 'ts', row 1: expected integer type (int64), found double; "
        "1 row(s) are not whole numbers, e.g. rows [1]"
    )


def test_empty_and_corrupt_files(ds_dir):
    (ds_dir / "listings.parquet").write_bytes(b"")
    (ds_dir / "events.parquet").write_bytes(b"PAR1 this is not parquet")
    errs = _errors(ds_dir)
    assert "error: listings.parquet: file is empty (0 bytes); expected a Parquet file" in errs
    assert any(e.startswith("error: events.parquet: not a readable Parquet file") for e in errs)


def test_missing_file_and_referential_integrity(ds_dir):
    (ds_dir / "events.parquet").unlink()
    df = pl.read_parquet(ds_dir / "impressions.parquet")
    df.with_columns(
        pl.when(pl.int_range(pl.len()) == 0)
        .then(pl.lit("ghost"))
        .otherwise(pl.col("listing_id"))
        .alias("listing_id")
    ).write_parquet(ds_dir / "impressions.parquet")
    errs = _errors(ds_dir)
    assert "error: events.parquet: file is missing" in errs
    assert (
        "error: impressions.parquet, column 'listing_id', row 0: listing_id not found in listings.parquet"
        in errs
    )


def test_label_rules(ds_dir):
    df = pl.read_parquet(ds_dir / "impressions.parquet")
    df = df.with_columns(
        pl.when(pl.int_range(pl.len()) == 1)
        .then(2)
        .otherwise(pl.col("clicked"))
        .cast(pl.Int8)
        .alias("clicked"),
        pl.when(pl.int_range(pl.len()) == 3)
        .then(1)
        .otherwise(pl.col("purchased"))
        .cast(pl.Int8)
        .alias("purchased"),
    )
    df.write_parquet(ds_dir / "impressions.parquet")
    errs = _errors(ds_dir)
    assert "error: impressions.parquet, column 'clicked', row 1: expected 0 or 1" in errs
    assert any(
        "column 'purchased', row 3: purchased = 1 on an impression that was not clicked" in e for e in errs
    )


def test_read_dataset_raises_with_every_problem(ds_dir):
    (ds_dir / "listings.parquet").write_bytes(b"")
    (ds_dir / "events.parquet").unlink()
    with pytest.raises(DatasetError) as info:
        read_dataset(ds_dir)
    msg = str(info.value)
    assert "listings.parquet: file is empty" in msg and "events.parquet: file is missing" in msg


def test_failed_write_leaves_nothing(tmp_path, tiny_dataset):
    bad = tiny_dataset
    bad.impressions = bad.impressions.with_columns(pl.lit("x").alias("not_in_contract"))
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="not_in_contract"):
        write_dataset(bad, out)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary leftovers either


def test_failed_rewrite_keeps_previous_version(ds_dir, tiny_dataset):
    before = sorted(p.name for p in ds_dir.iterdir())
    tiny_dataset.events = tiny_dataset.events.with_columns(pl.lit(1).alias("bogus"))
    with pytest.raises(ValueError):
        write_dataset(tiny_dataset, ds_dir)
    assert sorted(p.name for p in ds_dir.iterdir()) == before
    assert validate_dataset(ds_dir).ok


# -- issue 18: what used to pass validation and then crash training, or crash the validator ---------------
def _with_ts(ds_dir, table, expr):
    pl.read_parquet(ds_dir / f"{table}.parquet").with_columns(expr.alias("ts")).write_parquet(
        ds_dir / f"{table}.parquet"
    )


def test_milliseconds_are_named(ds_dir):
    _with_ts(ds_dir, "events", pl.col("ts") * 1000)
    (err,) = _errors(ds_dir)
    assert err.startswith("error: events.parquet, column 'ts', rows 0, 1, 2, 3, 4 ... (25 rows): times look")
    assert "Unix milliseconds (largest 1700345630000); expected Unix seconds: divide by 1,000" in err


def test_far_future_ts_is_an_error(ds_dir):
    _with_ts(ds_dir, "impressions", pl.col("ts") + 2**62)
    (err,) = _errors(ds_dir)
    assert "column 'ts'" in err and "expected Unix seconds before 2100-01-01 (< 4102444800)" in err


def test_empty_events_and_no_listing_events(ds_dir):
    events = pl.read_parquet(ds_dir / "events.parquet")
    events.head(0).write_parquet(ds_dir / "events.parquet")
    assert _errors(ds_dir) == [
        "error: events.parquet: table has no rows; the sequence models read the users' actions: add events"
    ]
    events.with_columns(pl.lit(None, pl.String).alias("listing_id")).write_parquet(ds_dir / "events.parquet")
    (err,) = _errors(ds_dir)
    assert err.startswith("error: events.parquet, column 'listing_id': no event names a listing")


@pytest.mark.parametrize(
    "manifest, expected",
    [
        (
            {"actions": "view"},
            "key 'actions': expected a list of action words, e.g. [\"view\"], found the string",
        ),
        ({"actions": [1]}, "key 'actions': expected a list of non-empty action words, found [1]"),
        ({"has_conversions": "no"}, "key 'has_conversions': expected true or false, found 'no'"),
        ({"protocol": []}, "key 'protocol': expected a JSON object, found []"),
        ({"format_version": 99}, "key 'format_version': is 99, newer than this adsformer reads (1)"),
        (["not", "an", "object"], "dataset.json: expected a JSON object at the top level, found list"),
    ],
)
def test_manifest_types(ds_dir, manifest, expected):
    import json

    if isinstance(manifest, dict):
        manifest = {**json.loads((ds_dir / "dataset.json").read_text()), **manifest}
    (ds_dir / "dataset.json").write_text(json.dumps(manifest))
    (err,) = _errors(ds_dir)
    assert expected in err, err
    with pytest.raises(DatasetError):
        read_dataset(ds_dir)


def test_values_must_fit_their_type_and_be_finite(ds_dir):
    t = pq.read_table(ds_dir / "impressions.parquet")
    pos = t.column("position").to_pylist()
    pos[2] = 2**40
    t = t.set_column(t.schema.get_field_index("position"), "position", pa.array(pos, pa.int64()))
    _rewrite(ds_dir / "impressions.parquet", t)
    df = pl.read_parquet(ds_dir / "listings.parquet")
    df.with_columns(pl.Series("price", [1.0, float("nan"), float("inf"), 2.0])).write_parquet(
        ds_dir / "listings.parquet"
    )
    errs = _errors(ds_dir)
    assert (
        "error: impressions.parquet, column 'position', row 2: value out of range for int32 "
        "(-2147483648 .. 2147483647)" in errs
    )
    assert (
        "error: listings.parquet, column 'price', rows 1, 2: expected a finite number with |x| <= 1e+15"
        in errs
    )


def test_boolean_labels_read_as_0_1(ds_dir):
    df = pl.read_parquet(ds_dir / "impressions.parquet")
    df.with_columns(pl.col("clicked").cast(pl.Boolean), pl.col("purchased").cast(pl.Boolean)).write_parquet(
        ds_dir / "impressions.parquet"
    )
    assert validate_dataset(ds_dir).ok, _errors(ds_dir)
    assert read_dataset(ds_dir).impressions["clicked"].dtype == pl.Int8


def test_dataset_error_is_one_line_for_the_cli(ds_dir):
    (ds_dir / "listings.parquet").write_bytes(b"")
    (ds_dir / "events.parquet").unlink()
    with pytest.raises(DatasetError) as info:
        read_dataset(ds_dir)
    line = info.value.one_line()
    assert "\n" not in line and "2 problems with the dataset, first" in line
    assert "listings.parquet: file is empty" in line and f"adsformer validate {ds_dir}" in line
