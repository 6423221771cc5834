"""The ``adsformer`` command line (SPEC section 6). Commands and output fields are a contract: add, don't rename.

Each command is a thin shell over a library function. Errors the user can fix (bad data, bad config, bad
paths: :class:`adsformer.errors.UserError`) are printed as one ``error:`` line on stderr saying what, where
and what to do, with exit code 1, never a traceback; anything else is a bug, printed as one line too (exit
code 2). ``adsformer --debug COMMAND`` (or ``ADSFORMER_DEBUG=1``) shows the traceback instead.

Commands that write a directory (``--out``) refuse a non-empty one adsformer did not write unless
``--overwrite`` (:mod:`adsformer.io`), before any long work starts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
import typer.core
from rich.markup import escape

from adsformer import __version__
from adsformer.config import ConfigError, DataConfig, apply_overrides, load_yaml, parse_overrides
from adsformer.console import console, err_console, kv_table, records_table, stage
from adsformer.errors import UserError

#: Set by ``--debug`` (or ADSFORMER_DEBUG=1): errors are raised with their traceback instead of one line
_DEBUG = False


def _control_flow() -> tuple[type[BaseException], ...]:
    """Exceptions the command-line framework uses for control flow (exit, abort, usage errors): passed on.
    typer >= 0.24 carries its own copy of click; older ones use click itself."""
    import importlib

    found: list[type[BaseException]] = [typer.Exit, typer.Abort]
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        found += [getattr(mod, n) for n in ("ClickException", "Exit", "Abort") if hasattr(mod, n)]
    return tuple(found)


_CONTROL_FLOW = _control_flow()


class _Commands(typer.core.TyperGroup):
    """The root command: whatever a subcommand raises ends as one ``error:`` line (see the module doc)."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except _CONTROL_FLOW:
            raise
        except Exception as exc:
            _fail(exc)


app = typer.Typer(
    name="adsformer",
    help="Personalized sponsored-search ad ranking from short-term user action sequences (adSformer).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=_Commands,
)
prepare_app = typer.Typer(
    help="Build a canonical dataset directory from the simulator or a public dataset.", no_args_is_help=True
)
app.add_typer(prepare_app, name="prepare")


def _add_subcommands() -> None:
    from adsformer.cli.abtest import abtest_cmd
    from adsformer.cli.features import features_cmd
    from adsformer.cli.index import index_app, retrieve_cmd
    from adsformer.cli.represent import represent_app
    from adsformer.cli.serve import serve_cmd, serve_demo_cmd
    from adsformer.cli.stats import stats_app

    app.add_typer(represent_app, name="represent")
    app.command("serve")(serve_cmd)
    app.command("serve-demo")(serve_demo_cmd)
    app.command("features")(features_cmd)
    app.add_typer(index_app, name="index")
    app.command("retrieve")(retrieve_cmd)
    app.add_typer(stats_app, name="stats")
    app.command("abtest")(abtest_cmd)


OutDir = Annotated[Path, typer.Option("--out", "-o", help="Output directory (written atomically).")]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="Override a config key: key=value (repeatable).")
]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="YAML config file.", exists=True, dir_okay=False)
]


OverwriteOpt = Annotated[
    bool,
    typer.Option(
        "--overwrite",
        help="Write into --out even when it holds files adsformer did not write: same-named entries are "
        "replaced, every other file is kept.",
    ),
]

#: Errors a user can fix besides :class:`UserError`: paths that are missing or of the wrong kind
_PATH_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


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
    global _DEBUG
    _DEBUG = debug


def error_line(exc: BaseException) -> tuple[str, int]:
    """The one line an error is printed as, and the exit code: 1 for what the user can fix, 2 for a bug."""
    if isinstance(exc, UserError):
        return exc.one_line(), 1
    if isinstance(exc, _PATH_ERRORS):
        text = " ".join(str(exc).split())
        if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
            text = f"{exc.filename}: {exc.strerror}"
        return text, 1
    detail = " ".join(f"{type(exc).__name__}: {exc}".split())
    if len(detail) > 300:
        detail = detail[:297] + "..."
    return (
        f"internal error ({detail}); this is a bug in adsformer {__version__}: rerun with --debug for the "
        f"traceback and report it",
        2,
    )


