"""The FastAPI application factory: :func:`create_app`.

Routes (OpenAPI at ``/docs`` and ``/openapi.json``): ``POST /events`` (API key), ``POST /rank``,
``GET /healthz``, ``GET /metrics``. Malformed bodies get a 422 whose ``detail`` lists every bad field
(``loc``) and whose ``message`` repeats them in one line. ``uvicorn --factory
adsformer.serving.app:app_from_env`` serves the app configured by ``ADSFORMER_*`` variables.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from adsformer import __version__
from adsformer.serving.build import build_service
from adsformer.serving.ranking import RankingService
from adsformer.serving.routers import events, health, metrics, rank
from adsformer.serving.settings import ServingSettings


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

    app = FastAPI(
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
        errors = jsonable_encoder(exc.errors())
        fields = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors)
        return JSONResponse(
            status_code=422, content={"detail": errors, "message": f"invalid request: {fields}"}
        )

    @app.middleware("http")
    async def _count(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        start = time.perf_counter()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "<unmatched>")
        service.metrics.requests.labels(route, str(response.status_code)).inc()
        service.metrics.http_latency.labels(route).observe(time.perf_counter() - start)
        return response

    return app


def app_from_env() -> FastAPI:
    """The app configured by ``ADSFORMER_*`` environment variables (for ``uvicorn --factory``)."""
    return create_app(ServingSettings())
