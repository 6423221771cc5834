"""The FastAPI application factory: :func:`create_app`.

Routes: ``POST /events`` (API key), ``POST /rank``, ``GET /healthz``, ``GET /metrics``; OpenAPI at
``/openapi.json``, Swagger UI at ``/docs`` and ReDoc at ``/redoc``, their scripts and styles served by the
app itself under :data:`DOCS_ASSETS` (no CDN: the pages work without internet). Malformed bodies get a 422 whose ``detail`` lists every bad field
(``loc``, at most 50) and whose ``message`` repeats them in one line; a body over ``max_body_bytes`` gets
413, a missing or wrong API key 401. Responses carry no internal detail (no store URL, script, path or
traceback; an unexpected error is a bare 500, logged), and every response is counted in ``/metrics``
(:mod:`adsformer.serving.guard`). ``uvicorn --factory adsformer.serving.app:app_from_env`` serves the app
configured by ``ADSFORMER_*`` variables.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline

from adsformer import __version__
from adsformer.serving.build import build_service
from adsformer.serving.guard import RequestGuard, error_message, validation_errors
from adsformer.serving.memory import freeze_loaded_objects
from adsformer.serving.process import prepare_process
from adsformer.serving.ranking import RankingService
from adsformer.serving.routers import events, health, metrics, rank
from adsformer.serving.settings import ServingSettings

#: Where the app serves the Swagger UI and ReDoc scripts and styles (no CDN)
DOCS_ASSETS = "/docs-assets"


def create_app(settings: ServingSettings | None = None, *, service: RankingService | None = None) -> FastAPI:
    """The service app. ``service`` (tests, the demo) replaces what ``settings`` would build.

    Without configured API keys one random key is made for this instance (``app.state.api_keys``; the
    ``serve`` command prints it)."""
    settings = settings or ServingSettings()
    service = service or build_service(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if service.feature_log is not None:  # write what is buffered before the process ends
            service.feature_log.close()
        service.store.close()
        service.metrics.close()

    app = FastAPIOffline(
        static_url=DOCS_ASSETS,
        title="adsformer ranking service",
        version=__version__,
        description="Personalized sponsored-search ads: user action streams in, ranked and priced ads out.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.service = service
    app.state.api_keys = tuple(settings.api_keys) or (secrets.token_urlsafe(16),)
    app.state.rank_limiter = anyio.CapacityLimiter(settings.rank_concurrency)  # see routers/rank.py
    for module in (events, rank, health, metrics):
        app.include_router(module.router)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        raw = exc.errors()
        errors = validation_errors(raw)
        return JSONResponse(
            status_code=422, content={"detail": errors, "message": error_message(errors, len(raw))}
        )

    app.add_middleware(
        RequestGuard,
        metrics=service.metrics,
        max_body_bytes=settings.max_body_bytes,
        paths=[
            r.path for m in (events, rank, health, metrics) for r in m.router.routes if hasattr(r, "path")
        ],
    )
    return app


def app_from_env() -> FastAPI:
    """The app configured by ``ADSFORMER_*`` environment variables (for ``uvicorn --factory``, also with
    ``--workers``): the process prepared (torch threads, malloc), the loaded objects frozen."""
    settings = ServingSettings()
    prepare_process(settings)
    app = create_app(settings)
    freeze_loaded_objects()
    return app
