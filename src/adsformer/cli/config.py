"""``adsformer config show``: a config as a command resolves it, and where each value came from."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from adsformer.cli.common import ConfigOpt, SetOpt, friendly_errors
from adsformer.config import ConfigError, Resolved, read_layers, resolve_config
from adsformer.console import console

config_app = typer.Typer(
    help="The configs commands read: presets shipped with adsformer and YAML files that extend them.",
    no_args_is_help=True,
)

#: What a config configures -> the command that reads it
KINDS = {
    "run": "train, evaluate, ablate, daily, position",
    "data": "sequences, features, demo",
    "index": "index build",
    "skipgram": "represent skipgram",
    "text": "represent text",
    "air": "represent air",
    "visual": "represent visual",
    "simulator": "prepare simulate (from its --scale preset)",
}


def config_class(kind: str) -> type:
    """The config dataclass of a kind (imported on demand: each lives with its part)."""
    if kind == "run":
        from adsformer.run.config import ExperimentConfig

        return ExperimentConfig
    if kind == "data":
        from adsformer.config import DataConfig

        return DataConfig
    if kind == "index":
        from adsformer.retrieval.config import IndexConfig

        return IndexConfig
    if kind == "simulator":
        from adsformer.simulator.config import SimulatorConfig

        return SimulatorConfig
    if kind in ("skipgram", "air"):
        from adsformer.representations.air import AIRConfig
        from adsformer.representations.skipgram import SkipGramConfig

        return SkipGramConfig if kind == "skipgram" else AIRConfig
    if kind == "text":
        from adsformer.representations.text import TextConfig

        return TextConfig
    if kind == "visual":
        from adsformer.representations.visual.config import VisualConfig

        return VisualConfig
    raise ConfigError(f"--kind {kind}: expected one of {list(KINDS)}")


@config_app.command("show")
def show_cmd(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    kind: Annotated[
        str | None,
        typer.Option(
            "--kind",
            help=f"What the config configures: {' | '.join(KINDS)} (default: the file's kind, else run).",
        ),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print one JSON object: kind, config, and where each key came from."),
    ] = False,
) -> None:
    """Print the resolved config, one dotted key a line, with where its value came from: default, a preset
    (preset NAME), a file (its path), --set."""
    with friendly_errors():
        chosen = kind or (read_layers(config)[1] if config is not None else None) or "run"
        resolved: Resolved[Any] = resolve_config(config_class(chosen), config, set_)
    rows = resolved.rows()
    if as_json:
        out: dict[str, Any] = {
            "kind": chosen,
            "config": {key: value for key, value, _ in rows},
            "origin": {key: origin for key, _, origin in rows},
        }
        console.print_json(json.dumps(out))
        return
    console.print(f"# {chosen} config ({KINDS[chosen]}); after each value, where it came from", markup=False)
    width = max(len(f"{key}: {_text(value)}") for key, value, _ in rows)
    for key, value, origin in rows:
        console.print(f"{f'{key}: {_text(value)}':<{width}}  # {origin}", markup=False, soft_wrap=True)


def _text(value: Any) -> str:
    """A value as it would be written in YAML (flow style for lists)."""
    return json.dumps(value) if not isinstance(value, str) else value
