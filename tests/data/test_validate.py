"""Every bad input gets a clear error naming file, column, rows and what was expected."""

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from adsformer.data.schema import read_dataset, write_dataset
from adsformer.data.validate import DatasetError, validate_dataset


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
    t = t.set_column(t.schema.get_field_index("user_id"), "user_id", pa.array(range(t.num_rows)))
    _rewrite(ds_dir / "events.parquet", t)
    errs = _errors(ds_dir)
    assert errs == ["error: events.parquet, column 'user_id': expected type string, found int64"]


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
