"""What every public-dataset adapter shares: its result, its error, skipped-line reports, robust line reading
and the validated atomic write.

An adapter is a function ``prepare_<name>(path, out, *, <options>, progress=None) -> AdapterResult``. It
reads a public dataset, maps it onto the canonical dataset (:mod:`adsformer.data.schema`), writes it
atomically and returns what it wrote together with every input line it had to skip and why.

Bad *lines* (a truncated record, an unknown action word, ...) are skipped and reported as
:class:`SkippedLine`; bad *input as a whole* (missing file, missing column, nothing usable) raises
:class:`AdapterError`, whose message names the file, the line or row, the column and what was expected.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from adsformer.data.schema import Dataset, DatasetMeta, write_tables
from adsformer.errors import UserError
from adsformer.io import atomic_dir

#: Called with one short human-readable line per step ("reading UserBehavior.csv", ...).
Progress = Callable[[str], None]

#: Longest excerpt of a skipped line kept in a report.
MAX_TEXT = 200

#: How many skipped lines are quoted in ``dataset.json`` notes (all of them are in the result).
MAX_SKIPPED_IN_NOTES = 5


class AdapterError(UserError):
    """The input cannot be turned into a dataset; the message says where (file, line/row, column) and what
    was expected."""


@dataclass(frozen=True)
class SkippedLine:
    """One input record the adapter skipped.

    ``line`` is 1-based: the line number in a text file, or the data-row number in a Parquet file (the first
    row is 1). ``text`` is the record as found, cut to 200 characters.
    """

    file: str
    line: int
    reason: str
    text: str

    def __post_init__(self) -> None:
        text = self.text if self.text is not None else ""
        if len(text) > MAX_TEXT:
            text = text[: MAX_TEXT - 3] + "..."
        object.__setattr__(self, "text", text)

    def __str__(self) -> str:
        return f"{self.file}, line {self.line}: {self.reason}: {self.text!r}"


@dataclass(frozen=True)
class AdapterResult:
    """What an adapter produced: the dataset as written, where, what it skipped and what users must know."""

    dataset: Dataset
    out: Path
    skipped_lines: list[SkippedLine] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        """The dataset's headline counts plus the number of skipped input lines."""
        out = dict(self.dataset.summary())
        out["skipped_lines"] = len(self.skipped_lines)
        return out


def progress_or_noop(progress: Progress | None) -> Progress:
    return progress if progress is not None else (lambda _msg: None)


def _split_lines(raw: bytes) -> pl.Series:
    """The lines of ``raw`` as a Binary series (each with its trailing newline), split with numpy."""
    buf = np.frombuffer(raw, dtype=np.uint8)
    ends = np.flatnonzero(buf == 10) + 1
    if ends.size == 0 or ends[-1] != buf.size:  # last line without a newline
        ends = np.append(ends, buf.size)
    offsets = np.concatenate([[0], ends]).astype(np.int64)
    arr = pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), offsets.size - 1, [None, pa.py_buffer(offsets), pa.py_buffer(raw)]
    )
    return pl.Series("text", arr)