def _fail(exc: BaseException) -> NoReturn:
    """Print ``exc`` as one ``error:`` line on stderr and exit (1: user error, 2: bug); with ``--debug``,
    raise it with its traceback."""
    if _DEBUG:
        raise exc
    text, code = error_line(exc)
    err_console.print(f"[bold red]error:[/] {escape(text)}", soft_wrap=True)
    raise typer.Exit(code) from None


@contextmanager
def _friendly_errors() -> Iterator[None]:
    """Errors raised in the block end as one ``error:`` line (the root command does the same for every
    command; this keeps commands that catch nothing else self-contained)."""
    try:
        yield
    except _CONTROL_FLOW:
        raise
    except Exception as exc:
        _fail(exc)


@contextmanager
def _output_dir(out: Path, overwrite: bool) -> Iterator[None]:
    """Check ``--out`` before any work (a refusal comes first, not after training) and let the block's
    writes overwrite with ``--overwrite``."""
    from adsformer.io import allow_overwrite, check_output_dir

    check_output_dir(out, overwrite=overwrite)
    with allow_overwrite(overwrite):
        yield


def _data_config(config: Path | None, overrides: list[str] | None) -> DataConfig:
    cfg = load_yaml(DataConfig, config) if config else DataConfig()
    return apply_overrides(cfg, parse_overrides(overrides))


def _progress_printer() -> Callable[..., None]:
    start = time.perf_counter()

    def report(message: str, *_fraction: float) -> None:
        console.print(f"[dim]{time.perf_counter() - start:6.1f} s[/] {message}")

    return report


def _print_prepared(
    summary: dict, out: Path, skipped: list | None = None, notes: list[str] | None = None
) -> None:
    console.print(kv_table("prepared dataset", summary))
    for line in (skipped or [])[:10]:
        console.print(f"[yellow]skipped[/] {line}")
    if skipped and len(skipped) > 10:
        console.print(f"[yellow]... and {len(skipped) - 10} more skipped lines[/]")
    for note in notes or []:
        console.print(f"[cyan]note:[/] {note}")
    console.print(f"wrote [bold]{out}[/]")


# ---------------------------------------------------------------------------------------------- prepare
@prepare_app.command("simulate")
def prepare_simulate(
    out: OutDir,
    scale: Annotated[str, typer.Option(help="tiny | demo | medium | large (>= 10M impressions).")] = "demo",
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same dataset).")] = 0,
    images: Annotated[
        bool | None, typer.Option("--images/--no-images", help="Draw listing images (default: per scale).")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a simulator knob: key=value (see SimulatorConfig)."),
    ] = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """The built-in marketplace simulator (ground truth saved beside the data)."""
    from adsformer.simulator import SimulatorConfig, simulate

    with _friendly_errors(), _output_dir(out, overwrite):
        cfg = SimulatorConfig.preset(scale).with_overrides(seed=seed)
        if images is not None:
            cfg = cfg.with_overrides(images=images)
        if set_:
            pairs = dict(item.split("=", 1) for item in set_ if "=" in item)
            if len(pairs) != len(set_):
                raise ConfigError(f"--set expects key=value, got {set_}")
            try:
                cfg = cfg.with_string_overrides(pairs)
            except (TypeError, ValueError) as exc:
                raise ConfigError(str(exc)) from exc
        ds = simulate(cfg, out, progress=_progress_printer())
    _print_prepared(ds.summary(), out)
    shares = json.loads((out / "truth.json").read_text())["summary"].get("reengagement", {})
    console.print(
        "re-engagement (on a listing touched in the prior hour): "
        + ", ".join(f"{k} {'n/a' if v is None else f'{100 * v:.1f}%'}" for k, v in shares.items())
    )


