"""Assemble a :class:`~adsformer.serving.ranking.RankingService` from :class:`ServingSettings`: the catalog,
the runs, the retriever (the index, else :class:`~adsformer.serving.candidates.CatalogRetriever`), the
online store (Redis, else in-process), the cache and the feature log."""

from __future__ import annotations

from pathlib import Path

from adsformer.serving.auction import AuctionConfig
from adsformer.serving.cache import ScoreCache
from adsformer.serving.candidates import CandidateSource, CatalogRetriever
from adsformer.serving.catalog import Catalog, CatalogError
from adsformer.serving.feature_log import FeatureLog
from adsformer.serving.metrics import ServingMetrics
from adsformer.serving.ranking import RankingService, store_spec_for
from adsformer.serving.scoring import ServingModel
from adsformer.serving.settings import ServingSettings
from adsformer.serving.store import InMemoryStore, OnlineStore, StoreSpec


def load_catalog(settings: ServingSettings) -> Catalog:
    bounds = {
        "default_bid": settings.default_bid,
        "max_bid": settings.max_bid,
        "max_price": settings.max_price,
    }
    if settings.catalog is not None:
        return Catalog.load(settings.catalog, **bounds)
    if settings.index is not None and (settings.index / "listings.parquet").exists():
        return Catalog.load(settings.index / "listings.parquet", **bounds)
    raise CatalogError(
        "serving needs the listings' attributes: give --catalog DATASET_DIR (or a listings Parquet file)"
    )


def load_retriever(settings: ServingSettings, catalog: Catalog) -> CandidateSource:
    if settings.index is None:
        return CatalogRetriever(catalog)
    from adsformer.retrieval import Retriever

    retriever: CandidateSource = Retriever.load(settings.index)
    return retriever


def make_store(settings: ServingSettings, spec: StoreSpec) -> OnlineStore:
    if settings.redis_url:
        from adsformer.serving.redis_store import RedisStore

        return RedisStore(
            settings.redis_url,
            spec,
            prefix=settings.redis_prefix,
            timeout_s=settings.redis_timeout_s,
            write_timeout_s=settings.redis_write_timeout_s,
            retry_s=settings.redis_retry_s,
        )
    return InMemoryStore(spec)


def build_service(
    settings: ServingSettings,
    *,
    catalog: Catalog | None = None,
    retriever: CandidateSource | None = None,
    store: OnlineStore | None = None,
    metrics: ServingMetrics | None = None,
) -> RankingService:
    """Everything from ``settings``; any part given here is used instead (tests, the demo)."""
    if settings.run is None:
        raise FileNotFoundError("serving needs a CTR run: give --run RUN_DIR (or ADSFORMER_RUN)")
    catalog = catalog or load_catalog(settings)
    mode = settings.scoring_mode
    ctr = ServingModel.load(settings.run, catalog, mode=mode)
    pccvr = (
        ServingModel.load(settings.pccvr_run, catalog, mode=mode) if settings.pccvr_run is not None else None
    )
    models = [m for m in (ctr, pccvr) if m is not None]
    spec = store_spec_for(
        models,
        settings.store_ttl_s,
        settings.stream_maxlen,
        dedupe_ttl_s=settings.dedupe_ttl_s,
        dedupe_max_ids=settings.dedupe_max_ids,
    )
    log = (
        FeatureLog(
            Path(settings.feature_log_dir),
            rotate_rows=settings.log_rotate_rows,
            rotate_s=settings.log_rotate_s,
        )
        if settings.feature_log_dir is not None
        else None
    )
    return RankingService(
        ctr=ctr,
        pccvr=pccvr,
        retriever=retriever or load_retriever(settings, catalog),
        store=store or make_store(settings, spec),
        catalog=catalog,
        cache=ScoreCache(settings.cache_ttl_s, settings.cache_max_entries, settings.cache_max_bytes),
        feature_log=log,
        metrics=metrics or ServingMetrics(),
        auction=AuctionConfig(settings.reserve_price, settings.pccvr_exponent, settings.pccvr_reference),
        max_candidates=settings.max_candidates,
        default_bid=settings.default_bid,
        scoring_concurrency=settings.scoring_concurrency,
        scoring_wait_s=settings.scoring_wait_s,
        event_max_age_s=settings.event_max_age_s,
        event_max_future_s=settings.event_max_future_s,
        extra_actions=settings.extra_actions,
    )
