"""The service's settings: one pydantic-settings class, read from ``ADSFORMER_*`` environment variables
(``ADSFORMER_RUN``, ``ADSFORMER_REDIS_URL``, ``ADSFORMER_API_KEYS='["k1","k2"]'``, ...) and overridden by
``adsformer serve`` options."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ADSFORMER_", extra="ignore", frozen=True)

    # what to serve
    run: Annotated[Path | None, Field(description="CTR run directory (adsformer train --task ctr).")] = None
    pccvr_run: Annotated[
        Path | None, Field(description="PCCVR run directory; without it the PCCVR factor is 1.")
    ] = None
    index: Annotated[
        Path | None, Field(description="Retrieval index (adsformer index build); else the catalog.")
    ] = None
    catalog: Annotated[
        Path | None,
        Field(
            description="Dataset directory or listings Parquet file with the listings' attributes and bids "
            "(default: the index's listings.parquet).",
        ),
    ] = None
    # online store
    redis_url: Annotated[
        str | None, Field(description="redis://host:port/db; none = the in-process store.")
    ] = None
    redis_prefix: str = "adsformer"
    redis_timeout_s: Annotated[
        float, Field(gt=0, description="Read timeout: a slower Redis means a non-personalized ranking.")
    ] = 0.1
    redis_write_timeout_s: Annotated[float, Field(gt=0, description="Timeout of event writes.")] = 1.0
    redis_retry_s: Annotated[
        float, Field(ge=0, description="After 3 Redis failures in a row, fail fast this long.")
    ] = 1.0
    store_ttl_s: Annotated[
        int | None, Field(ge=1, description="User keys' TTL (default: twice the window).")
    ] = None
    stream_maxlen: Annotated[int, Field(ge=1, description="Events kept in the Redis Stream (approx.).")] = (
        1_000_000
    )
    dedupe_ttl_s: Annotated[
        int, Field(ge=1, description="How long an event_id is remembered (a retry within it is stored once).")
    ] = 86_400
    dedupe_max_ids: Annotated[
        int, Field(ge=1, description="event_ids remembered per user (the oldest are forgotten first).")
    ] = 10_000
    # requests
    api_keys: list[str] = Field(default_factory=list, description="Keys accepted by POST /events.")
    max_body_bytes: Annotated[
        int, Field(ge=1024, description="Largest request body (bytes); larger ones get 413.")
    ] = 1 << 20
    max_events_per_batch: Annotated[int, Field(ge=1, le=100_000)] = 1000
    max_ads: Annotated[int, Field(ge=1)] = 50
    max_candidates: Annotated[int, Field(ge=1)] = 600
    event_max_age_s: Annotated[
        int, Field(ge=1, description="Events dated more than this before the server clock get 422.")
    ] = 86_400
    event_max_future_s: Annotated[
        int, Field(ge=0, description="Events dated more than this after the server clock get 422.")
    ] = 300
    extra_actions: list[str] = Field(
        default_factory=list,
        description="Action words POST /events accepts beyond the standard ones, the runs' pairs' and "
        "the catalog's dataset.json.",
    )
    # cache, auction
    cache_ttl_s: Annotated[float, Field(ge=0, description="Score cache TTL; 0 disables the cache.")] = 5.0
    cache_max_entries: Annotated[int, Field(ge=1)] = 10_000
    cache_max_bytes: Annotated[
        int, Field(ge=1, description="Score cache size bound (estimated bytes of keys and results).")
    ] = 64 << 20
    reserve_price: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.01
    pccvr_exponent: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.5
    pccvr_reference: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 0.1
    default_bid: Annotated[
        float, Field(gt=0, allow_inf_nan=False, description="Bid of listings the catalog has none for.")
    ] = 0.3
    max_bid: Annotated[
        float,
        Field(
            gt=0,
            allow_inf_nan=False,
            description="Largest catalog bid (dollars per click) the catalog may hold.",
        ),
    ] = 100.0
    max_price: Annotated[
        float, Field(gt=0, allow_inf_nan=False, description="Largest listing price the catalog may hold.")
    ] = 1e7
    # feature log, runtime
    feature_log_dir: Annotated[
        Path | None, Field(description="Where served features are logged (Parquet).")
    ] = None
    log_rotate_rows: Annotated[int, Field(ge=1)] = 10_000
    log_rotate_s: Annotated[float, Field(gt=0)] = 60.0
    rank_concurrency: Annotated[
        int, Field(ge=1, description="Rankings in worker threads at once; more wait in the event loop.")
    ] = 2
    scoring_concurrency: Annotated[
        int, Field(ge=1, description="Requests scoring at once (others queue); about the cores per process.")
    ] = 1
    scoring_wait_s: Annotated[
        float, Field(gt=0, description="Longest wait for a ranking slot or the models before a 503.")
    ] = 2.0
    torch_threads: Annotated[
        int, Field(ge=0, description="Intra-op threads for scoring (0 = leave torch's).")
    ] = 1
    scoring_mode: Annotated[
        Literal["exact", "cached-sequence"],
        Field(
            description="How candidates are scored: exact (the run's own scores) or cached-sequence (the "
            "user's sequence encoded once per request, several times faster at hundreds of candidates; "
            "an approximation for a run of the paper's encoder, sequence_sees_target: true -- measure it "
            "with benchmarks/scoring.py first; the same as exact for the default encoder)."
        ),
    ] = "exact"

    @model_validator(mode="after")
    def _consistent(self) -> ServingSettings:
        if self.default_bid > self.max_bid:
            raise ValueError(f"default_bid {self.default_bid} is above max_bid {self.max_bid}")
        if self.reserve_price > self.max_bid:
            raise ValueError(f"reserve_price {self.reserve_price} is above max_bid {self.max_bid}")
        return self
