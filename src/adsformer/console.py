"""Terminal output shared by the commands: one rich console, timed stages, summary tables."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
#: Warnings go to stderr, so they stay visible when stdout is piped or parsed.
err_console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 120)


def warn(message: str) -> None:
    """One ``warning:`` line on stderr (not wrapped); silent where ``console`` is quiet (torchrun ranks > 0)."""
    if not console.quiet:
        err_console.print(f"[yellow]warning:[/] {escape(message)}", soft_wrap=True)


@contextlib.contextmanager
def stage(title: str) -> Iterator[None]:
    """Show a spinner while a stage runs, then one line with its wall time."""
    start = time.perf_counter()
    with console.status(f"[bold]{title}[/]...", spinner="dots"):
        yield
    console.print(f"[green]✓[/] {title} [dim]({time.perf_counter() - start:.1f} s)[/]")


def fmt(value: Any) -> str:
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


def records_table(title: str, records: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(title=title, title_justify="left")
    if not records:
        return table
    for i, key in enumerate(records[0]):
        if i == 0:  # the label column is never cut
            width = max(len(key), *(len(fmt(r[key])) for r in records))
            table.add_column(key, justify="left", no_wrap=True, min_width=width)
        else:
            table.add_column(key, justify="right")
    for rec in records:
        table.add_row(*(fmt(v) for v in rec.values()))
    return table
