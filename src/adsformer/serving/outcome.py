"""What a ranking request asks and what it gets (plain data, shared by the service and the feature log)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RankQuery:
    query: str | None = None
    listing_id: str | None = None  # the page's listing (listing-to-listing ads)
    user_key: str | None = None  # "user:ID" or "browser:ID"
    n: int = 10
    ts: int | None = None  # request time (default: now)
    context: Mapping[str, Any] = field(default_factory=dict)  # impression-level c_* / f_* features


@dataclass(frozen=True)
class RankedAd:
    listing_id: str
    position: int
    p_ctr: float
    p_pccvr: float | None
    value: float
    cpc: float
    bid: float
    source: str


@dataclass(frozen=True)
class RankOutcome:
    request_id: str
    ads: list[RankedAd]
    personalized: bool
    fallback_reason: str | None
    cached: bool
    candidates: int
    version: int
    history_events: int
    timings_ms: dict[str, float]
    retrieval_note: str | None = None  # why retrieval returned nothing, when it refused the input
