"""``GET /metrics``: Prometheus text exposition of the instance's metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response

from adsformer.serving.deps import MetricsDep

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response)
def metrics(m: MetricsDep) -> Response:
    return Response(content=m.render(), media_type=m.content_type)
