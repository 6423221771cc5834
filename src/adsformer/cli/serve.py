"""``adsformer serve`` (the ranking service over HTTP) and ``adsformer serve-demo`` (replay simulated users)."""

from __future__ import annotations

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
    threads: Annotated[int, typer.Option(help="Torch threads for scoring.")] = 1,
    cache_ttl: Annotated[
        float | None, typer.Option("--cache-ttl", help="Score cache TTL in seconds (0 = off).")
    ] = None,
) -> None:
    """Serve POST /events, POST /rank, GET /healthz, GET /metrics (OpenAPI at /docs)."""
    needs("serve", "serve", *(("retrieval",) if index is not None else ()))
    import pydantic
    import torch
    import uvicorn

    from adsformer.errors import UserError
    from adsformer.serving import ServingSettings, create_app
    from adsformer.serving.catalog import CatalogError
    from adsformer.serving.memory import keep_freed_memory

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
            settings = ServingSettings(**{k: v for k, v in given.items() if v is not None})
            if settings.torch_threads > 0:
                torch.set_num_threads(settings.torch_threads)
            keep_freed_memory()  # a server: keep freed tensor memory mapped (no page faults per request)
            app = create_app(settings)
        except (CatalogError, pydantic.ValidationError) as exc:  # a bad catalog or setting: the user's to fix
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
            },
        )
    )
    if not settings.api_keys:
        console.print(
            f"POST /events API key for this run: [bold]{app.state.api_keys[0]}[/] (header X-API-Key)"
        )
    uvicorn.run(app, host=host, port=port, log_level="warning")


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
