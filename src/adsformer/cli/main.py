"""The ``adsformer`` command line (SPEC section 6). Commands and output fields are a contract: add, don't rename.

Each command is a thin shell over a library function; this module assembles them, one module per command
group. Errors the user can fix (bad data, bad config, bad paths: :class:`adsformer.errors.UserError`) are
printed as one ``error:`` line on stderr saying what, where and what to do, with exit code 1, never a
traceback; anything else is a bug, printed as one line too (exit code 2). ``adsformer --debug COMMAND`` (or
``ADSFORMER_DEBUG=1``) shows the traceback instead.

Commands that write a directory (``--out``) refuse a non-empty one adsformer did not write unless
``--overwrite`` (:mod:`adsformer.io`), before any long work starts.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
import typer.core

from adsformer import __version__
from adsformer.cli import (
    abtest,
    config,
    dataset,
    experiments,
    features,
    help,
    index,
    represent,
    runs,
    serve,
    stats,
    tune,
)
from adsformer.cli.common import CONTROL_FLOW, fail, set_debug
from adsformer.cli.prepare import prepare_app
from adsformer.cli.report import report_cmd
from adsformer.console import console


class _Commands(typer.core.TyperGroup):
    """The root command: whatever a subcommand raises ends as one ``error:`` line (see the module doc); its
    help and every command's is plain text with an example and every default, listed in workflow order
    (:mod:`adsformer.cli.help`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        help.polish(self)

    def list_commands(self, ctx: Any) -> list[str]:
        return help.ordered(super().list_commands(ctx))

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except CONTROL_FLOW:
            raise
        except Exception as exc:
            fail(exc, command=ctx.invoked_subcommand)


app = typer.Typer(
    name="adsformer",
    help="Personalized sponsored-search ad ranking from short-term user action sequences (adSformer).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=_Commands,
)


def _version(value: bool) -> None:
    if value:
        console.print(f"adsformer {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[
        bool,
        typer.Option(
            "--debug", envvar="ADSFORMER_DEBUG", help="Show the traceback of an error instead of one line."
        ),
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Personalized sponsored-search ad ranking from short-term user action sequences (adSformer)."""
    set_debug(debug)


def _add_commands() -> None:
    """Every command and group, in the order ``adsformer --help`` lists them."""
    app.add_typer(prepare_app, name="prepare")
    app.command("validate")(dataset.validate)
    app.command("sequences")(dataset.sequences)
    app.command("train")(runs.train_cmd)
    app.command("evaluate")(runs.evaluate_cmd)
    app.command("ablate")(experiments.ablate_cmd)
    app.command("ablate-merge")(experiments.ablate_merge_cmd)
    app.command("tune")(tune.tune_cmd)
    app.command("daily")(experiments.daily_cmd)
    app.command("position")(experiments.position_cmd)
    app.command("predict")(runs.predict_cmd)
    app.command("export")(runs.export_cmd)
    app.command("report")(report_cmd)
    app.command("demo")(experiments.demo)
    app.add_typer(represent.represent_app, name="represent")
    app.command("serve")(serve.serve_cmd)
    app.command("serve-demo")(serve.serve_demo_cmd)
    app.command("features")(features.features_cmd)
    app.add_typer(index.index_app, name="index")
    app.command("retrieve")(index.retrieve_cmd)
    app.add_typer(stats.stats_app, name="stats")
    app.command("abtest")(abtest.abtest_cmd)
    app.add_typer(config.config_app, name="config")


_add_commands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
