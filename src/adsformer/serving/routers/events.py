"""``POST /events``: a batch of one user's (or browser's) actions into the online store."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from adsformer.serving.deps import ApiKeyDep, ServiceDep, SettingsDep
from adsformer.serving.schemas import EventsRequest, EventsResponse
from adsformer.serving.store import StoreUnavailableError

router = APIRouter(tags=["events"])


@router.post(
    "/events",
    response_model=EventsResponse,
    responses={
        401: {"description": "Missing or invalid API key."},
        413: {"description": "More events than the server's max_events_per_batch."},
        503: {"description": "The online store is unavailable; retry later."},
    },
)
def post_events(
    body: EventsRequest, _key: ApiKeyDep, service: ServiceDep, settings: SettingsDep
) -> EventsResponse:
    """Append the actions (in the order given) to the user's windowed sequences."""
    limit = settings.max_events_per_batch
    if len(body.events) > limit:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            detail=f"batch of {len(body.events)} events exceeds the limit of {limit} per request "
            "(max_events_per_batch); split it",
        )
    key = body.user_key
    assert key is not None  # the schema requires exactly one id
    events = [e.model_dump() for e in body.events]
    try:
        entries, version = service.ingest(key, events)
    except StoreUnavailableError as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, detail=f"online store unavailable: {exc}"
        ) from None
    return EventsResponse(accepted=len(events), entries=entries, user_key=key, version=version)
