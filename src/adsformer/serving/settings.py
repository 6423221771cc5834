"""The service's settings: one pydantic-settings class, read from ``ADSFORMER_*`` environment variables
(``ADSFORMER_RUN``, ``ADSFORMER_REDIS_URL``, ``ADSFORMER_API_KEYS='["k1","k2"]'``, ...) and overridden by
``adsformer serve`` options."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field
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
    # requests
    api_keys: list[str] = Field(default_factory=list, description="Keys accepted by POST /events.")
    max_events_per_batch: Annotated[int, Field(ge=1)] = 1000
    max_ads: Annotated[int, Field(ge=1)] = 50
    max_candidates: Annotated[int, Field(ge=1)] = 600
    # cache, auction
    cache_ttl_s: Annotated[float, Field(ge=0, description="Score cache TTL; 0 disables the cache.")] = 5.0
    cache_max_entries: Annotated[int, Field(ge=1)] = 10_000
    reserve_price: Annotated[float, Field(ge=0)] = 0.01
    pccvr_exponent: Annotated[float, Field(ge=0)] = 0.5
    pccvr_reference: Annotated[float, Field(gt=0)] = 0.1
    default_bid: Annotated[float, Field(gt=0, description="Bid of listings the catalog has none for.")] = 0.3
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
