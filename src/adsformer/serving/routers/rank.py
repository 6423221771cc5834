"""``POST /rank``: ranked, priced ads for a query and/or a context listing, personalized by the user's
live sequences.

The handler is asynchronous: it waits for one of ``rank_concurrency`` ranking slots in the event loop
(holding no worker thread, so ``POST /events`` is never stuck behind a queue of rankings), sheds the
request with 503 after ``scoring_wait_s``, then runs the ranking in a worker thread."""

from __future__ import annotations

from dataclasses import asdict

import anyio
from fastapi import APIRouter, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError

from adsformer.serving.deps import ServiceDep, SettingsDep
from adsformer.serving.guard import StrictJSONRoute
from adsformer.serving.outcome import RankQuery
from adsformer.serving.ranking import OverloadedError
from adsformer.serving.schemas import AdOut, RankRequest, RankResponse

router = APIRouter(tags=["rank"], route_class=StrictJSONRoute)


@router.post(
    "/rank",
    response_model=RankResponse,
    responses={503: {"description": "Overloaded: no scoring slot within scoring_wait_s; retry."}},
)
async def post_rank(
    body: RankRequest, request: Request, service: ServiceDep, settings: SettingsDep
) -> RankResponse:
    """Retrieve candidates, score them (calibrated pCTR, pPCCVR), rank by value and price by second price.

    When the online store cannot be reached the ranking is not personalized and says so
    (``personalized: false``, ``fallback_reason``); it is never an error."""
    errors = [{**e, "loc": ("body", "context", *e["loc"])} for e in service.check_context(body.context)]
    if body.n > settings.max_ads:
        errors.append(
            {
                "type": "less_than_equal",
                "loc": ("body", "n"),
                "msg": f"n must be <= {settings.max_ads} (max_ads)",
                "input": body.n,
            }
        )
    if errors:
        raise RequestValidationError(errors)
    query = RankQuery(
        query=body.query,
        listing_id=body.listing_id,
        user_key=body.user_key,
        n=body.n,
        ts=body.ts,
        context=body.context,
    )
    limiter: anyio.CapacityLimiter = request.app.state.rank_limiter
    acquired = False
    with anyio.move_on_after(settings.scoring_wait_s):
        await limiter.acquire()
        acquired = True  # no await in between: a timeout cannot fall after acquire() and before this
    if not acquired:
        service.metrics.shed.inc()
        raise _overloaded(f"no ranking slot within {settings.scoring_wait_s} s (scoring_wait_s)")
    try:
        out = await anyio.to_thread.run_sync(service.rank, query)
    except OverloadedError as exc:
        raise _overloaded(str(exc)) from None
    finally:
        limiter.release()
    return RankResponse(
        request_id=out.request_id,
        ads=[AdOut(**asdict(ad)) for ad in out.ads],
        personalized=out.personalized,
        fallback_reason=out.fallback_reason,
        cached=out.cached,
        candidates=out.candidates,
        history_events=out.history_events,
        version=out.version,
        retrieval_note=out.retrieval_note,
        timings_ms=out.timings_ms,
    )


def _overloaded(why: str) -> HTTPException:
    return HTTPException(
        status.HTTP_503_SERVICE_UNAVAILABLE, detail=f"overloaded: {why}", headers={"Retry-After": "1"}
    )
