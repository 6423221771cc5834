"""``POST /rank``: ranked, priced ads for a query and/or a context listing, personalized by the user's
live sequences."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, HTTPException, status

from adsformer.serving.deps import ServiceDep, SettingsDep
from adsformer.serving.ranking import RankQuery
from adsformer.serving.schemas import AdOut, RankRequest, RankResponse

router = APIRouter(tags=["rank"])


@router.post("/rank", response_model=RankResponse)
def post_rank(body: RankRequest, service: ServiceDep, settings: SettingsDep) -> RankResponse:
    """Retrieve candidates, score them (calibrated pCTR, pPCCVR), rank by value and price by second price.

    When the online store cannot be reached the ranking is not personalized and says so
    (``personalized: false``, ``fallback_reason``); it is never an error."""
    if body.n > settings.max_ads:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=[
                {
                    "type": "less_than_equal",
                    "loc": ["body", "n"],
                    "msg": f"n must be <= {settings.max_ads} (max_ads)",
                    "input": body.n,
                }
            ],
        )
    out = service.rank(
        RankQuery(
            query=body.query,
            listing_id=body.listing_id,
            user_key=body.user_key,
            n=body.n,
            ts=body.ts,
            context=body.context,
        )
    )
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
