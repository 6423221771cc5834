"""``GET /healthz``: liveness plus whether the online store answers (degraded, not down, without it)."""

from __future__ import annotations

from fastapi import APIRouter

from adsformer.serving.deps import ServiceDep
from adsformer.serving.schemas import HealthResponse

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthResponse)
def healthz(service: ServiceDep) -> HealthResponse:
    store_ok = service.store.ping()
    service.metrics.store_up.set(1 if store_ok else 0)
    return HealthResponse(
        status="ok" if store_ok else "degraded",
        store=service.store.kind,
        store_ok=store_ok,
        ctr_run=service.ctr.name,
        pccvr_run=service.pccvr.name if service.pccvr is not None else None,
        retriever=type(service.retriever).__name__,
        listings=len(service.catalog),
    )
