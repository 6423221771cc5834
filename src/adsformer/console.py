"""Terminal output shared by the commands: results on stdout, progress and warnings on stderr.

Results (tables, the paths written) go to :data:`console` (stdout), so they can be piped or parsed. Progress
goes to :data:`err_console` (stderr): on a terminal a rich progress bar or spinner; elsewhere (``nohup``, CI,
a scheduler) plain timestamped lines, at least one every :data:`PLAIN_EVERY_S` seconds while work runs, and
one per milestone (an epoch, a finished stage). :func:`recording` collects the same timestamped lines, which
the commands keep beside their results as ``run.log`` (:func:`save_log`).
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console, ConsoleOptions, RenderResult
from rich.markup import escape
from rich.progress import Progress, ProgressColumn, TaskID
from rich.table import Table

console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
#: Progress and warnings go to stderr, so they stay visible when stdout is piped or parsed.
err_console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 120)

#: Away from a terminal, a running step prints a progress line at least this often (seconds)
PLAIN_EVERY_S = 10.0
#: The run log's file name in a run directory
RUN_LOG = "run.log"

_RECORDINGS: list[list[str]] = []
_LOCK = threading.Lock()
#: Live displays (spinner, bar) of ours running now: a nested step prints lines instead of a second display
_LIVE = [0]


def timestamp() -> str:
    """The local time of a progress line: ``YYYY-MM-DD HH:MM:SS``."""
    return time.strftime("%Y-%m-%d %H:%M:%S")


def interactive() -> bool:
    """True when progress goes to a terminal (a live bar or spinner instead of plain lines)."""
    return err_console.is_terminal


@contextlib.contextmanager
def _live() -> Iterator[bool]:
    """Whether the block may show a live display (on a terminal, none of ours already running)."""
    allowed = interactive() and _LIVE[0] == 0
    _LIVE[0] += 1
    try:
        yield allowed
    finally:
        _LIVE[0] -= 1


def _silent() -> bool:
    """Nothing is printed where the console is quiet (torchrun ranks > 0)."""
    return console.quiet


def _record(line: str) -> None:
    with _LOCK:
        for lines in _RECORDINGS:
            lines.append(line)


def log(message: str, *, show: bool = True) -> None:
    """One timestamped progress line: on stderr (unless ``show`` is False) and in every open recording."""
    if _silent():
        return
    line = f"{timestamp()} {message}"
    _record(line)
    if show:
        err_console.print(escape(line), soft_wrap=True, highlight=False)


def warn(message: str) -> None:
    """One ``warning:`` line on stderr (not wrapped) and in the run log; silent where ``console`` is quiet."""
    if _silent():
        return
    _record(f"{timestamp()} warning: {message}")
    err_console.print(f"[yellow]warning:[/] {escape(message)}", soft_wrap=True)


@contextlib.contextmanager
def recording() -> Iterator[list[str]]:
    """Collect the timestamped progress lines (and warnings) printed within the block into a list."""
    lines: list[str] = []
    with _LOCK:
        _RECORDINGS.append(lines)
    try:
        yield lines
    finally:
        with _LOCK:
            _RECORDINGS.remove(lines)


def log_text(lines: Sequence[str]) -> str:
    """Recorded lines as the text of a log file (one line each)."""
    return "".join(f"{line}\n" for line in lines)


def save_log(directory: str | Path, lines: Sequence[str]) -> Path:
    """Append ``lines`` to ``directory/run.log`` (the file is rewritten atomically); returns its path."""
    from adsformer.io import atomic_file

    path = Path(directory) / RUN_LOG
    before = path.read_text() if path.is_file() else ""
    with atomic_file(path) as tmp:
        tmp.write_text(before + log_text(lines))
    return path


def _heartbeat(title: str, start: float, stop: threading.Event, quiet: bool) -> None:
    while not stop.wait(PLAIN_EVERY_S):
        log(f"{title}: still running ({time.perf_counter() - start:.0f} s)", show=not quiet)


@contextlib.contextmanager
def stage(title: str) -> Iterator[None]:
    """A step of unknown length: a spinner on a terminal, else a start line and a line every
    :data:`PLAIN_EVERY_S` seconds; then one line with its wall time (all on stderr). Within another
    step on a terminal, its lines only go to the recordings (the outer spinner shows it runs)."""
    start = time.perf_counter()
    if _silent():
        yield
        return
    with _live() as live:
        nested = interactive() and not live
        if live:
            _record(f"{timestamp()} {title}...")
            with err_console.status(f"[bold]{escape(title)}[/]...", spinner="dots"):
                yield
        else:
            log(f"{title}...", show=not nested)
            stop = threading.Event()
            beat = threading.Thread(target=_heartbeat, args=(title, start, stop, nested), daemon=True)
            beat.start()
            try:
                yield
            finally:
                stop.set()
                beat.join()
    log(f"✓ {title} ({time.perf_counter() - start:.1f} s)", show=not nested)


class StageTimes:
    """Wall times of a job's named stages, in seconds, in the order they first ran; ``total`` is the time
    since the job began (the object's creation).

    ``with times.stage("lexical_s"): ...`` adds the block's wall time to ``lexical_s`` (a stage run twice
    adds up); :meth:`rounded` is what a job writes beside its results (``{"lexical_s": 1.25, ...}``).
    """

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the block as stage ``name`` (recorded when the block ends without an error)."""
        start = time.perf_counter()
        yield
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def total(self, name: str = "total_s") -> None:
        """Record the time since the job began as stage ``name``."""
        self.seconds[name] = time.perf_counter() - self.started

    def rounded(self, digits: int) -> dict[str, float]:
        """Every stage's seconds rounded to ``digits`` decimals, in the stages' order."""
        return {name: round(seconds, digits) for name, seconds in self.seconds.items()}


