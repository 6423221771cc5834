"""The ranking service: events in, ranked and priced ads out. Independent of the web layer.

``ingest(key, events)``: check the events (an action word the service knows -- the standard ones, the
runs' pairs', the catalog's and ``extra_actions`` --, a time within ``event_max_age_s`` before and
``event_max_future_s`` after the server clock; else :class:`EventsRejectedError` naming each bad field), derive
each (entity, action) pair's entries from them (enriched from the catalog), append them to the online store
at the server clock (which also appends the events to its stream, skips events whose ``event_id`` it
already stored, and bumps the user's version), log the events stored.

``rank(request)``:

1. the user's version stamp in the store (epoch and version; a store failure -> the non-personalized path,
   flagged), only when the score cache is on: with it off, step 4's read carries the version (one store
   round trip a request);
2. the score cache, keyed by user, version stamp, query, context listing, ads wanted and context features
   (the epoch changes whenever the version counter could have started again: a ranking cached for the
   user's old sequences is never served for new ones);
3. retrieval: up to ``max_candidates`` listings with budget (the context listing itself excluded);
4. the user's sequences from the store, cut to each model's window at the request time;
5. features and calibrated probabilities of the CTR model and, when given, the PCCVR model (fast path;
   at most ``scoring_concurrency`` requests score at once, the others wait their turn, at most
   ``scoring_wait_s``, then :class:`OverloadedError`);
6. value scores and the second-price auction (:mod:`adsformer.serving.auction`);
7. the feature log (request, sequences used, served ads) and the cache.

Without a user or browser id, or when the store cannot be reached, the user's sequences are empty: the
models' prediction for a user without history, i.e. a non-personalized ranking, with ``personalized``
false and the reason.
"""

from __future__ import annotations

import numbers
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from adsformer.data.features import MERGED_PAIR, Pair
from adsformer.data.schema import STANDARD_ACTIONS
from adsformer.serving.auction import AuctionConfig, pccvr_factor, run_auction
from adsformer.serving.cache import ScoreCache
from adsformer.serving.candidates import CandidateSource
from adsformer.serving.catalog import Catalog
from adsformer.serving.feature_log import FeatureLog, served_rows
from adsformer.serving.metrics import ServingMetrics
from adsformer.serving.online_features import RequestFeatures, RequestMemo, sequence_items
from adsformer.serving.outcome import RankedAd, RankOutcome, RankQuery
from adsformer.serving.scoring import ServingModel
from adsformer.serving.store import (
    MAX_TS,
    Appended,
    OnlineStore,
    StoreSpec,
    StoreUnavailableError,
    UserState,
    VersionStamp,
)

NO_ID = "no user or browser id"
STORE_DOWN = "online store unavailable"


class OverloadedError(RuntimeError):
    """No scoring slot freed up in time: the request is shed (HTTP 503, retry later)."""


