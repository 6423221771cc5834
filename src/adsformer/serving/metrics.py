"""Prometheus metrics of one service instance (its own registry, so several apps can live in one process).

Under ``adsformer serve --workers N`` every worker process writes its values to files in the directory
named by ``PROMETHEUS_MULTIPROC_DIR`` (set by the parent before the workers start), and ``/metrics``, from
whichever worker answers, renders the sum over all of them (:func:`multiprocess_dir`): every response of
every worker is counted once.
"""

from __future__ import annotations

import os
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

#: The environment variable prometheus_client reads (at import) to keep values in per-process files
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The directory worker processes share their metric values through; None for a single process."""
    return os.environ.get(MULTIPROC_ENV) or None


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
            "adsformer_store_up",
            "1 when the online store answered its last ping.",
            registry=r,
            multiprocess_mode="livemostrecent",
        )
        self.started = Gauge(
            "adsformer_process_start_time_seconds",
            "Start time (Unix seconds) of the serving process; one series per worker (label pid) with "
            "--workers.",
            registry=r,
            multiprocess_mode="liveall",
        )
        self.started.set(time.time())

    def render(self) -> bytes:
        """The text exposition: this instance's registry, or every worker's values summed."""
        directory = multiprocess_dir()
        if directory is None:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        MultiProcessCollector(merged, path=directory)
        return generate_latest(merged)

    def close(self) -> None:
        """A worker that ends drops its live gauges (its counters keep counting in the sums)."""
        if multiprocess_dir() is not None:
            mark_process_dead(os.getpid())
