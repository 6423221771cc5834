"""``adsformer serve`` (the ranking service over HTTP) and ``adsformer serve-demo`` (replay simulated users)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from adsformer.cli.common import friendly_errors, needs
from adsformer.console import console, kv_table, warn

RunOpt = Annotated[Path, typer.Option("--run", help="CTR run directory (adsformer train --task ctr).")]
PccvrOpt = Annotated[
    Path | None, typer.Option("--pccvr-run", help="PCCVR run directory (value = bid x pCTR x PCCVR factor).")
]
RedisOpt = Annotated[
    str | None,
    typer.Option("--redis-url", help="Online store, e.g. redis://127.0.0.1:6379/0 (default: in-process)."),
]


def file_settings(
    config: str | None, overrides: list[str] | None, fields: Mapping[str, Any]
) -> dict[str, Any]:
    """The service settings a ``--config`` file (and what it extends) and ``--set`` give, by field name;
    a name that is not a setting is refused (the environment's ``ADSFORMER_*`` ones are not read here)."""
    from adsformer.config import ConfigError, parse_overrides, read_layers

    layers, kind = read_layers(config) if config is not None else ([], None)
    if kind not in (None, "serve"):
        raise ConfigError(f"--config {config}: a {kind} config; adsformer serve needs service settings")
    values: dict[str, Any] = {}
    for source, given in [
        *((layer.source, layer.values) for layer in layers),
        ("--set", parse_overrides(overrides)),
    ]:
        for key, value in given.items():
            if key not in fields:
                raise ConfigError(
                    f"{source}: unknown service setting {key!r}; expected one of {sorted(fields)}"
                )
            values[key] = value
    return values


def settings_error(exc: Any) -> str:
    """A pydantic ``ValidationError`` of the service settings as one line: each bad setting, what it
    needs and what it got (no links, no internal type names)."""
    parts = []
    for err in exc.errors():
        msg = str(err["msg"]).removeprefix("Value error, ")
        if not err["loc"]:  # a check across settings
            parts.append(f"service settings: {msg}")
            continue
        name = ".".join(str(p) for p in err["loc"])
        got = f", got {err['input']!r}" if "input" in err else ""
        parts.append(f"service setting {name}: {msg}{got}")
    return "; ".join(parts)


def serve_cmd(
    run: RunOpt,
    index: Annotated[
        Path | None,
        typer.Option("--index", help="Retrieval index (adsformer index build); default: catalog matching."),
    ] = None,
    pccvr_run: PccvrOpt = None,
    catalog: Annotated[
        Path | None,
        typer.Option(
            "--catalog", help="Dataset directory or listings Parquet with listing attributes and bids."
        ),
    ] = None,
    redis_url: RedisOpt = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    api_key: Annotated[
        list[str] | None, typer.Option("--api-key", help="Key accepted by POST /events (repeatable).")
    ] = None,
    feature_log: Annotated[
        Path | None, typer.Option("--feature-log", help="Directory for the served-feature logs (Parquet).")
    ] = None,
    threads: Annotated[int, typer.Option(help="Torch threads for scoring (per worker process).")] = 1,
    workers: Annotated[
        int,
        typer.Option(
            help="Server processes on the port, each loading the runs (more than 1 needs --redis-url: "
            "they share the online store).",
        ),
    ] = 1,
    cache_ttl: Annotated[
        float | None, typer.Option("--cache-ttl", help="Score cache TTL in seconds (0 = off).")
    ] = None,
    config: Annotated[
        str | None,
        typer.Option(
            "--config",
            help="A YAML file of service settings (the fields of ServingSettings; it may 'extends:' another "
            "file). Precedence: ADSFORMER_* environment, then this file, then --set, then the options above.",
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a service setting: key=value (max_ads=20, ...; repeatable)."),
    ] = None,
) -> None:
    """Serve POST /events, POST /rank, GET /healthz, GET /metrics (OpenAPI at /docs)."""
    needs("serve", "serve", *(("retrieval",) if index is not None else ()))
    import pydantic
    import uvicorn

    from adsformer.errors import UserError
    from adsformer.serving import ServingSettings, create_app
    from adsformer.serving.catalog import CatalogError
    from adsformer.serving.memory import freeze_loaded_objects
    from adsformer.serving.process import prepare_process
    from adsformer.serving.workers import check_workers, run_workers

    given: dict[str, Any] = {
        "run": run,
        "pccvr_run": pccvr_run,
        "index": index,
        "catalog": catalog,
        "redis_url": redis_url,
        "api_keys": api_key or None,
        "feature_log_dir": feature_log,
        "torch_threads": threads,
        "cache_ttl_s": cache_ttl,
    }
    with friendly_errors():
        try:
            chosen = {k: v for k, v in given.items() if v is not None}
            settings = ServingSettings(
                **{**file_settings(config, set_, ServingSettings.model_fields), **chosen}
            )
            check_workers(workers, settings)
            prepare_process(settings)  # torch threads; keep freed tensor memory mapped (no page faults)
            app = create_app(settings)  # with --workers, a check that everything loads (each worker loads)
        except pydantic.ValidationError as exc:  # a bad setting: the user's to fix
            raise UserError(settings_error(exc)) from exc
        except CatalogError as exc:  # a bad catalog: the user's to fix
            raise UserError(str(exc)) from exc
    service = app.state.service
    for model in service.models:
        if model.online.missing_columns:
            warn(
                f"the catalog lacks listing columns the {model.task} run reads "
                f"({', '.join(model.online.missing_columns)}): served as missing. Give --catalog DATA_DIR "
                "(the dataset the run was trained on)."
            )
    console.print(
        kv_table(
            "adsformer serve",
            {
                "ctr run": str(settings.run),
                "pccvr run": str(settings.pccvr_run),
                "retriever": type(service.retriever).__name__,
                "store": service.store.kind,
                "listings": len(service.catalog),
                "url": f"http://{host}:{port}  (docs: /docs)",
                "workers": workers,
                "scoring": settings.scoring_mode,
            },
        )
    )
    if not settings.api_keys:
        console.print(
            f"POST /events API key for this run: [bold]{app.state.api_keys[0]}[/] (header X-API-Key)"
        )
    if workers == 1:
        freeze_loaded_objects()  # no full garbage collection walks the loaded runs during requests
        uvicorn.run(app, host=host, port=port, log_level="warning")
        return
    keys = list(app.state.api_keys)  # every worker accepts the same (possibly random) key
    service.store.close()
    del app, service
    run_workers(settings.model_copy(update={"api_keys": keys}), workers=workers, host=host, port=port)


def serve_demo_cmd(
    run: RunOpt,
    data: Annotated[Path, typer.Option("--data", help="The simulated dataset the runs were trained on.")],
    pccvr_run: PccvrOpt = None,
    users: Annotated[int, typer.Option(help="Users to replay.")] = 3,
    n: Annotated[int, typer.Option("--n", help="Ads per ranking.")] = 5,
    redis_url: RedisOpt = None,
) -> None:
    """Start the service in-process, replay simulated users' actions, print their ads before and after."""
    needs("serve-demo", "serve")
    from adsformer.serving.demo import replay

    with friendly_errors():
        replay(run, data, pccvr_run=pccvr_run, users=users, n_ads=n, redis_url=redis_url)
