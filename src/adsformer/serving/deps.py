"""FastAPI dependencies: the ranking service, the settings, the metrics, and the API-key check."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader

from adsformer.serving.metrics import ServingMetrics
from adsformer.serving.ranking import RankingService
from adsformer.serving.settings import ServingSettings

API_KEY_HEADER = "X-API-Key"
_api_key = APIKeyHeader(
    name=API_KEY_HEADER, auto_error=False, description="A key from the server's api_keys."
)


def get_service(request: Request) -> RankingService:
    service: RankingService = request.app.state.service
    return service


def get_settings(request: Request) -> ServingSettings:
    settings: ServingSettings = request.app.state.settings
    return settings


def get_metrics(request: Request) -> ServingMetrics:
    return get_service(request).metrics


def require_api_key(request: Request, key: Annotated[str | None, Security(_api_key)]) -> str:
    """The request's ``X-API-Key`` must be one of the server's keys (401 otherwise, whatever the header
    holds: keys are compared as bytes, in constant time)."""
    keys: tuple[str, ...] = request.app.state.api_keys
    if key is None or not any(
        secrets.compare_digest(key.encode("utf-8", "backslashreplace"), k.encode("utf-8")) for k in keys
    ):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail=f"missing or invalid API key (send it in the {API_KEY_HEADER} header)",
        )
    return key


ServiceDep = Annotated[RankingService, Depends(get_service)]
SettingsDep = Annotated[ServingSettings, Depends(get_settings)]
MetricsDep = Annotated[ServingMetrics, Depends(get_metrics)]
ApiKeyDep = Annotated[str, Depends(require_api_key)]