@prepare_app.command("taobao-userbehavior")
def prepare_taobao(
    path: Annotated[Path, typer.Argument(help="UserBehavior.csv (user,item,category,behavior,ts).")],
    out: OutDir,
    negatives: Annotated[int, typer.Option(help="Non-clicked listings shown beside each clicked view.")] = 4,
    purchase_window_s: Annotated[
        int, typer.Option(help="A purchase within this time after the view labels it purchased.")
    ] = 86_400,
    exclude_user_history: Annotated[
        bool, typer.Option(help="Never show listings the user viewed as negatives (biased; see docs).")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of the impression protocol.")] = 0,
    popularity: Annotated[
        str, typer.Option(help="day (popularity on the request's day) | log (whole log; looks ahead)")
    ] = "day",
    overwrite: OverwriteOpt = False,
) -> None:
    """Taobao UserBehavior log; impressions built by a documented, seeded protocol."""
    from adsformer.data.adapters.taobao import prepare_taobao as run

    with _friendly_errors(), _output_dir(out, overwrite):
        res = run(
            path,
            out,
            negatives=negatives,
            purchase_window_s=purchase_window_s,
            exclude_user_history=exclude_user_history,
            seed=seed,
            popularity=popularity,
            progress=_progress_printer(),
        )
    _print_prepared(res.summary(), res.out, res.skipped_lines, res.notes)


@prepare_app.command("trivago")
def prepare_trivago(
    path: Annotated[Path, typer.Argument(help="RecSys Challenge 2019 session log (Parquet or CSV).")],
    out: OutDir,
    overwrite: OverwriteOpt = False,
) -> None:
    """trivago session log: real impressions with positions and prices (no conversions)."""
    from adsformer.data.adapters.trivago import prepare_trivago as run

    with _friendly_errors(), _output_dir(out, overwrite):
        res = run(path, out, progress=_progress_printer())
    _print_prepared(res.summary(), res.out, res.skipped_lines, res.notes)


@prepare_app.command("movielens")
def prepare_movielens(
    path: Annotated[
        Path, typer.Argument(help="ml-100k directory (u.data + u.item, or RecBole atomic files).")
    ],
    out: OutDir,
    click_threshold: Annotated[float, typer.Option(help="A rating >= this is a click.")] = 4.0,
    overwrite: OverwriteOpt = False,
) -> None:
    """MovieLens-100k: ratings as views, rating >= threshold as the click label, genres as taxonomy."""
    from adsformer.data.adapters.movielens import prepare_movielens as run

    with _friendly_errors(), _output_dir(out, overwrite):
        res = run(path, out, click_threshold=click_threshold, progress=_progress_printer())
    _print_prepared(res.summary(), res.out, res.skipped_lines, res.notes)


@prepare_app.command("fashion")
def prepare_fashion(
    path: Annotated[Path, typer.Argument(help="Fashion folder (styles.csv, styles_text.csv, images/).")],
    out: OutDir,
    images: Annotated[bool, typer.Option(help="Copy the product images into the dataset.")] = True,
    overwrite: OverwriteOpt = False,
) -> None:
    """Fashion Product Images: a catalog-only dataset (listings, titles, labels, images) for the text,
    visual and AIR representations."""
    from adsformer.data.adapters.fashion import prepare_fashion as run

    with _friendly_errors(), _output_dir(out, overwrite):
        res = run(path, out, images=images, progress=_progress_printer())
    _print_prepared(res.summary(), res.out, res.skipped_lines, res.notes)


# ---------------------------------------------------------------------------------------------- validate
@app.command()
def validate(directory: Annotated[Path, typer.Argument(help="Canonical dataset directory.")]) -> None:
    """Check a dataset directory; name every problem (file, column, rows, what was expected)."""
    from adsformer.data.validate import read_dataset, validate_dataset

    report = validate_dataset(directory)
    for problem in report.problems:
        style = "red" if problem.severity == "error" else "yellow"
        console.print(f"[{style}]{escape(str(problem))}[/]", soft_wrap=True)
    if not report.ok:
        console.print(
            f"[bold red]{len(report.errors)} error(s)[/] in {escape(str(directory))}", soft_wrap=True
        )
        raise typer.Exit(1)
    ds = read_dataset(directory, validate=False)
    console.print(kv_table(f"{directory}: valid", ds.summary()))


# ---------------------------------------------------------------------------------------------- sequences
@app.command()
def sequences(
    data: Annotated[Path, typer.Option("--data", help="Canonical dataset directory.")],
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Split, fit vocabularies and build the windowed sequences; print what they hold."""
    from adsformer.data.features import build_features
    from adsformer.data.stats import sequence_stats, split_stats
    from adsformer.data.validate import read_dataset

    with _friendly_errors():
        cfg = _data_config(config, set_)
        ds = read_dataset(data)
        with stage("build features"):
            start = time.perf_counter()
            fs = build_features(ds, cfg)
            seconds = time.perf_counter() - start
    console.print(records_table("splits", split_stats(fs)))
    console.print(
        records_table(
            f"sequences (window {cfg.sequences.window_s} s, M = {cfg.sequences.max_len})", sequence_stats(fs)
        )
    )
    console.print(kv_table("vocabularies (rows incl. padding and OOV)", fs.vocabs.sizes()))
    console.print(f"{fs.n:,} impressions in {seconds:.2f} s ({fs.n / max(seconds, 1e-9):,.0f} impressions/s)")


# ---------------------------------------------------------------------------------------------- train
TaskOpt = Annotated[str | None, typer.Option("--task", help="ctr | pccvr (default: the config's, else ctr)")]
ModelOpt = Annotated[
    str | None, typer.Option("--model", help="adsformer | baseline | bst | lastk (default: the config's)")
]


def _given(**kwargs: str | None) -> dict[str, str]:
    """Command-line options that were actually given (they override the config file)."""
    return {k: v for k, v in kwargs.items() if v is not None}


DataOpt = Annotated[Path, typer.Option("--data", help="Canonical dataset directory.")]


@app.command("train")
def train_cmd(
    data: DataOpt,
    out: OutDir,
    task: TaskOpt = None,
    model: ModelOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Train a CTR or PCCVR model; write a self-contained run directory."""
    from adsformer.experiments.runs import train_run
    from adsformer.run.config import load_experiment

    with _friendly_errors(), _output_dir(out, overwrite):
        cfg = load_experiment(config, set_, extra=_given(task=task, model=model))
        summary = train_run(data, cfg, out)
    console.print(kv_table("trained", _trained_rows(summary, auto_batch=cfg.train.batch_size == 0)))
    console.print(f"wrote [bold]{out}[/]")


def _trained_rows(summary: dict[str, Any], *, auto_batch: bool = False) -> dict[str, Any]:
    """What `adsformer train` prints: the restored (best) epoch and its validation scores."""
    epochs, steps = summary["epochs"], summary["steps_per_epoch"]
    best = epochs[summary["best_epoch"]] if epochs else {}
    run = f"{summary['epochs_run']} of at most {summary['max_epochs']}"
    return {
        "task": summary["task"],
        "model": summary["model"],
        "train rows": summary["n_train"],
        "parameters": summary["parameters"],
        "batch size": f"{summary['batch_size']:,}{' (auto)' if auto_batch else ''}, {steps:,} step"
        f"{'s' if steps != 1 else ''} an epoch",
        "examples/s": summary["train_examples_per_s"],
        "epochs run": f"{run}, stopped early" if summary["stopped_early"] else run,
        "best epoch (from 0, restored)": summary["best_epoch"],
        f"best epoch's val roc_auc{' (monitored)' if summary['monitor'] == 'roc_auc' else ''}": best.get(
            "val_roc_auc", float("nan")
        ),
        f"best epoch's val log_loss{' (monitored)' if summary['monitor'] == 'log_loss' else ''}": best.get(
            "val_log_loss", float("nan")
        ),
    }


@app.command("evaluate")
def evaluate_cmd(
    run_dir: Annotated[Path, typer.Argument(help="Run directory written by `adsformer train`.")],
    data: DataOpt,
) -> None:
    """Score the test split (natural rate); write RUN_DIR/metrics.json."""
    from adsformer.experiments.runs import evaluate_run

    with _friendly_errors():
        metrics = evaluate_run(run_dir, data)
    console.print(kv_table("test metrics", {k: v for k, v in metrics.items() if k != "config"}))
    console.print(f"wrote [bold]{run_dir / 'metrics.json'}[/]")


@app.command("ablate")
def ablate_cmd(
    data: DataOpt,
    out: OutDir,
    task: TaskOpt = None,
    suite: Annotated[
        str,
        typer.Option(
            help="Ablation suite: paper (tables 2 and 3) | pretrained (table 4: each subset of --set tables)."
        ),
    ] = "paper",
    seeds: Annotated[
        int, typer.Option(help="Seeds per row (mean and std): train.seed .. train.seed + seeds - 1.")
    ] = 3,
    only: Annotated[
        list[str] | None,
        typer.Option(help="Run only this row (repeatable); the baseline always runs, for the lifts."),
    ] = None,
    tables: Annotated[
        str | None,
        typer.Option(
            help="Pretrained tables for ADPM component 2: auto (learn a skip-gram table from the sessions "
            "before the test period into OUT/tables/skipgram) or DIR,DIR,... (same as --set tables=[...])."
        ),
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Train and test every row of the suite over seeds; write ablation.json and ablation.md.

    Every suite also trains the peers DIN and TransAct (FuxiCTR) when the optional package fuxictr is
    installed. Spread seeds over processes: run ``--seeds 1 --set seed=N`` each, then ``adsformer
    ablate-merge``."""
    from adsformer.experiments.ablation import SUITES, ablation_markdown, run_ablation
    from adsformer.run.config import load_experiment

    with _friendly_errors(), _output_dir(out, overwrite):
        if suite not in SUITES:
            raise ConfigError(f"unknown suite {suite!r}; expected one of {sorted(SUITES)}")
        if seeds < 1:
            raise ConfigError("--seeds must be >= 1")
        if tables is not None:
            dirs = [t.strip() for t in tables.split(",") if t.strip()]
            if not dirs:
                raise ConfigError("--tables: expected auto or DIR,DIR,...")
            set_ = [*(set_ or []), f"tables=[{','.join(dirs)}]"]
        cfg = load_experiment(config, set_, extra=_given(task=task))
        result = run_ablation(data, cfg, suite, seeds, out, only=tuple(only or ()))
    console.print(ablation_markdown(result))
    console.print(f"wrote [bold]{out / 'ablation.json'}[/] and [bold]{out / 'ablation.md'}[/]")


@app.command("ablate-merge")
def ablate_merge_cmd(
    out: OutDir,
    runs: Annotated[list[Path], typer.Argument(help="Output folders of ablate runs over disjoint seeds.")],
    overwrite: OverwriteOpt = False,
) -> None:
    """Combine ablate runs made over disjoint seeds into one ablation.json and ablation.md."""
    from adsformer.experiments.ablation import ablation_markdown, merge_ablations, write_ablation

    with _friendly_errors(), _output_dir(out, overwrite):
        parts = []
        for run in runs:
            path = run / "ablation.json"
            if not path.exists():
                raise ConfigError(f"{path}: not found (expected the output folder of adsformer ablate)")
            try:
                parts.append(json.loads(path.read_text()))
            except json.JSONDecodeError as e:
                raise ConfigError(f"{path}: not valid JSON ({e})") from e
        result = merge_ablations(parts)
        write_ablation(result, out)
    console.print(ablation_markdown(result))
    console.print(f"wrote [bold]{out / 'ablation.json'}[/] and [bold]{out / 'ablation.md'}[/]")


@app.command("daily")
def daily_cmd(
    data: DataOpt,
    out: OutDir,
    task: TaskOpt = None,
    days: Annotated[int, typer.Option(help="Test on each of the last N days.")] = 3,
    train_days: Annotated[
        float, typer.Option(help="Days of training before each validation day (0 = all).")
    ] = 0.0,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """The daily protocol: for each of the last N days, train on the days before, test on that day;
    baseline vs adSformer lifts per day (daily.json, daily.md, daily_lift.png)."""
    from adsformer.experiments.daily import daily_markdown, run_daily
    from adsformer.run.config import load_experiment

    with _friendly_errors(), _output_dir(out, overwrite):
        cfg = load_experiment(config, set_, extra=_given(task=task))
        summary = run_daily(data, cfg, days, out, train_days=train_days)
    console.print(daily_markdown(summary))
    console.print(f"wrote [bold]{out / 'daily.json'}[/], daily.md and daily_lift.png")


@app.command("position")
def position_cmd(
    data: DataOpt,
    out: OutDir,
    seeds: Annotated[int, typer.Option(help="Seeds per arm (mean and std).")] = 1,
    min_shown: Annotated[
        int, typer.Option(help="Leave out positions shown fewer times in the test split.")
    ] = 200,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """The position study: train with and without the position tower on the same split; learned vs naive
    (and, on the simulator, true) position curves and ranking of true relevance (position.json, .md, .png)."""
    from adsformer.experiments.position import position_markdown, run_position_study
    from adsformer.run.config import load_experiment

    with _friendly_errors(), _output_dir(out, overwrite):
        cfg = load_experiment(config, set_, extra=_given(task="ctr"))
        summary = run_position_study(data, cfg, out, seeds=seeds, min_shown=min_shown)
    console.print(position_markdown(summary))
    console.print(f"wrote [bold]{out / 'position.json'}[/], position.md and position_curve.png")


@app.command("predict")
def predict_cmd(
    run_dir: Annotated[Path, typer.Argument(help="Run directory written by `adsformer train`.")],
    data: DataOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output Parquet file (written atomically).")],
    batch_size: Annotated[int | None, typer.Option(help="Scoring batch size.")] = None,
) -> None:
    """Score every impression of a dataset (unseen ids -> OOV); write ids + p_ctr / p_pccvr to Parquet."""
    from adsformer.run.predictor import predict_run

    with _friendly_errors():
        summary = predict_run(run_dir, data, out, batch_size=batch_size)
    console.print(kv_table("predictions", summary))


@app.command("export")
def export_cmd(
    run_dir: Annotated[Path, typer.Argument(help="Run directory written by `adsformer train`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="TorchScript file, e.g. model.pt.")],
) -> None:
    """Export the run's model as TorchScript (plus FILE.pt.json describing the inputs); parity-checked."""
    from adsformer.run.export import export_torchscript, sidecar_path

    with _friendly_errors():
        path = export_torchscript(run_dir, out)
    console.print(f"wrote [bold]{path}[/] and [bold]{sidecar_path(path)}[/]")


@app.command("report")
def report_cmd(
    paths: Annotated[list[Path], typer.Argument(help="Run, ablation or demo directories.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML file (written atomically).")] = Path(
        "report.html"
    ),
    title: Annotated[str, typer.Option(help="Report title.")] = "adsformer report",
) -> None:
    """A self-contained HTML report: metrics, ROC / PR curves, reliability diagrams before and after
    calibration, training curves and ablation tables."""
    from adsformer.report import write_report

    with _friendly_errors():
        path = write_report(paths, out, title)
    console.print(f"wrote [bold]{path}[/]")


# ---------------------------------------------------------------------------------------------- demo
@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Where the demo writes data and report.")] = Path(
        "demo_out"
    ),
    scale: Annotated[str, typer.Option(help="Simulator scale.")] = "demo",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """The embedded default: the whole pipeline on the simulator, ending with a report and its path."""
    from adsformer.experiments.demo import run_demo

    with _friendly_errors(), _output_dir(out, overwrite):
        run_demo(out, scale=scale, seed=seed, data_cfg=_data_config(config, set_))


_add_subcommands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