class EventsRejectedError(ValueError):
    """Events the service refuses; ``errors`` name each bad field as pydantic does (``type``, ``loc`` --
    ``(index, field)`` within the batch --, ``msg``)."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors))


def store_spec_for(
    models: Sequence[ServingModel],
    ttl_s: int | None = None,
    stream_maxlen: int = 1_000_000,
    *,
    dedupe_ttl_s: int = 86_400,
    dedupe_max_ids: int = 10_000,
) -> StoreSpec:
    """The store must keep the longest window and length any served model reads."""
    window = max(m.online.window_s for m in models)
    max_len = max(m.online.max_len for m in models)
    return StoreSpec(
        window,
        max_len,
        ttl_s or 2 * window,
        stream_maxlen,
        dedupe_ttl_s=dedupe_ttl_s,
        dedupe_max_ids=dedupe_max_ids,
    )


class RankingService:
    """Events in (:meth:`ingest`), ranked and priced ads out (:meth:`rank`); thread-safe."""

    def __init__(
        self,
        *,
        ctr: ServingModel,
        pccvr: ServingModel | None,
        retriever: CandidateSource,
        store: OnlineStore,
        catalog: Catalog,
        cache: ScoreCache | None = None,
        feature_log: FeatureLog | None = None,
        metrics: ServingMetrics | None = None,
        auction: AuctionConfig | None = None,
        max_candidates: int = 600,
        default_bid: float = 0.3,
        scoring_concurrency: int = 1,
        scoring_wait_s: float = 2.0,
        event_max_age_s: int = 86_400,
        event_max_future_s: int = 300,
        extra_actions: Sequence[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        if ctr.task != "ctr":
            raise ValueError(f"the CTR run must be a ctr run, got a {ctr.task} run ({ctr.name})")
        if pccvr is not None and pccvr.task != "pccvr":
            raise ValueError(f"the PCCVR run must be a pccvr run, got a {pccvr.task} run ({pccvr.name})")
        self.ctr, self.pccvr = ctr, pccvr
        self.models = [m for m in (ctr, pccvr) if m is not None]
        self.pairs = sorted({p for m in self.models for p in m.pairs})
        self.retriever, self.store, self.catalog = retriever, store, catalog
        self.cache = cache if cache is not None else ScoreCache(0)
        self.feature_log = feature_log
        self.metrics = metrics or ServingMetrics()
        self.auction = auction or AuctionConfig()
        self.max_candidates = max_candidates
        self.default_bid = default_bid
        self.clock = clock
        # Requests beyond this many wait for the models instead of all computing at once: on a few cores,
        # concurrent scoring threads only slow each other down (caches, scheduling) and queues build up.
        self._scoring = threading.BoundedSemaphore(max(1, scoring_concurrency))
        self.scoring_wait_s = scoring_wait_s
        self.event_max_age_s, self.event_max_future_s = int(event_max_age_s), int(event_max_future_s)
        #: action words POST /events accepts
        self.actions: frozenset[str] = frozenset(
            {
                *STANDARD_ACTIONS,
                *(Pair.parse(p).action for p in self.pairs if p != MERGED_PAIR),
                *catalog.actions,
                *extra_actions,
            }
        )
        #: request context features the runs read: name -> "text" (c_*) or "number" (f_*)
        self.context_features: dict[str, str] = {
            **{c: "text" for m in self.models for c in m.online.cat_names},
            **{f: "number" for m in self.models for f in m.online.dense_stats if f.startswith("f_")},
        }

    # -- events ----------------------------------------------------------------------------------------
    def check_events(self, events: Sequence[Mapping[str, Any]], now: int) -> None:
        """Raise :class:`EventsRejectedError` naming every event whose action word is unknown or whose time is
        not within ``event_max_age_s`` before and ``event_max_future_s`` after ``now``."""
        errors: list[dict[str, Any]] = []
        low, high = now - self.event_max_age_s, now + self.event_max_future_s
        for i, event in enumerate(events):
            ts = event.get("ts")
            integral = isinstance(ts, numbers.Integral) and not isinstance(ts, bool)
            if not integral or not low <= int(ts) <= high:  # type: ignore[arg-type]
                errors.append(
                    {
                        "type": "ts_out_of_range",
                        "loc": (i, "ts"),
                        "msg": f"ts {ts!r} is not within {self.event_max_age_s} s before "
                        f"(event_max_age_s) and {self.event_max_future_s} s after (event_max_future_s) the "
                        f"server clock {now} (Unix seconds)",
                    }
                )
            action = event.get("action")
            if action not in self.actions:
                errors.append(
                    {
                        "type": "unknown_action",
                        "loc": (i, "action"),
                        "msg": f"unknown action {str(action)[:64]!r}; allowed: {', '.join(sorted(self.actions))}",
                    }
                )
        if errors:
            raise EventsRejectedError(errors)

    def ingest(self, user_key: str, events: Sequence[Mapping[str, Any]]) -> Appended:
        """Apply ``events`` (arrival order) to the user's sequences at the server clock; returns what the
        store stored (events and entries, duplicates skipped, the new version). Raises
        :class:`EventsRejectedError` for bad events (nothing is stored) and :class:`StoreUnavailableError` when
        the store cannot take them (they may or may not be stored: retry with the same event ids)."""
        now = int(self.clock())
        self.check_events(events, now)
        # each entry tied to its event (the store skips a duplicate event's entries): sequence_items copies
        # an event's ts into its entries, so it is given the events' positions as times, then the real times
        tagged = [{**e, "ts": i} for i, e in enumerate(events)]
        items = [
            replace(item, ts=int(events[item.ts]["ts"]), event=item.ts)
            for item in sequence_items(tagged, self.pairs, self.catalog)
        ]
        raw = [
            {
                k: e.get(k)
                for k in ("ts", "action", "listing_id", "shop_id", "taxonomy_id", "query", "event_id")
            }
            for e in events
        ]
        try:
            out = self.store.append(user_key, items, raw, now=now)
        except StoreUnavailableError:
            self.metrics.store_errors.labels("append").inc()
            raise
        self.metrics.events.inc(out.events)
        self.metrics.duplicate_events.inc(len(out.duplicates))
        if self.feature_log is not None and out.events:
            skip = set(out.duplicates)
            self.feature_log.log(
                "events",
                [
                    {"user_id": user_key, **{k: v for k, v in e.items() if k != "event_id"}}
                    for i, e in enumerate(raw)
                    if i not in skip
                ],
            )
        return out

    def check_context(self, context: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Errors (pydantic style, ``loc`` = ``(name,)``) for context features no run reads or of the wrong
        kind (``c_*`` text, ``f_*`` numbers); empty when the context is fine."""
        errors = []
        known = ", ".join(sorted(self.context_features)) or "none"
        for name, value in context.items():
            kind = self.context_features.get(name)
            if kind is None:
                errors.append(
                    {
                        "type": "unknown_context_feature",
                        "loc": (name,),
                        "msg": f"no served run reads context feature {name[:64]!r}; known: {known}",
                    }
                )
            elif (kind == "text") != isinstance(value, str):
                errors.append(
                    {
                        "type": "context_feature_type",
                        "loc": (name,),
                        "msg": f"{name} is a {'text' if kind == 'text' else 'number'} feature",
                    }
                )
        return errors

    # -- ranking ---------------------------------------------------------------------------------------
    def rank(self, q: RankQuery) -> RankOutcome:
        """Ranked, priced ads for ``q``: the stages of the module docstring, in order."""
        r = self._begin(q)
        hit = self._cached(r)
        if hit is not None:
            return hit
        candidates, retrieval_note = self._retrieve(r)
        state = self._user_state(r)
        self._count(r, candidates)
        ids = [c.listing_id for c in candidates]
        bids = self.bids(ids)
        feats = self._features(r, ids, bids, state)
        p_ctr, p_pccvr = self._score(r, feats, ids)
        ads = self._auction(r, candidates, bids, p_ctr, p_pccvr)
        return self._assemble(r, ads, len(ids), state, feats[0].sequences, retrieval_note)

    def _begin(self, q: RankQuery) -> _Request:
        """The request's time (``q.ts``, else the server clock; refused outside [0, MAX_TS]) and who it is
        for: without a user or browser id it is not personalized."""
        start = time.perf_counter()
        now = int(q.ts) if q.ts is not None else int(self.clock())
        if not 0 <= now <= MAX_TS:
            raise ValueError(f"request time {now} is outside [0, {MAX_TS}]")
        return _Request(q, now, start, q.user_key is not None, None if q.user_key else NO_ID)

    def _cached(self, r: _Request) -> RankOutcome | None:
        """Stages 1-2: the user's version stamp (only with the cache on: else the read carries the version;
        a store failure -> not personalized) and the cache; a hit is logged and answered as is."""
        q = r.q
        if q.user_key is not None and self.cache.enabled:  # the cache key needs it; else the read has it
            try:
                r.stamp = self.store.stamp(q.user_key)
            except StoreUnavailableError:
                r.fall_back(STORE_DOWN)
                self.metrics.store_errors.labels("version").inc()
        r.version = r.stamp.version
        r.key = self._cache_key(q, r.stamp if r.personalized else VersionStamp("", -1))
        hit = self.cache.get(r.key) if r.cacheable else None
        if hit is None:
            self.metrics.cache.labels("miss").inc()
            return None
        self.metrics.cache.labels("hit").inc()
        out = replace(hit, request_id=_request_id(), cached=True, timings_ms={"total": _ms(r.start)})
        self._log(q, r.now, out, None)
        return out

    def _retrieve(self, r: _Request) -> tuple[list[Any], str | None]:
        """Stage 3: the candidates (:meth:`retrieve`), timed."""
        with self._timed(r, "retrieve"):
            return self.retrieve(r.q)

    def _user_state(self, r: _Request) -> UserState | None:
        """Stage 4: the user's sequences at the request time, when personalized (a store failure -> not
        personalized); its version is the request's."""
        if not (r.personalized and r.q.user_key is not None):
            return None
        state: UserState | None = None
        with self._timed(r, "store"):
            try:
                state = self.store.read(r.q.user_key, self.pairs, r.now)
                r.version = state.version
            except StoreUnavailableError:
                r.fall_back(STORE_DOWN)
                self.metrics.store_errors.labels("read").inc()
        return state

    def _count(self, r: _Request, candidates: Sequence[Any]) -> None:
        """The request's fallback (why it is not personalized), if any, and its number of candidates."""
        if r.reason is not None:
            self.metrics.fallbacks.labels(r.reason).inc()
        self.metrics.candidates.observe(len(candidates))

    def _features(
        self, r: _Request, ids: list[str], bids: np.ndarray, state: UserState | None
    ) -> list[RequestFeatures]:
        """Stage 5a: each model's inputs for the candidates, timed; the runs share the user's encoded sequences
        and the touch signals of the pairs they both read (computed once: :class:`RequestMemo`)."""
        q = r.q
        shared = RequestMemo()
        with self._timed(r, "features"):
            return [
                m.features(
                    ids, query=q.query, state=state, now=r.now, bids=bids, context=q.context, shared=shared
                )
                for m in self.models
            ]

    def _score(
        self, r: _Request, feats: list[RequestFeatures], ids: list[str]
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Stage 5b: calibrated pCTR (B,) and pPCCVR (B,) (None without a PCCVR run), under a scoring slot:
        at most ``scoring_concurrency`` requests on the models at once; a request that waited
        ``scoring_wait_s`` is shed (:class:`OverloadedError`, 503) rather than queue without bound behind
        an overload. The wait and the scoring are timed apart."""
        with self._timed(r, "queue"):
            if not self._scoring.acquire(timeout=self.scoring_wait_s):
                self.metrics.shed.inc()
                raise OverloadedError(f"no scoring slot within {self.scoring_wait_s} s (scoring_wait_s)")
        with self._timed(r, "score"):
            try:
                p_ctr = self.ctr.probabilities(feats[0]) if ids else np.zeros(0)
                p_pccvr = self.pccvr.probabilities(feats[1]) if self.pccvr is not None and ids else None
            finally:
                self._scoring.release()
        return p_ctr, p_pccvr

    def _auction(
        self,
        r: _Request,
        candidates: Sequence[Any],
        bids: np.ndarray,
        p_ctr: np.ndarray,
        p_pccvr: np.ndarray | None,
    ) -> list[RankedAd]:
        """Stage 6: value scores and the second-price auction; the winners as ranked ads, timed."""
        with self._timed(r, "auction"):
            n = len(candidates)
            result = run_auction(bids, p_ctr, pccvr_factor(p_pccvr, n, self.auction), r.q.n, self.auction)
            return [
                RankedAd(
                    listing_id=candidates[i].listing_id,
                    position=place + 1,
                    p_ctr=float(p_ctr[i]),
                    p_pccvr=float(p_pccvr[i]) if p_pccvr is not None else None,
                    value=float(result.value[i]),
                    cpc=float(result.cpc[place]),
                    bid=float(bids[i]),
                    source=candidates[i].source,
                )
                for place, i in enumerate(result.winners.tolist())
            ]

    def _assemble(
        self,
        r: _Request,
        ads: list[RankedAd],
        n_candidates: int,
        state: UserState | None,
        sequences: Mapping[str, list[tuple[int, str]]],
        retrieval_note: str | None,
    ) -> RankOutcome:
        """Stage 7: the outcome (with the total time), the feature log (request, sequences used, served
        ads) and the cache."""
        r.timings["total"] = _ms(r.start)
        out = RankOutcome(
            _request_id(),
            ads,
            r.personalized,
            r.reason,
            False,
            n_candidates,
            r.version,
            state.n_events if state is not None else 0,
            r.timings,
            retrieval_note,
        )
        self._log(r.q, r.now, out, sequences)
        if r.cacheable:
            self.cache.put(r.key, out)
        return out

    def retrieve(self, q: RankQuery) -> tuple[list[Any], str | None]:
        """Candidates for the query text (when given) else the context listing; retrieval's refusal of an
        input (an unknown listing, a query of stop-words) is no error: no candidates, and the reason."""
        if not q.query and q.listing_id is None:
            return [], "give a query or a listing_id"
        by = {"query": q.query} if q.query else {"listing_id": q.listing_id}
        try:
            found = self.retriever.candidates(**by, k=self.max_candidates)
        except ValueError as exc:  # adsformer.retrieval.RetrievalError is a ValueError
            return [], str(exc)
        seen: set[str] = set()
        out = []
        for c in found:
            if c.listing_id not in seen and c.listing_id != q.listing_id:
                seen.add(c.listing_id)
                out.append(c)
        return out[: self.max_candidates], None

    def bids(self, ids: Sequence[str]) -> np.ndarray:
        """(B,) bids of the listings (the default bid for listings the catalog lacks)."""
        rows = self.catalog.row
        bids = self.catalog.bids
        return np.array([bids[rows[i]] if i in rows else self.default_bid for i in ids], np.float64)

    def _cache_key(self, q: RankQuery, stamp: VersionStamp) -> tuple:
        context = tuple(sorted((k, str(v)) for k, v in q.context.items()))
        return (q.user_key, stamp.epoch, stamp.version, q.query, q.listing_id, q.n, context, q.ts)

    @contextmanager
    def _timed(self, r: _Request, stage: str) -> Iterator[None]:
        """Time the block as ``stage``: the request's ``timings[stage]`` (ms) and the stage latency metric;
        a block that raises records nothing."""
        t = time.perf_counter()
        yield
        seconds = time.perf_counter() - t
        self.metrics.stage_latency.labels(stage).observe(seconds)
        r.timings[stage] = seconds * 1e3

    def _log(
        self, q: RankQuery, now: int, out: RankOutcome, sequences: Mapping[str, list[tuple[int, str]]] | None
    ) -> None:
        if self.feature_log is None:
            return
        runs = (self.ctr.name, self.pccvr.name if self.pccvr is not None else None)
        impressions, request = served_rows(q, now, out, sequences, runs)
        self.feature_log.log("impressions", impressions)
        self.feature_log.log("requests", [request])


@dataclass
class _Request:
    """One ranking request as its stages see it: when and for whom, whether it is still personalized (a
    store failure turns that off, with the reason), the version stamp and version it is scored at, its
    cache key and the stage timings (ms) so far."""

    q: RankQuery
    now: int
    start: float  # time.perf_counter() at arrival
    personalized: bool
    reason: str | None
    stamp: VersionStamp = field(default_factory=lambda: VersionStamp("", 0))  # none read (yet)
    version: int = 0
    key: tuple = ()
    timings: dict[str, float] = field(default_factory=dict)

    def fall_back(self, reason: str) -> None:
        """Serve the request without the user's sequences, saying why."""
        self.personalized, self.reason = False, reason

    @property
    def cacheable(self) -> bool:
        """A ranking may be cached (and a cached one served) when personalized, or for nobody in particular;
        never for a user whose history could not be read."""
        return self.personalized or self.q.user_key is None


def _request_id() -> str:
    return uuid.uuid4().hex


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1e3