def read_lines(path: Path, *, encoding: str = "utf-8") -> pl.DataFrame:
    """Every line of a text file as a frame ``line_no`` (Int64, 1-based), ``text`` (String),
    ``bad_encoding`` (Boolean).

    Splitting happens on ``\\n`` over the raw bytes with numpy, so line numbers are exact (blank lines are
    kept, a final line without a newline is kept, a trailing ``\\r`` is removed). A line that is not valid
    ``encoding`` has ``bad_encoding = true`` and its undecodable bytes shown as U+FFFD (report it as
    skipped). Memory: a few times the file size.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise AdapterError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc
    empty = pl.DataFrame(schema={"line_no": pl.Int64, "text": pl.String, "bad_encoding": pl.Boolean})
    if not raw:
        return empty
    is_utf8 = encoding.lower().replace("-", "").replace("_", "") in ("utf8", "ascii")
    text: pl.Series | None = None
    bad: pl.Series | None = None
    if is_utf8:  # fast path: no decoded copy, polars checks UTF-8 while casting
        try:
            text = _split_lines(raw).cast(pl.String)
        except Exception:  # invalid UTF-8 somewhere: find the lines below
            text = None
    if text is None:
        try:
            decoded = raw.decode(encoding)
        except LookupError as exc:
            raise AdapterError(f"{path.name}: unknown text encoding {encoding!r}") from exc
        except UnicodeDecodeError as exc:
            decoded = raw.decode(encoding, errors="replace")
            # A line is bad when decoding introduced U+FFFD that the raw bytes did not already hold.
            raw_lines = _split_lines(raw)
            fixed = _split_lines(decoded.encode("utf-8")).cast(pl.String)
            if raw_lines.len() != fixed.len():  # pragma: no cover - a decoder that swallowed newlines
                raise AdapterError(f"{path.name}: not valid {encoding} text ({exc})") from exc
            bad = fixed.str.contains("\ufffd", literal=True) & ~raw_lines.bin.contains("\ufffd".encode())
        text = _split_lines(decoded.encode("utf-8")).cast(pl.String)
    n = text.len()
    frame = pl.DataFrame(
        {
            "line_no": np.arange(1, n + 1, dtype=np.int64),
            "text": text,
            "bad_encoding": bad if bad is not None else pl.Series("bad_encoding", np.zeros(n, dtype=bool)),
        }
    )
    # A byte-order mark at the very start is not part of the first record.
    stripped = pl.col("text").str.strip_chars_end("\r\n")
    first = pl.col("line_no") == 1
    return frame.with_columns(
        pl.when(first).then(stripped.str.strip_prefix("\ufeff")).otherwise(stripped).alias("text")
    )


def skipped_lines(
    frame: pl.DataFrame, file: str, *, line: str = "line_no", reason: str = "reason", text: str = "text"
) -> list[SkippedLine]:
    """Turn a frame of bad records (columns ``line``, ``reason``, ``text``) into :class:`SkippedLine` s."""
    return [
        SkippedLine(file=file, line=int(ln), reason=str(rs), text="" if tx is None else str(tx))
        for ln, rs, tx in frame.select(line, reason, text).sort(line).iter_rows()
    ]


def first_reason(checks: Iterable[tuple[pl.Expr, str | pl.Expr]]) -> pl.Expr:
    """A String expression: the message of the first failing check (``(bad_mask, message)`` pairs), else null."""
    expr: pl.Expr = pl.lit(None, dtype=pl.String)
    for bad, message in reversed(list(checks)):
        expr = pl.when(bad).then(pl.lit(message) if isinstance(message, str) else message).otherwise(expr)
    return expr


def skipped_notes(skipped: list[SkippedLine]) -> list[str]:
    """Notes for ``dataset.json`` summarising skipped lines (count and the first few)."""
    if not skipped:
        return []
    by_file: dict[str, int] = {}
    for s in skipped:
        by_file[s.file] = by_file.get(s.file, 0) + 1
    counts = ", ".join(f"{n} in {f}" for f, n in by_file.items())
    shown = "; ".join(str(s) for s in skipped[:MAX_SKIPPED_IN_NOTES])
    more = f" (and {len(skipped) - MAX_SKIPPED_IN_NOTES} more)" if len(skipped) > MAX_SKIPPED_IN_NOTES else ""
    return [f"{len(skipped)} malformed input record(s) were skipped ({counts}): {shown}{more}"]


def write_checked(ds: Dataset, out: Path, extra: Callable[[Path], None] | None = None) -> Path:
    """Write ``ds`` atomically and refuse to publish it if it breaks the data contract.

    Same as :func:`adsformer.data.schema.write_dataset` plus :func:`adsformer.data.validate.validate_dataset`
    on the temporary directory before it is renamed into place: a failure leaves ``out`` untouched.
    ``extra(tmp_dir)`` may add files (images) to the same write first.
    """
    from adsformer.data.validate import validate_dataset

    with atomic_dir(out) as tmp:
        write_tables(ds, tmp)
        if extra is not None:
            extra(tmp)
        report = validate_dataset(tmp)
        if not report.ok:
            lines = "\n".join(f"  {p}" for p in report.errors)
            raise AdapterError(
                f"the prepared dataset breaks the data contract (nothing written to {out}):\n{lines}"
            )
    return out


def publish(
    tables: tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame],
    meta: DatasetMeta,
    out: str | Path,
    say: Progress,
    skipped: list[SkippedLine],
    *,
    extra: Callable[[Path], None] | None = None,
    writing: str = "",
) -> AdapterResult:
    """The end of every adapter: the dataset of ``tables`` (listings, events, impressions) and its manifest
    ``meta``, written with :func:`write_checked` (``extra`` adds files to the same write) after a
    ``writing OUT`` line (plus ``writing``) to ``say``; returns it with ``skipped`` and ``meta.notes``."""
    listings, events, impressions = tables
    ds = Dataset(listings=listings, events=events, impressions=impressions, meta=meta)
    say(f"writing {out}{writing}")
    write_checked(ds, Path(out), extra)
    return AdapterResult(dataset=ds, out=Path(out), skipped_lines=skipped, notes=meta.notes)


def require_columns(file: str, present: Iterable[str], required: Iterable[str]) -> None:
    """Raise :class:`AdapterError` naming every required column missing from ``file``."""
    have = set(present)
    required = list(required)
    missing = [c for c in required if c not in have]
    if missing:
        raise AdapterError(
            f"{file}: missing column(s) {missing}; expected the columns {list(required)} (found {sorted(have)})"
        )
