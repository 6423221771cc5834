"""Request and response bodies of the HTTP API (pydantic; they make the OpenAPI document).

Exactly one of ``user_id`` (a logged-in user) and ``browser_id`` (a logged-out browser) names whose events
these are; a ranking request may name neither (then it is not personalized). Ids are free strings: ids
never seen map to out-of-vocabulary rows.

Every input is bounded here, before it reaches the store or the cache: strings by length (and valid
Unicode), times to integer Unix seconds in ``[0, MAX_TS]``, numbers finite, the request context to
:data:`MAX_CONTEXT` features of known shape. What depends on the served runs (action words, context feature
names, event times against the server clock) is checked by the service and reported the same way.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from adsformer.serving.store import MAX_TS

MAX_CONTEXT = 16  # context features per ranking request

Id = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Action = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z_]*$", max_length=64)]
EventId = Annotated[str, StringConstraints(pattern=r"^[!-~]+$", min_length=1, max_length=128)]
ContextName = Annotated[str, StringConstraints(pattern=r"^[cf]_[A-Za-z0-9_]{1,62}$")]
MAX_CONTEXT_TEXT = 256


def _context_value(v: Any) -> str | float:
    """Text of at most 256 characters (``c_*``) or a finite number (``f_*``): nothing else."""
    if isinstance(v, str):
        if len(v) > MAX_CONTEXT_TEXT:
            raise ValueError(f"text context features have at most {MAX_CONTEXT_TEXT} characters")
        v.encode("utf-8")  # a lone surrogate raises UnicodeEncodeError, a ValueError
        return v
    if isinstance(v, int | float) and not isinstance(v, bool):
        try:
            x = float(v)
        except OverflowError:
            x = math.inf
        if math.isfinite(x):
            return x
    raise ValueError("context features are text (c_*) or finite numbers (f_*)")


ContextValue = Annotated[
    str | float,
    PlainValidator(_context_value),
    WithJsonSchema({"anyOf": [{"type": "string", "maxLength": MAX_CONTEXT_TEXT}, {"type": "number"}]}),
]


def _seconds(v: int) -> int:
    if v > MAX_TS:
        raise ValueError(
            f"must be Unix seconds, at most {MAX_TS} (a time in milliseconds is about 1000 times larger)"
        )
    return v


Seconds = Annotated[int, Field(ge=0), AfterValidator(_seconds)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class _Who(_Body):
    user_id: Id | None = Field(None, description="Logged-in user id.")
    browser_id: Id | None = Field(None, description="Logged-out browser id.")

    @property
    def user_key(self) -> str | None:
        if self.user_id is not None:
            return f"user:{self.user_id}"
        if self.browser_id is not None:
            return f"browser:{self.browser_id}"
        return None


class EventIn(_Body):
    ts: Seconds = Field(
        ...,
        description="Unix seconds (UTC) of the action; within the server's event_max_age_s before and "
        "event_max_future_s after its clock.",
    )
    action: Action = Field(..., description="view, favorite, cart_add, purchase, search, ...")
    event_id: EventId | None = Field(
        None,
        description="The client's key for this event (printable ASCII): a retried event with the same id "
        "is stored once.",
    )
    listing_id: Id | None = None
    shop_id: Id | None = None
    taxonomy_id: Id | None = None
    query: Annotated[str, StringConstraints(max_length=512)] | None = Field(None, description="Search text.")


class EventsRequest(_Who):
    events: list[EventIn] = Field(..., min_length=1, description="Actions in the order they happened.")

    @model_validator(mode="after")
    def _one_id(self) -> EventsRequest:
        if (self.user_id is None) == (self.browser_id is None):
            raise ValueError("give exactly one of user_id or browser_id")
        return self


class EventsResponse(BaseModel):
    accepted: int = Field(..., description="Events accepted: stored now, or before (duplicates).")
    stored: int = Field(..., description="Events stored by this request.")
    duplicates: int = Field(..., description="Events skipped: their event_id was stored before.")
    entries: int = Field(..., description="Sequence entries they produced (one per configured pair).")
    user_key: str
    version: int = Field(..., description="The user's sequence version after this batch.")


class RankRequest(_Who):
    query: Annotated[str, StringConstraints(max_length=512)] | None = Field(None, description="Search text.")
    listing_id: Id | None = Field(None, description="The page's listing (listing-to-listing ads).")
    n: int = Field(10, ge=1, description="Number of ads wanted (at most the server's max_ads).")
    ts: Seconds | None = Field(None, description="Request time, Unix seconds (default: the server clock).")
    context: dict[ContextName, ContextValue] = Field(
        default_factory=dict,
        max_length=MAX_CONTEXT,
        description="Impression-level features the served runs read: c_* (text) and f_* (numbers).",
    )

    @field_validator("query")
    @classmethod
    def _blank_is_none(cls, v: str | None) -> str | None:
        return v if v is None or v.strip() else None

    @model_validator(mode="after")
    def _what(self) -> RankRequest:
        if self.user_id is not None and self.browser_id is not None:
            raise ValueError("give at most one of user_id or browser_id")
        if self.query is None and self.listing_id is None:
            raise ValueError("give a query or a listing_id (or both)")
        return self


class AdOut(BaseModel):
    listing_id: str
    position: int = Field(..., description="1 = top.")
    p_ctr: float = Field(..., description="Calibrated P(click).")
    p_pccvr: float | None = Field(
        ..., description="Calibrated P(purchase | click); null without a PCCVR run."
    )
    value: float = Field(..., description="bid x pCTR x PCCVR factor.")
    cpc: float = Field(..., description="Second-price cost per click (reserve <= cpc <= bid).")
    bid: float
    source: str = Field(..., description="The retrieval source that found it.")


class RankResponse(BaseModel):
    request_id: str
    ads: list[AdOut]
    personalized: bool = Field(..., description="The user's live sequences were used.")
    fallback_reason: str | None = Field(None, description="Why not personalized, when not.")
    cached: bool
    candidates: int = Field(..., description="Candidates scored.")
    history_events: int = Field(..., description="Sequence entries of the user in the window.")
    version: int
    retrieval_note: str | None = None
    timings_ms: dict[str, float]


class HealthResponse(BaseModel):
    status: str
    store: str
    store_ok: bool
    ctr_run: str
    pccvr_run: str | None
    retriever: str
    listings: int
