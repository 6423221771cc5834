"""What every command shares: the common options, one-line errors and the ``--out`` check.

An error that escapes a command is printed as the one line :func:`adsformer.errors.error_line` words it,
with its exit code; ``--debug`` (:func:`set_debug`) raises it with its traceback instead.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.markup import escape

from adsformer import console
from adsformer.config import DataConfig, load_config, preset_names
from adsformer.console import err_console, log
from adsformer.errors import error_line
from adsformer.extras import Extra, missing_extra, require

if TYPE_CHECKING:
    from adsformer.experiments.tracking import Backend
    from adsformer.run.config import ExperimentConfig

OutDir = Annotated[Path, typer.Option("--out", "-o", help="Output directory (written atomically).")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Override a config key: key=value (repeatable); a list is comma-separated: tables=a,b.",
    ),
]
ConfigOpt = Annotated[
    str | None,
    typer.Option(
        "--config",
        help=f"A preset ({', '.join(preset_names())}) or a YAML file, which may 'extends:' a preset and "
        "list only what it changes (adsformer config show prints the result).",
    ),
]
SettingsFileOpt = Annotated[
    str | None,
    typer.Option(
        "--config",
        help="A YAML file of these settings (it may 'extends:' another file); --set applies on top "
        "(adsformer config show --kind KIND prints the result).",
    ),
]
OverwriteOpt = Annotated[
    bool,
    typer.Option(
        "--overwrite",
        help="Write into --out even when it holds files adsformer did not write: same-named entries are "
        "replaced, every other file is kept.",
    ),
]
DataOpt = Annotated[Path, typer.Option("--data", help="Canonical dataset directory.")]
LogToOpt = Annotated[
    str | None,
    typer.Option(
        "--log-to",
        help="Also send the metrics to tensorboard (event files under ./tensorboard, or "
        "$ADSFORMER_TENSORBOARD_DIR) or mlflow (MLflow's tracking store); needs the track extra.",
    ),
]
TaskOpt = Annotated[str | None, typer.Option("--task", help="ctr | pccvr (default: the config's, else ctr)")]
ModelOpt = Annotated[
    str | None, typer.Option("--model", help="adsformer | baseline | bst | lastk (default: the config's)")
]

#: Set by ``--debug`` (or ADSFORMER_DEBUG=1): errors are raised with their traceback instead of one line
_DEBUG = False


def set_debug(debug: bool) -> None:
    """``--debug``: errors are raised with their traceback instead of printed as one line."""
    global _DEBUG
    _DEBUG = debug


def _control_flow() -> tuple[type[BaseException], ...]:
    """Exceptions the command-line framework uses for control flow (exit, abort, usage errors): passed on.
    typer >= 0.24 carries its own copy of click; older ones use click itself."""
    found: list[type[BaseException]] = [typer.Exit, typer.Abort]
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        found += [getattr(mod, n) for n in ("ClickException", "Exit", "Abort") if hasattr(mod, n)]
    return tuple(found)


CONTROL_FLOW = _control_flow()


def fail(exc: BaseException, command: str | None = None) -> NoReturn:
    """Print ``exc`` as one ``error:`` line on stderr and exit (1: user error, 2: bug); with ``--debug``,
    raise it with its traceback. A package of an extra found missing says which extra ``adsformer
    COMMAND`` needs."""
    if _DEBUG:
        raise exc
    exc = missing_extra(exc, f"'adsformer {command}'" if command else "this command") or exc
    text, code = error_line(exc)
    err_console.print(f"[bold red]error:[/] {escape(text)}", soft_wrap=True)
    raise typer.Exit(code) from None


@contextmanager
def friendly_errors() -> Iterator[None]:
    """Errors raised in the block end as one ``error:`` line (the root command does the same for every
    command; this keeps commands that catch nothing else self-contained)."""
    try:
        yield
    except CONTROL_FLOW:
        raise
    except Exception as exc:
        if missing_extra(exc, "") is not None:
            raise  # the root command names the command that needs the extra
        fail(exc)


def needs(command: str, *extras: Extra) -> None:
    """Refuse ``adsformer COMMAND`` in one line, before any work, when a package of ``extras`` is missing."""
    require(f"'adsformer {command}'", *extras)


@contextmanager
def output_dir(out: Path, overwrite: bool) -> Iterator[None]:
    """Check ``--out`` before any work (a refusal comes first, not after training) and let the block's
    writes overwrite with ``--overwrite``."""
    from adsformer.io import allow_overwrite, check_output_dir

    check_output_dir(out, overwrite=overwrite)
    with allow_overwrite(overwrite):
        yield


def data_config(config: str | None, overrides: list[str] | None) -> DataConfig:
    """The data config: defaults, then ``--config`` (a data preset or file, or a run config's ``data``
    section), then ``--set`` overrides."""
    return load_config(DataConfig, config, overrides)


def progress_printer() -> Callable[..., None]:
    """A progress callback ``(message, [fraction done])``: a timestamped line on stderr when the message
    changes, else at most every :data:`adsformer.console.PLAIN_EVERY_S` seconds."""
    start = time.perf_counter()
    last_message, last_at = [""], [start]

    def report(message: str, *fraction: float) -> None:
        now = time.perf_counter()
        if message == last_message[0] and now - last_at[0] < console.PLAIN_EVERY_S:
            return
        last_message[0], last_at[0] = message, now
        done = f", {100 * fraction[0]:.0f}% done" if fraction else ""
        log(f"{message} ({now - start:.1f} s{done})")

    return report


def given(**kwargs: Any) -> dict[str, Any]:
    """Command-line options that were actually given (they override the config file)."""
    return {k: v for k, v in kwargs.items() if v is not None}


@contextmanager
def writing_runs(
    out: Path,
    overwrite: bool,
    config: str | None,
    overrides: list[str] | None,
    log_to: str | None,
    **options: Any,
) -> Iterator[tuple[ExperimentConfig, Backend | None]]:
    """What a command that trains into ``--out`` (``train``, ``tune``) does first, inside one-line errors and
    the ``--out`` check (:func:`output_dir`): the tracking backend of ``--log-to`` (None without it) and the
    experiment config (``--config``, the command's ``options`` that were given, ``--set``)."""
    from adsformer.experiments.tracking import check_backend
    from adsformer.run.config import load_experiment

    with friendly_errors(), output_dir(out, overwrite):
        backend = check_backend(log_to) if log_to else None
        yield load_experiment(config, overrides, extra=given(**options)), backend
