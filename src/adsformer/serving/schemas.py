"""Request and response bodies of the HTTP API (pydantic; they make the OpenAPI document).

Exactly one of ``user_id`` (a logged-in user) and ``browser_id`` (a logged-out browser) names whose events
these are; a ranking request may name neither (then it is not personalized). Ids are free strings: ids
never seen map to out-of-vocabulary rows.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

Id = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Action = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z_]*$", max_length=64)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


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
    ts: int = Field(..., ge=0, description="Unix seconds (UTC) of the action.")
    action: Action = Field(..., description="view, favorite, cart_add, purchase, search, ...")
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
    accepted: int = Field(..., description="Events accepted.")
    entries: int = Field(..., description="Sequence entries they produced (one per configured pair).")
    user_key: str
    version: int = Field(..., description="The user's sequence version after this batch.")


class RankRequest(_Who):
    query: Annotated[str, StringConstraints(max_length=512)] | None = Field(None, description="Search text.")
    listing_id: Id | None = Field(None, description="The page's listing (listing-to-listing ads).")
    n: int = Field(10, ge=1, description="Number of ads wanted (at most the server's max_ads).")
    ts: int | None = Field(None, ge=0, description="Request time, Unix seconds (default: the server clock).")
    context: dict[str, str | float] = Field(
        default_factory=dict, description="Impression-level features: c_* (text) and f_* (numbers)."
    )

    @field_validator("query")
    @classmethod
    def _blank_is_none(cls, v: str | None) -> str | None:
        return v if v is None or v.strip() else None

    @field_validator("context")
    @classmethod
    def _context_names(cls, v: dict[str, Any]) -> dict[str, Any]:
        bad = [k for k in v if not k.startswith(("c_", "f_"))]
        if bad:
            raise ValueError(f"context keys must start with c_ or f_, got {bad}")
        return v

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
