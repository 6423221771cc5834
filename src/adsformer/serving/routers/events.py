"""``POST /events``: a batch of one user's (or browser's) actions into the online store.

What the answers mean:

* **2xx**: the batch was applied, atomically: every event is in the online store (``stored``) or was
  there already (``duplicates``: an ``event_id`` stored before, within the server's ``dedupe_ttl_s``). How
  durable that is depends on the Redis server's persistence settings: with an append-only file fsynced every
  second it survives a Redis restart and, normally, a crash of the Redis process, and a host crash loses at
  most about the last second; without persistence a Redis restart loses it (with the in-process store: it
  lasts until the process ends).
* **4xx**: nothing was stored. 401: a missing or wrong ``X-API-Key``; 413: a body over ``max_body_bytes`` or
  more than ``max_events_per_batch`` events; 422: ``detail`` names every bad field (``loc`` such as
  ``["body", "events", 3, "ts"]``), e.g. a time outside ``event_max_age_s`` before / ``event_max_future_s``
  after the server clock or an action word the service does not know. Do not retry these unchanged.
* **503**: the online store did not answer in time. The batch **may or may not** have been stored (Redis
  may apply it after the timeout). Retry the same batch later (``Retry-After``): events that carry an
  ``event_id`` are then stored exactly once; events without one may be stored twice.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from fastapi.exceptions import RequestValidationError

from adsformer.serving.deps import ApiKeyDep, ServiceDep, SettingsDep
from adsformer.serving.guard import StrictJSONRoute
from adsformer.serving.ranking import EventsRejectedError
from adsformer.serving.schemas import EventsRequest, EventsResponse
from adsformer.serving.store import StoreUnavailableError

router = APIRouter(tags=["events"], route_class=StrictJSONRoute)

STORE_UNAVAILABLE = (
    "online store unavailable: the events may or may not be stored; retry the same batch later "
    "(events with an event_id are stored once)"
)


@router.post(
    "/events",
    response_model=EventsResponse,
    responses={
        401: {"description": "Missing or invalid API key."},
        413: {"description": "A body over max_body_bytes or more events than max_events_per_batch."},
        422: {"description": "Bad fields, each named (times out of range, unknown actions, ...)."},
        503: {"description": "The online store is unavailable; maybe stored: retry with the same event_ids."},
    },
)
def post_events(
    body: EventsRequest, _key: ApiKeyDep, service: ServiceDep, settings: SettingsDep
) -> EventsResponse:
    """Append the actions (in the order given) to the user's windowed sequences (see the module
    docstring for what the status codes mean)."""
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
        out = service.ingest(key, events)
    except EventsRejectedError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", "events", *e["loc"])} for e in exc.errors]
        ) from None
    except StoreUnavailableError:  # the message names the server: logs only, never the client
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, detail=STORE_UNAVAILABLE, headers={"Retry-After": "1"}
        ) from None
    return EventsResponse(
        accepted=len(events),
        stored=out.events,
        duplicates=len(out.duplicates),
        entries=out.entries,
        user_key=key,
        version=out.version,
    )
