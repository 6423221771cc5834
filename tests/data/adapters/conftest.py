"""Fixtures for the public-dataset adapter tests: the shared real data (skipped when absent) and helpers."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from adsformer.data.validate import validate_dataset


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The ``shared/data`` folder beside the repository root, or ``$ADSFORMER_SHARED_DATA``; skip if absent."""
    env = os.environ.get("ADSFORMER_SHARED_DATA")
    root = Path(env) if env else Path(__file__).resolve().parents[3].parent / "shared" / "data"
    if not root.is_dir():
        pytest.skip(f"shared data not found at {root} (set ADSFORMER_SHARED_DATA)")
    return root


@pytest.fixture
def write_text() -> Callable[..., Path]:
    """Write ``lines`` joined by newlines (``final_newline`` controls the last one) in ``encoding``."""

    def write(path: Path, lines: list[str], *, final_newline: bool = True, encoding: str = "utf-8") -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        text = "\n".join(lines) + ("\n" if final_newline and lines else "")
        path.write_bytes(text.encode(encoding))
        return path

    return write


@pytest.fixture
def assert_valid() -> Callable[[Path], None]:
    """Assert ``validate_dataset(out).ok`` and that no temporary directory was left beside ``out``."""

    def check(out: Path) -> None:
        report = validate_dataset(out)
        assert report.ok, "\n".join(str(p) for p in report.errors)
        assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]

    return check


@pytest.fixture
def assert_requests_well_formed() -> Callable[[pl.DataFrame], None]:
    """Each request: one user and ts, exactly one click, distinct listings, positions a permutation 1..n."""

    def check(imp: pl.DataFrame) -> None:
        per = imp.group_by("request_id").agg(
            pl.col("user_id").n_unique().alias("users"),
            pl.col("ts").n_unique().alias("times"),
            pl.col("clicked").sum().alias("clicks"),
            pl.col("listing_id").n_unique().alias("distinct"),
            pl.len().alias("n"),
            pl.col("position").sort().alias("positions"),
        )
        assert (per["users"] == 1).all() and (per["times"] == 1).all()
        assert (per["clicks"] == 1).all()
        assert (per["distinct"] == per["n"]).all()
        expected = per.select(pl.int_ranges(1, pl.col("n") + 1, dtype=pl.Int32).alias("e"))["e"]
        assert per["positions"].cast(pl.List(pl.Int32)).to_list() == expected.to_list()

    return check
