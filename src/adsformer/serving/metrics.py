"""Prometheus metrics of one service instance (its own registry, so several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)


class ServingMetrics:
    """Counters and histograms the routers and the ranking service update; ``/metrics`` renders them."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "adsformer_http_requests", "HTTP requests by route and status.", ["route", "status"], registry=r
        )
        self.http_latency = Histogram(
            "adsformer_http_request_seconds",
            "HTTP request latency.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.stage_latency = Histogram(
            "adsformer_rank_stage_seconds",
            "Ranking time per stage (retrieve, store, features, score, auction, log).",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.candidates = Histogram(
            "adsformer_rank_candidates",
            "Candidates scored per ranking request.",
            buckets=(0, 10, 50, 100, 200, 400, 600, 1000),
            registry=r,
        )
        self.cache = Counter(
            "adsformer_score_cache", "Score cache look-ups by result.", ["result"], registry=r
        )
        self.fallbacks = Counter(
            "adsformer_rank_fallbacks", "Non-personalized rankings by reason.", ["reason"], registry=r
        )
        self.shed = Counter(
            "adsformer_rank_shed",
            "Rankings refused (503) after waiting scoring_wait_s for the models.",
            registry=r,
        )
        self.events = Counter("adsformer_events", "Events stored in the online store.", registry=r)
        self.duplicate_events = Counter(
            "adsformer_events_duplicate",
            "Events skipped as already stored (an event_id seen before: a retry).",
            registry=r,
        )
        self.store_errors = Counter(
            "adsformer_store_errors", "Online store operations that failed.", ["operation"], registry=r
        )
        self.store_up = Gauge(
            "adsformer_store_up", "1 when the online store answered its last ping.", registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