def _clock(seconds: float) -> str:
    """``H:MM:SS``."""
    whole = round(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


class ProgressBar:
    """A drop-in for :class:`rich.progress.Progress` (``add_task``, ``update``, ``advance``, as a context
    manager): the rich bar on a terminal, plain timestamped lines elsewhere (every :data:`PLAIN_EVERY_S`
    seconds, and when a task completes). The plain lines also go to the open recordings on a terminal."""

    def __init__(self, *columns: ProgressColumn | str, disable: bool = False, transient: bool = False):
        self.disabled = disable or _silent()
        self._columns, self._transient = columns, transient
        self.plain = True
        self._bar: Progress | None = None
        self._live = contextlib.ExitStack()
        self._tasks: dict[int, dict[str, Any]] = {}
        self._last = time.perf_counter()

    def __enter__(self) -> ProgressBar:
        if not self.disabled and self._live.enter_context(_live()):
            self.plain = False
            self._bar = Progress(*self._columns, console=err_console, transient=self._transient)
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
        self._live.close()

    def add_task(self, description: str, total: float | None = None, **fields: Any) -> TaskID:
        """Start a task (``completed`` 0 of ``total``); ``fields`` show beside it (e.g. ``loss``)."""
        task = TaskID(len(self._tasks))
        now = time.perf_counter()
        self._tasks[task] = {"description": description, "total": total, "completed": 0.0, "start": now}
        self._tasks[task]["fields"] = dict(fields)
        if self._bar is not None:
            self._bar.add_task(description, total=total, **fields)
        return task

    def advance(self, task: TaskID, advance: float = 1) -> None:
        self.update(task, advance=advance)

    def update(
        self,
        task: TaskID,
        *,
        total: float | None = None,
        completed: float | None = None,
        advance: float | None = None,
        description: str | None = None,
        **fields: Any,
    ) -> None:
        """Like :meth:`rich.progress.Progress.update`."""
        if self.disabled:
            return
        state = self._tasks[task]
        if total is not None:
            state["total"] = total
        if completed is not None:
            state["completed"] = float(completed)
        if advance is not None:
            state["completed"] += advance
        if description is not None:
            state["description"] = description
        state["fields"].update(fields)
        if self._bar is not None:
            self._bar.update(
                task, total=total, completed=completed, advance=advance, description=description, **fields
            )
        done = state["total"] is not None and state["completed"] >= state["total"]
        now = time.perf_counter()
        if done and not state.get("finished"):
            state["finished"] = True
            self._line(state, now)
        elif now - self._last >= PLAIN_EVERY_S:
            self._line(state, now)

    def _line(self, state: dict[str, Any], now: float) -> None:
        self._last = now
        log(self.describe(state, now), show=self.plain)

    @staticmethod
    def describe(state: dict[str, Any], now: float) -> str:
        """The plain line of a task: ``description: done/total (pct%), fields, elapsed, time left``."""
        done, total = state["completed"], state["total"]
        elapsed = now - state["start"]
        parts = [
            f"{done:,.0f}/{total:,.0f} ({100 * done / max(total, 1e-9):.0f}%)" if total else f"{done:,.0f}"
        ]
        for key, value in state["fields"].items():
            if isinstance(value, float):
                parts.append(f"{key} {value:.4f}")
            elif isinstance(value, str) and value:
                parts.append(value)
        parts.append(f"{_clock(elapsed)} elapsed")
        if total and 0 < done < total:
            parts.append(f"~{_clock(elapsed * (total - done) / done)} left")
        return f"{state['description']}: {', '.join(parts)}"


def fmt(value: Any) -> str:
    """A value as a table cell: booleans as yes / no, floats to 4 decimals (or 2 with thousands), ints
    with thousands separators."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1 else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def kv_table(title: str, rows: Mapping[str, Any]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("key", style="bold")
    table.add_column("value", justify="right")
    for key, value in rows.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={fmt(v)}" for k, v in value.items())
        table.add_row(key, fmt(value))
    return table


class RecordsTable:
    """Records as one table, one row each, nothing cut (the label column and every value keep their width;
    a header wraps at its spaces rather than ending in an ellipsis); where even that is wider than the
    console, one key-value table per record instead."""

    def __init__(self, title: str, records: Sequence[Mapping[str, Any]]):
        self.title, self.records = title, list(records)

    def table(self) -> Table:
        table = Table(title=self.title, title_justify="left")
        if not self.records:
            return table
        for i, key in enumerate(self.records[0]):
            value_width = max(len(fmt(r[key])) for r in self.records)
            if i == 0:  # the label column is never cut
                table.add_column(key, justify="left", no_wrap=True, min_width=max(len(key), value_width))
            else:
                word = max((len(w) for w in str(key).split()), default=0)
                table.add_column(key, justify="right", overflow="fold", min_width=max(word, value_width))
        for rec in self.records:
            table.add_row(*(fmt(v) for v in rec.values()))
        return table

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        table = self.table()
        # each column at its least width, its padding (1 + 1) and the rules between and around columns
        needed = sum((c.min_width or 0) + 3 for c in table.columns) + 1
        if needed <= options.max_width:
            yield table
            return
        for i, rec in enumerate(self.records):
            yield kv_table(f"{self.title} ({i + 1} of {len(self.records)})", rec)


def records_table(title: str, records: Sequence[Mapping[str, Any]]) -> RecordsTable:
    """:class:`RecordsTable` of ``records`` (print it with ``console.print``)."""
    return RecordsTable(title, records)
