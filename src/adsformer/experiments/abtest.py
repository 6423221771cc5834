"""``adsformer abtest``: a closed-loop online A/B test of ranking runs on the simulator, through the ranking
service.

The simulated users of a dataset written by ``adsformer prepare simulate`` live their week again: the world,
their sessions (with the hidden intents) and browsing and their ad requests are rebuilt from ``truth.json``
(:func:`adsformer.simulator.pipeline.load_behaviour`, checked against the truth files). Each user belongs to
one **arm** by a stable hash of the user id (:func:`assign_arms`); each arm is a ranking service of its own
(:class:`~adsformer.serving.ranking.RankingService` in process on the arm's CTR and optional PCCVR runs, or
a running ``adsformer serve`` reached over HTTP), with its own online store and budgets. In time order, for
every ad request:

1. the user's events since the previous request -- browsing events, and the events the user's own ad
   clicks caused (the click's ``view``, ``cart_add`` and ``purchase`` minutes or hours later) -- go to the
   arm's service (``ingest`` / ``POST /events``; events more than ``event_max_age_s`` old are dropped, as the
   service would refuse them);
2. the service ranks ads for the request's query (``rank`` / ``POST /rank``): retrieval of in-budget
   candidates, the runs' calibrated pCTR (x PCCVR factor), the generalized second-price auction;
3. the user looks at what was **shown**, at the position it was shown: clicks and purchases are drawn from
   the simulator's ground truth (:func:`adsformer.simulator.ads.impression_truth`: examination of the
   position x relevance to the session's hidden intent and the user's recent touches, which include the
   user's earlier ad clicks in this arm -- the loop is closed);
4. each click is charged the auction's CPC, at most what is left of the listing's daily budget; a listing
   whose budget is spent leaves retrieval at once (``set_budget``) until the next simulated day.

Budgets are split between arms by traffic share (each arm spends ``budget / arms`` a day per listing), so
one arm cannot starve the other's auctions. Over HTTP the server's retriever does not know the arm's
budgets: the client asks for ``slots + http_extra`` ads and drops spent listings itself (the positions
close up).

Per arm: impressions, CTR (clicks / impressions), conversion rate (purchases / clicks), revenue (charged
CPC), ROAS (attributed GMS / ad spend), GMS (the price of purchased ad listings), mean CPC, and the lift
of each against the first arm with a 95% interval from a bootstrap over users (the randomization unit;
impressions, revenue and GMS compared per user since arms differ a little in size). Every arm has its own
random stream (``seed``, arm name), so a run is the same for a seed whatever the number of workers.

Letters: R requests, K touches looked back, D simulated days, M summed quantities, B bootstrap resamples.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing as mp
import os
import time
import traceback
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from queue import Empty
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import polars as pl

from adsformer.errors import UserError
from adsformer.io import atomic_dir
from adsformer.simulator.ads import Touches, followup_times, impression_truth, recent_touches
from adsformer.simulator.behaviour import ACTIONS, CART_ADD, PURCHASE, VIEW, Events
from adsformer.simulator.pipeline import Behaviour, load_behaviour

#: Per-arm metrics of ``abtest.json`` (SPEC section 6), each with a lift against the first arm.
METRICS = ("impressions", "ctr", "conversion_rate", "revenue", "roas", "gms", "cpc")
#: Summed per user (and day) for the bootstrap: requests, impressions, clicks, purchases, revenue, GMS.
SUMS = ("requests", "impressions", "clicks", "purchases", "revenue", "gms")
#: The paper's online A/B results (adSformer vs its production baseline, in percent).
PAPER_ONLINE = {"ctr": 2.55, "roas": 5.34, "gms": 4.17}
LABELS = {
    "impressions": "impressions",
    "ctr": "CTR",
    "conversion_rate": "conv. rate",
    "revenue": "revenue",
    "roas": "ROAS",
    "gms": "GMS",
    "cpc": "CPC",
}
RANDOM_KIND = "random"


class AbtestError(UserError):
    """A bad arm, option or service for ``adsformer abtest``."""


# ---------------------------------------------------------------------------------------------- arms
@dataclass(frozen=True)
class ArmSpec:
    """One arm: its name, its CTR run and optional PCCVR run (none: random scores, the ``random`` kind, a
    negative control), and a service URL when the arm is served over HTTP (then the server's runs rank)."""

    name: str
    ctr_run: Path | None = None
    pccvr_run: Path | None = None
    url: str | None = None

    @property
    def kind(self) -> str:
        if self.url is not None:
            return "http"
        return RANDOM_KIND if self.ctr_run is None else "runs"


def parse_arm(text: str) -> ArmSpec:
    """``NAME=RUN_DIR[,PCCVR_RUN]`` or ``NAME=random``."""
    name, sep, rest = text.partition("=")
    name, rest = name.strip(), rest.strip()
    if not sep or not name or not rest:
        raise AbtestError(f"--arm {text!r}: expected NAME=RUN_DIR[,PCCVR_RUN] or NAME=random")
    if not all(c.isalnum() or c in "-_." for c in name):
        raise AbtestError(f"--arm {text!r}: an arm name has letters, digits, '-', '_' and '.' only")
    if rest == RANDOM_KIND:
        return ArmSpec(name)
    parts = [p.strip() for p in rest.split(",")]
    if len(parts) > 2 or not all(parts):
        raise AbtestError(f"--arm {text!r}: expected NAME=RUN_DIR[,PCCVR_RUN]")
    return ArmSpec(name, Path(parts[0]), Path(parts[1]) if len(parts) == 2 else None)


def with_urls(arms: Sequence[ArmSpec], urls: Sequence[str]) -> list[ArmSpec]:
    """Attach ``NAME=URL`` (``--url``) to the named arms."""
    by_name = {a.name: a for a in arms}
    out = dict(by_name)
    for text in urls:
        name, sep, url = text.partition("=")
        name, url = name.strip(), url.strip()
        if not sep or name not in by_name or not url.startswith(("http://", "https://")):
            raise AbtestError(
                f"--url {text!r}: expected NAME=http://HOST:PORT naming one of the arms ({', '.join(by_name)})"
            )
        out[name] = ArmSpec(name, by_name[name].ctr_run, by_name[name].pccvr_run, url.rstrip("/"))
    return [out[a.name] for a in arms]


def check_arms(arms: Sequence[ArmSpec]) -> None:
    if len(arms) < 2:
        raise AbtestError("an A/B test needs two or more --arm (the first is the control)")
    names = [a.name for a in arms]
    if len(set(names)) != len(names):
        raise AbtestError(f"arm names must differ, got {names}")
    for arm in arms:
        if arm.url is not None:
            continue
        for run in (arm.ctr_run, arm.pccvr_run):
            if run is not None and not run.is_dir():
                raise AbtestError(f"arm {arm.name}: run directory {run} not found (adsformer train --out)")


def user_hash(user_ids: Sequence[str], salt: str, purpose: str = "arm") -> np.ndarray:
    """A stable uniform number in [0, 1) per user id (BLAKE2b of ``salt:purpose:id``)."""
    out = np.empty(len(user_ids), np.float64)
    for i, uid in enumerate(user_ids):
        digest = hashlib.blake2b(f"{salt}:{purpose}:{uid}".encode(), digest_size=8).digest()
        out[i] = int.from_bytes(digest, "big") / 2.0**64
    return out


def assign_arms(user_ids: Sequence[str], n_arms: int, salt: str = "adsformer-abtest") -> np.ndarray:
    """The arm (0..n_arms-1) of each user: equal shares of a stable hash of the id, so a user is in the
    same arm in every run with the same salt and number of arms."""
    if n_arms < 1:
        raise ValueError("n_arms must be >= 1")
    return np.minimum((user_hash(user_ids, salt) * n_arms).astype(np.int64), n_arms - 1)


# ---------------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class AbtestConfig:
    """How the experiment runs (everything but the arms and the data)."""

    seed: int = 0  #: clicks, purchases, follow-up times, random scores and the bootstrap
    users: int | None = None  #: at most this many users (a stable hash sample); None = every user
    requests: int | None = None  #: stop after this many ad requests (in time order); None = all
    candidates: int = 200  #: the service's max_candidates (retrieved and scored per request)
    slots: int | None = None  #: ads per request; None = the simulator's slots
    salt: str = "adsformer-abtest"  #: of the user hash that assigns arms
    bootstrap: int = 1000  #: bootstrap resamples of users
    workers: int = 1  #: arms run in this many processes at once (each arm is independent)
    threads: int = 1  #: torch intra-op threads per arm (scoring one request at a time)
    api_key: str | None = None  #: X-API-Key for POST /events over HTTP
    timeout_s: float = 30.0  #: HTTP timeout
    http_extra: int = 8  #: extra ads asked of an HTTP arm, to drop spent listings client-side

    def __post_init__(self) -> None:
        for key in ("users", "requests"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise AbtestError(f"--{key} must be >= 1, got {value}")
        if self.candidates < 1 or (self.slots is not None and self.slots < 1):
            raise AbtestError("--candidates and the slots must be >= 1")
        if self.bootstrap < 10:
            raise AbtestError(f"--bootstrap must be >= 10, got {self.bootstrap}")
        if self.workers < 1 or self.threads < 1 or self.http_extra < 0 or self.timeout_s <= 0:
            raise AbtestError("workers and threads must be >= 1, http_extra >= 0 and timeout_s > 0")


# ---------------------------------------------------------------------------------------------- replay
@dataclass
class Replay:
    """The experiment's population and timeline, shared (read-only) by the arms."""

    data_dir: Path
    behaviour: Behaviour
    user_ids: list[str]  # per simulated user
    arm_of_user: np.ndarray  # (U,) arm index, -1 = not in the experiment
    # the experiment's requests in time order
    r_user: np.ndarray
    r_ts: np.ndarray
    r_query: list[str | None]
    r_node: np.ndarray
    r_leaf: np.ndarray
    r_color: np.ndarray
    r_band: np.ndarray
    touches: Touches  # (R, K) browsing touches before each request
    # browsing events sorted by (user, time); user u's are e_*[u_start[u]:u_start[u + 1]]
    e_ts: np.ndarray
    e_action: np.ndarray
    e_listing: np.ndarray
    e_query: list[str | None]
    u_start: np.ndarray
    listing_ids: list[str]
    budget: np.ndarray  # (N,) daily budget per listing (inf = none)
    price: np.ndarray  # (N,)
    catalog: Any = None  # adsformer.serving.catalog.Catalog, loaded once for the in-process arms

    @property
    def cfg(self) -> Any:
        return self.behaviour.config

    @property
    def n_requests(self) -> int:
        return int(self.r_ts.size)

    def day_of(self, ts: np.ndarray | int) -> Any:
        return np.clip((np.asarray(ts) - self.cfg.start_ts) // 86_400, 0, self.cfg.days - 1)


def prepare_replay(data_dir: Path, n_arms: int, cfg: AbtestConfig, *, load_catalog: bool = True) -> Replay:
    """Rebuild the dataset's world and pick the experiment's users and requests."""
    b = load_behaviour(data_dir)
    world, s, req, ev = b.world, b.sessions, b.requests, b.browsing
    user_ids = b.user_ids().to_list()
    U = len(user_ids)
    arm = assign_arms(user_ids, n_arms, cfg.salt)
    req_user = s.user[req.session].astype(np.int64)
    has_request = np.zeros(U, bool)
    has_request[req_user] = True
    chosen = has_request.copy()
    if cfg.users is not None and cfg.users < int(has_request.sum()):
        candidates = np.flatnonzero(has_request)
        order = np.argsort(user_hash([user_ids[i] for i in candidates], cfg.salt, "sample"), kind="stable")
        chosen = np.zeros(U, bool)
        chosen[candidates[order[: cfg.users]]] = True
    arm_of_user = np.where(chosen, arm, -1)
    keep = np.flatnonzero(chosen[req_user])  # requests are in time order already
    if cfg.requests is not None:
        keep = keep[: cfg.requests]
    if keep.size == 0:
        raise AbtestError(f"{data_dir}: no ad requests to replay")
    r_user, r_ts = req_user[keep], req.ts[keep].astype(np.int64)
    queries = world.tax.join([w[keep] for w in req.words]).to_list()
    touches = recent_touches(b.config, ev, r_user, r_ts)
    # browsing events of the experiment's users, by user then time (stable: same-second events keep order)
    mine = chosen[ev.user] & (ev.ts <= r_ts.max())
    idx = np.flatnonzero(mine)
    idx = idx[np.lexsort((idx, ev.ts[idx], ev.user[idx]))]
    e_user = ev.user[idx].astype(np.int64)
    e_query = world.tax.join([w[idx] for w in ev.words]).to_list()
    listing_ids = [f"l_{i}" for i in range(world.n)]
    catalog = None
    if load_catalog:
        from adsformer.serving.catalog import Catalog

        catalog = Catalog.load(data_dir)
    return Replay(
        data_dir=Path(data_dir),
        behaviour=b,
        user_ids=user_ids,
        arm_of_user=arm_of_user,
        r_user=r_user,
        r_ts=r_ts,
        r_query=[q or None for q in queries],
        r_node=req.node[keep],
        r_leaf=s.leaf[req.session[keep]],
        r_color=s.color[req.session[keep]],
        r_band=s.band[req.session[keep]],
        touches=touches,
        e_ts=ev.ts[idx].astype(np.int64),
        e_action=ev.action[idx],
        e_listing=ev.listing[idx],
        e_query=[q or None for q in e_query],
        u_start=np.searchsorted(e_user, np.arange(U + 1)),
        listing_ids=listing_ids,
        budget=np.asarray(world.budget, np.float64),
        price=np.asarray(world.price, np.float64),
        catalog=catalog,
    )


def user_key(user_id: str) -> str:
    """The service's key: browsers (``b_*``) are logged out."""
    return f"browser:{user_id}" if user_id.startswith("b_") else f"user:{user_id}"


# ---------------------------------------------------------------------------------------------- services
@dataclass(frozen=True)
class ShownAd:
    listing_id: str
    position: int
    cpc: float
    p_ctr: float


class _Clock:
    """The simulated time: the in-process service's and store's clock."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class RandomScorer:
    """A stand-in CTR run whose "probabilities" are uniform noise (the ``random`` arm, a negative control):
    the service still retrieves, filters budgets and prices by second price, but ranks by bid x noise."""

    task = "ctr"

    def __init__(self, seed: int, name: str = RANDOM_KIND, low: float = 0.005, high: float = 0.1) -> None:
        self.name = name
        self.pairs: list[str] = []
        self.rng = np.random.default_rng(seed)
        self.low, self.high = low, high
        self.online = SimpleNamespace(window_s=3600, max_len=1, cat_names=[], dense_stats={})

    def features(self, listing_ids: Sequence[str], **_: Any) -> Any:
        return SimpleNamespace(listing_ids=list(listing_ids), sequences={})

    def probabilities(self, feats: Any) -> np.ndarray:
        return self.rng.uniform(self.low, self.high, len(feats.listing_ids))


class LocalArm:
    """An arm served in this process by :class:`~adsformer.serving.ranking.RankingService` (the service's
    fast scorer, the in-process store, the catalog retriever with live budgets) on the simulated clock."""

    filters_budgets = True

    def __init__(self, spec: ArmSpec, replay: Replay, cfg: AbtestConfig, seed: int) -> None:
        from adsformer.serving.cache import ScoreCache
        from adsformer.serving.candidates import CatalogRetriever
        from adsformer.serving.catalog import Catalog
        from adsformer.serving.ranking import RankingService, store_spec_for
        from adsformer.serving.scoring import ServingModel
        from adsformer.serving.store import InMemoryStore

        catalog = replay.catalog if replay.catalog is not None else Catalog.load(replay.data_dir)
        self.clock = _Clock()
        if spec.ctr_run is None:
            ctr = cast(ServingModel, RandomScorer(seed))
            pccvr = None
        else:
            ctr = ServingModel.load(spec.ctr_run, catalog)
            pccvr = ServingModel.load(spec.pccvr_run, catalog) if spec.pccvr_run is not None else None
        if ctr.task != "ctr" or (pccvr is not None and pccvr.task != "pccvr"):
            raise AbtestError(
                f"arm {spec.name}: expected a ctr run then a pccvr run, got {ctr.task}"
                + (f" and {pccvr.task}" if pccvr is not None else "")
            )
        self.retriever = CatalogRetriever(catalog)
        models = [m for m in (ctr, pccvr) if m is not None]
        self.service = RankingService(
            ctr=ctr,
            pccvr=pccvr,
            retriever=self.retriever,
            store=InMemoryStore(store_spec_for(models), clock=self.clock),
            catalog=catalog,
            cache=ScoreCache(0),
            max_candidates=cfg.candidates,
            clock=self.clock,
        )
        # events older than the store's window would be trimmed as they arrive: not sent
        self.max_age_s = min(self.service.event_max_age_s, self.service.store.spec.window_s)
        self.runs = {"ctr": ctr.name, "pccvr": pccvr.name if pccvr is not None else None}

    def send(self, user_id: str, events: list[dict[str, Any]], now: int) -> None:
        self.clock.now = now
        self.service.ingest(user_key(user_id), events)

    def rank(self, user_id: str, query: str | None, ts: int, n: int) -> tuple[list[ShownAd], bool]:
        from adsformer.serving.outcome import RankQuery

        self.clock.now = ts
        out = self.service.rank(RankQuery(query=query, user_key=user_key(user_id), n=n, ts=ts))
        return [ShownAd(a.listing_id, a.position, a.cpc, a.p_ctr) for a in out.ads], out.personalized

    def set_budget(self, listing_id: str, amount: float) -> None:
        self.retriever.set_budget(listing_id, amount)

    def close(self) -> None:
        self.service.store.close()


class HttpArm:
    """An arm served by a running ``adsformer serve`` (``POST /events``, ``POST /rank``). Simulated times
    are shifted so that the replay starts a minute after the server's clock: the server must accept events
    that far ahead (``ADSFORMER_EVENT_MAX_FUTURE_S`` at least the simulated span). Spent budgets are
    filtered here (the server's retriever does not know the arm's budgets)."""

    filters_budgets = False
    max_batch = 1000

    def __init__(self, spec: ArmSpec, first_ts: int, cfg: AbtestConfig, client: Any = None) -> None:
        import httpx

        assert spec.url is not None
        self.url = spec.url
        self._own = client is None  # a client given by the caller stays open
        self.client = client if client is not None else httpx.Client(base_url=spec.url, timeout=cfg.timeout_s)
        self.headers = {"X-API-Key": cfg.api_key} if cfg.api_key else {}
        try:
            health = self.client.get("/healthz")
        except Exception as exc:  # httpx.HTTPError, OSError
            raise AbtestError(
                f"arm {spec.name}: no service at {spec.url} ({exc}); start adsformer serve"
            ) from None
        if health.status_code != 200:
            raise AbtestError(f"arm {spec.name}: {spec.url}/healthz answered {health.status_code}")
        body = health.json()
        self.runs = {"ctr": body.get("ctr_run"), "pccvr": body.get("pccvr_run")}
        self.offset = int(time.time()) + 60 - int(first_ts)
        self.max_age_s = 86_400

    @staticmethod
    def _who(user_id: str) -> dict[str, str]:
        return {"browser_id": user_id} if user_id.startswith("b_") else {"user_id": user_id}

    def send(self, user_id: str, events: list[dict[str, Any]], now: int) -> None:
        for start in range(0, len(events), self.max_batch):
            batch = [
                {k: v for k, v in {**e, "ts": e["ts"] + self.offset}.items() if v is not None}
                for e in events[start : start + self.max_batch]
            ]
            res = self.client.post(
                "/events", json={**self._who(user_id), "events": batch}, headers=self.headers
            )
            if res.status_code == 401:
                raise AbtestError(f"{self.url}: POST /events refused the API key; give --api-key")
            if res.status_code == 422 and "ts_out_of_range" in res.text:
                raise AbtestError(
                    f"{self.url}: the server refuses the replay's event times (simulated days run ahead of "
                    "its clock); restart it with ADSFORMER_EVENT_MAX_FUTURE_S=1000000"
                )
            if res.status_code != 200:
                raise AbtestError(f"{self.url}: POST /events answered {res.status_code}: {res.text[:200]}")

    def rank(self, user_id: str, query: str | None, ts: int, n: int) -> tuple[list[ShownAd], bool]:
        body: dict[str, Any] = {**self._who(user_id), "n": n, "ts": ts + self.offset}
        if query:
            body["query"] = query
        else:
            return [], False
        res = self.client.post("/rank", json=body)
        if res.status_code != 200:
            raise AbtestError(f"{self.url}: POST /rank answered {res.status_code}: {res.text[:200]}")
        out = res.json()
        ads = [
            ShownAd(a["listing_id"], int(a["position"]), float(a["cpc"]), float(a["p_ctr"]))
            for a in out["ads"]
        ]
        return ads, bool(out["personalized"])

    def set_budget(self, listing_id: str, amount: float) -> None:
        return None

    def close(self) -> None:
        if self._own:
            self.client.close()


# ---------------------------------------------------------------------------------------------- one arm
@dataclass
class ArmResult:
    """What one arm did: one row per ad shown, counts per request, the service's runs, timings."""

    name: str
    impressions: pl.DataFrame
    requests: int
    requests_without_ads: int
    personalized: int
    budget_exhausted: int  # times a listing's daily budget ran out
    min_budget_left: float
    runs: dict[str, str | None]
    timings_s: dict[str, float]


def arm_seed(seed: int, name: str) -> np.random.SeedSequence:
    return np.random.SeedSequence([int(seed), zlib.crc32(name.encode())])


def _ingestible(replay: Replay, u: int, lo: int, hi: int) -> list[dict[str, Any]]:
    """Browsing events ``lo:hi`` of the replay as the service takes them."""
    out = []
    for j in range(lo, hi):
        listing = int(replay.e_listing[j])
        out.append(
            {
                "ts": int(replay.e_ts[j]),
                "action": ACTIONS[int(replay.e_action[j])],
                "listing_id": replay.listing_ids[listing] if listing >= 0 else None,
                "query": replay.e_query[j],
            }
        )
    return out


def run_arm(
    replay: Replay,
    index: int,
    spec: ArmSpec,
    cfg: AbtestConfig,
    *,
    n_arms: int,
    progress: Callable[[int, int], None] | None = None,
    client: Any = None,
) -> ArmResult:
    """Replay the requests of the arm's users through the arm's service, in time order (scoring with
    ``cfg.threads`` torch threads, as ``adsformer serve`` does with its ``torch_threads``)."""
    from adsformer.runtime import torch_threads

    with torch_threads(cfg.threads):
        return _run_arm(replay, index, spec, cfg, n_arms=n_arms, progress=progress, client=client)


def _run_arm(
    replay: Replay,
    index: int,
    spec: ArmSpec,
    cfg: AbtestConfig,
    *,
    n_arms: int,
    progress: Callable[[int, int], None] | None,
    client: Any,
) -> ArmResult:
    start = time.perf_counter()
    sim = replay.cfg
    slots = cfg.slots or sim.slots
    ss = arm_seed(cfg.seed, spec.name)
    rng = np.random.default_rng(ss)
    mine = np.flatnonzero(replay.arm_of_user[replay.r_user] == index)
    arm: LocalArm | HttpArm
    if spec.url is not None:
        arm = HttpArm(spec, int(replay.r_ts[0]), cfg, client)
    else:
        arm = LocalArm(spec, replay, cfg, int(ss.generate_state(1)[0]))
    share = 1.0 / n_arms
    full = replay.budget * share  # the arm's daily budget per listing
    left = full.copy()
    charged: set[int] = set()
    exhausted, min_left = 0, math.inf
    day = -1
    ptr: dict[int, int] = {}  # next browsing event of each user
    pending: dict[int, list[tuple[int, int, int]]] = {}  # user -> (ts, action, listing) from ad clicks
    extra: dict[int, list[tuple[int, int]]] = {}  # user -> (ts, listing) touches from ad clicks
    rows: dict[str, list[Any]] = {
        k: []
        for k in (
            "request",
            "user",
            "ts",
            "day",
            "listing",
            "position",
            "p_ctr",
            "cpc",
            "charge",
            "clicked",
            "purchased",
            "price",
            "p_click_true",
            "p_purchase_true",
            "touched",
        )
    }
    no_ads = personalized = 0
    t_send = t_rank = t_truth = 0.0
    n_req = mine.size
    tick = max(1, min(256, n_req // 100 or 1))
    try:
        for done, r in enumerate(mine.tolist()):
            u, ts = int(replay.r_user[r]), int(replay.r_ts[r])
            d = int(replay.day_of(ts))
            if d != day:  # a new day: every budget is full again
                for i in charged:
                    left[i] = full[i]
                    arm.set_budget(replay.listing_ids[i], float(full[i]))
                charged.clear()
                day = d
            # 1. the user's events since the last request (browsing, and what ad clicks caused)
            t0 = time.perf_counter()
            lo = ptr.get(u, int(replay.u_start[u]))
            hi = lo + int(np.searchsorted(replay.e_ts[lo : int(replay.u_start[u + 1])], ts, "left"))
            ptr[u] = hi
            events = _ingestible(replay, u, lo, hi)
            queue = pending.get(u)
            if queue:
                due = [e for e in queue if e[0] < ts]
                if due:
                    pending[u] = [e for e in queue if e[0] >= ts]
                    events += [
                        {"ts": t, "action": ACTIONS[a], "listing_id": replay.listing_ids[li], "query": None}
                        for t, a, li in due
                    ]
                    events.sort(key=lambda e: e["ts"])  # stable: browsing first within a second
            events = [e for e in events if e["ts"] >= ts - arm.max_age_s]
            if events:
                arm.send(replay.user_ids[u], events, ts)
            t1 = time.perf_counter()
            # 2. the service ranks
            want = slots if arm.filters_budgets else slots + cfg.http_extra
            ads, was_personalized = arm.rank(replay.user_ids[u], replay.r_query[r], ts, want)
            if not arm.filters_budgets:
                ads = [a for a in ads if left[_listing(a.listing_id)] > 0][:slots]
                ads = [ShownAd(a.listing_id, p + 1, a.cpc, a.p_ctr) for p, a in enumerate(ads)]
            personalized += bool(was_personalized)
            t2 = time.perf_counter()
            t_send += t1 - t0
            t_rank += t2 - t1
            if not ads:
                no_ads += 1
                continue
            # 3. the user looks at what was shown, where it was shown (the simulator's ground truth)
            k = len(ads)
            listing = np.fromiter((_listing(a.listing_id) for a in ads), np.int64, count=k)
            position = np.fromiter((a.position for a in ads), np.int32, count=k)
            if extra.get(u):
                tl = _touches_with_clicks(replay, u, ts, extra[u])
                t_l, t_a, t_r = tl.listing[0], tl.age[0], tl.recency[0]
            else:
                t_l, t_a, t_r = replay.touches.listing[r], replay.touches.age[r], replay.touches.recency[r]
            truth = impression_truth(
                sim,
                replay.behaviour.world,
                listing=listing,
                position=position,
                intent_leaf=np.full(k, replay.r_leaf[r]),
                intent_color=np.full(k, replay.r_color[r]),
                intent_band=np.full(k, replay.r_band[r]),
                query_node=np.full(k, replay.r_node[r]),
                touch_listing=np.broadcast_to(t_l, (k, t_l.size)),
                touch_age=np.broadcast_to(t_a, (k, t_a.size)),
                touch_recency=np.broadcast_to(t_r, (k, t_r.size)),
                noise=rng.normal(0.0, sim.click_noise, k),
            )
            p_click = truth.p_click
            clicked = rng.random(k, dtype=np.float32) < p_click
            purchased = clicked & (rng.random(k, dtype=np.float32) < truth.p_purchase)
            # 4. clicks pay the auction's CPC, at most what is left of the daily budget
            charge = np.zeros(k)
            for i in np.flatnonzero(clicked).tolist():
                li = int(listing[i])
                pay = min(ads[i].cpc, left[li]) if np.isfinite(left[li]) else ads[i].cpc
                charge[i] = pay
                left[li] -= pay
                charged.add(li)
                min_left = min(min_left, float(left[li]))
                arm.set_budget(ads[i].listing_id, float(left[li]))
                if left[li] <= 0:
                    exhausted += 1
            c = np.flatnonzero(clicked)
            if c.size:
                b = purchased[c]
                view_ts, cart_ts, buy_ts = followup_times(sim, rng, np.full(c.size, ts, np.int64), b)
                bought = listing[c][b]
                follow = [
                    *zip(view_ts.tolist(), [VIEW] * c.size, listing[c].tolist(), strict=True),
                    *zip(cart_ts.tolist(), [CART_ADD] * bought.size, bought.tolist(), strict=True),
                    *zip(buy_ts.tolist(), [PURCHASE] * bought.size, bought.tolist(), strict=True),
                ]
                pending.setdefault(u, []).extend(follow)
                pending[u].sort()
                extra.setdefault(u, []).extend((t, li) for t, _, li in follow)
            t_truth += time.perf_counter() - t2
            cols = rows
            cols["request"].extend([r] * k)
            cols["user"].extend([u] * k)
            cols["ts"].extend([ts] * k)
            cols["day"].extend([d] * k)
            cols["listing"].extend(listing.tolist())
            cols["position"].extend(position.tolist())
            cols["p_ctr"].extend(a.p_ctr for a in ads)
            cols["cpc"].extend(a.cpc for a in ads)
            cols["charge"].extend(charge.tolist())
            cols["clicked"].extend(clicked.astype(np.int8).tolist())
            cols["purchased"].extend(purchased.astype(np.int8).tolist())
            cols["price"].extend(replay.price[listing].tolist())
            cols["p_click_true"].extend(p_click.tolist())
            cols["p_purchase_true"].extend(truth.p_purchase.tolist())
            cols["touched"].extend((truth.touch_age_s >= 0).tolist())
            if progress is not None and (done + 1) % tick == 0:
                progress(index, done + 1)
    finally:
        arm.close()
    if progress is not None:
        progress(index, n_req)
    frame = pl.DataFrame(
        rows,
        schema={
            "request": pl.Int64,
            "user": pl.Int64,
            "ts": pl.Int64,
            "day": pl.Int32,
            "listing": pl.Int64,
            "position": pl.Int32,
            "p_ctr": pl.Float64,
            "cpc": pl.Float64,
            "charge": pl.Float64,
            "clicked": pl.Int8,
            "purchased": pl.Int8,
            "price": pl.Float64,
            "p_click_true": pl.Float64,
            "p_purchase_true": pl.Float64,
            "touched": pl.Boolean,
        },
    )
    return ArmResult(
        spec.name,
        frame,
        int(n_req),
        no_ads,
        personalized,
        exhausted,
        min_left if math.isfinite(min_left) else float("nan"),
        arm.runs,
        {
            "wall": time.perf_counter() - start,
            "events": t_send,
            "rank": t_rank,
            "truth": t_truth,
        },
    )


def _listing(listing_id: str) -> int:
    """The simulator's listing index of ``l_<i>``."""
    return int(listing_id[2:])


def _touches_with_clicks(replay: Replay, u: int, ts: int, clicks: list[tuple[int, int]]) -> Touches:
    """The user's touches before ``ts`` from browsing and the user's own ad clicks' events (the simulator's
    :func:`recent_touches` over both)."""
    lo, hi = int(replay.u_start[u]), int(replay.u_start[u + 1])
    ts_extra = np.array([t for t, _ in clicks], np.int64)
    li_extra = np.array([li for _, li in clicks], np.int32)
    n = hi - lo + ts_extra.size
    events = Events(
        np.full(n, u, np.int64),
        np.concatenate([replay.e_ts[lo:hi], ts_extra]),
        np.concatenate([replay.e_action[lo:hi], np.full(ts_extra.size, VIEW, np.int8)]),
        np.concatenate([replay.e_listing[lo:hi], li_extra]),
        [],
    )
    return recent_touches(replay.cfg, events, np.array([u]), np.array([ts], np.int64))


# ---------------------------------------------------------------------------------------------- all arms
def _worker(index: int, queue: Any, replay: Replay, specs: list[ArmSpec], cfg: AbtestConfig) -> None:
    """One arm in a spawned process; what it did (or its error) goes back through ``queue``."""
    try:
        result = run_arm(
            replay,
            index,
            specs[index],
            cfg,
            n_arms=len(specs),
            progress=lambda i, n: queue.put(("progress", i, n)),
        )
        queue.put(("done", index, result))
    except BaseException as exc:  # reported to the parent, which raises it
        queue.put(("error", index, (exc if isinstance(exc, UserError) else None, traceback.format_exc())))


def run_arms(
    replay: Replay,
    specs: Sequence[ArmSpec],
    cfg: AbtestConfig,
    *,
    progress: Callable[[int, int], None] | None = None,
    clients: dict[str, Any] | None = None,
) -> list[ArmResult]:
    """Every arm, ``cfg.workers`` at a time: in this process when 1, else in spawned processes (forking
    would inherit polars' and torch's thread pools mid-state); arms are independent, so the results are
    the same either way."""
    workers = min(cfg.workers, len(specs))
    if workers <= 1 or clients:
        return [
            run_arm(
                replay,
                i,
                spec,
                cfg,
                n_arms=len(specs),
                progress=progress,
                client=(clients or {}).get(spec.name),
            )
            for i, spec in enumerate(specs)
        ]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    results: dict[int, ArmResult] = {}
    todo = list(range(len(specs)))
    running: dict[int, Any] = {}
    try:
        while todo or running:
            while todo and len(running) < workers:
                i = todo.pop(0)
                proc = ctx.Process(target=_worker, args=(i, queue, replay, list(specs), cfg), daemon=True)
                proc.start()
                running[i] = proc
            try:
                kind, i, payload = queue.get(timeout=5.0)
            except Empty:
                dead = [j for j, p in running.items() if not p.is_alive()]
                if dead:
                    raise RuntimeError(
                        f"arm {specs[dead[0]].name}: its process ended without a result "
                        f"(exit code {running[dead[0]].exitcode})"
                    ) from None
                continue
            if kind == "progress":
                if progress is not None:
                    progress(i, payload)
            elif kind == "done":
                results[i] = payload
                running.pop(i).join()
            else:
                exc, text = payload
                if exc is not None:
                    raise exc
                raise RuntimeError(f"arm {specs[i].name} failed:\n{text}")
    finally:
        for proc in running.values():
            proc.terminate()
            proc.join()
    return [results[i] for i in range(len(specs))]


# ---------------------------------------------------------------------------------------------- analysis
def per_user_sums(replay: Replay, index: int, result: ArmResult) -> tuple[np.ndarray, np.ndarray]:
    """(users of the arm with a request (n,), sums (n, D, M) per user and day of :data:`SUMS`)."""
    D = replay.cfg.days
    mine = replay.arm_of_user[replay.r_user] == index
    users, inverse = np.unique(replay.r_user[mine], return_inverse=True)
    n = users.size
    out = np.zeros((n, D, len(SUMS)))

    def add(m: int, cell: np.ndarray, values: np.ndarray) -> None:
        out[:, :, m] += np.bincount(cell, weights=values, minlength=n * D).reshape(n, D)

    add(0, inverse * D + np.asarray(replay.day_of(replay.r_ts[mine]), np.int64), np.ones(inverse.size))
    imp = result.impressions
    if imp.height:
        cell = np.searchsorted(users, imp["user"].to_numpy()) * D + imp["day"].to_numpy().astype(np.int64)
        clicked = imp["clicked"].to_numpy().astype(np.float64)
        purchased = imp["purchased"].to_numpy().astype(np.float64)
        for m, values in enumerate(
            (
                np.ones(imp.height),
                clicked,
                purchased,
                imp["charge"].to_numpy(),
                purchased * imp["price"].to_numpy(),
            ),
            start=1,
        ):
            add(m, cell, values)
    return users, out


def metrics_of(sums: np.ndarray, n_users: float | np.ndarray) -> dict[str, np.ndarray]:
    """:data:`METRICS` from sums (..., M) of :data:`SUMS` over ``n_users`` users (NaN where undefined);
    impressions, revenue and GMS per user."""
    s = {k: sums[..., i] for i, k in enumerate(SUMS)}
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "impressions": s["impressions"] / n_users,
            "ctr": s["clicks"] / s["impressions"],
            "conversion_rate": s["purchases"] / s["clicks"],
            "revenue": s["revenue"] / n_users,
            "roas": s["gms"] / s["revenue"],
            "gms": s["gms"] / n_users,
            "cpc": s["revenue"] / s["clicks"],
        }


def bootstrap_sums(x: np.ndarray, resamples: int, rng: np.random.Generator, chunk: int = 100) -> np.ndarray:
    """(B, D, M) cumulative-over-days sums of ``x`` (n, D, M) for ``resamples`` resamples of its users."""
    n, D, M = x.shape
    flat = np.cumsum(x, axis=1).reshape(n, D * M)
    out = np.empty((resamples, D * M))
    for lo in range(0, resamples, chunk):
        hi = min(resamples, lo + chunk)
        idx = rng.integers(0, n, (hi - lo, n))
        w = np.stack([np.bincount(row, minlength=n) for row in idx]).astype(np.float64)  # (b, n)
        out[lo:hi] = w @ flat
    return out.reshape(resamples, D, M)


def _pct(values: np.ndarray, q: float) -> float | None:
    finite = values[np.isfinite(values)]
    return float(np.percentile(finite, q)) if finite.size else None


def _num(x: Any) -> float | None:
    """A finite number as a float, else None (JSON has no NaN)."""
    if x is None:
        return None
    value = float(x)
    return value if math.isfinite(value) else None


def analyse(
    replay: Replay, specs: Sequence[ArmSpec], results: Sequence[ArmResult], cfg: AbtestConfig
) -> dict[str, Any]:
    """Per-arm metrics and lifts against the first arm (95% bootstrap intervals over users), overall and
    cumulated day by day."""
    rng = np.random.default_rng(np.random.SeedSequence([int(cfg.seed), 16_2]))
    D = replay.cfg.days
    days_seen = sorted(set(replay.day_of(replay.r_ts).tolist()))
    last = max(days_seen)
    arms: list[dict[str, Any]] = []
    boot: list[dict[str, np.ndarray] | None] = []
    point: list[dict[str, np.ndarray]] = []
    for i, (spec, res) in enumerate(zip(specs, results, strict=True)):
        users, x = per_user_sums(replay, i, res)
        n = max(users.size, 1)
        total = x.sum(axis=(0, 1))
        cum = np.cumsum(x.sum(axis=0), axis=0)  # (D, M)
        point.append(metrics_of(cum, n))
        boot.append(metrics_of(bootstrap_sums(x, cfg.bootstrap, rng), n) if users.size else None)
        m = metrics_of(total, n)
        imp = res.impressions
        arms.append(
            {
                "name": spec.name,
                "kind": spec.kind,
                "ctr_run": res.runs.get("ctr"),
                "pccvr_run": res.runs.get("pccvr"),
                "ctr_run_dir": str(spec.ctr_run) if spec.ctr_run is not None else None,
                "pccvr_run_dir": str(spec.pccvr_run) if spec.pccvr_run is not None else None,
                "url": spec.url,
                "users": int(users.size),
                "requests": res.requests,
                "requests_without_ads": res.requests_without_ads,
                "personalized_share": res.personalized / max(res.requests, 1),
                "impressions": int(total[1]),
                "clicks": int(total[2]),
                "purchases": int(total[3]),
                "ctr": _num(m["ctr"]),
                "conversion_rate": _num(m["conversion_rate"]),
                "revenue": round(float(total[4]), 4),
                "roas": _num(m["roas"]),
                "gms": round(float(total[5]), 2),
                "cpc": _num(m["cpc"]),
                "impressions_per_user": _num(m["impressions"]),
                "revenue_per_user": _num(m["revenue"]),
                "gms_per_user": _num(m["gms"]),
                "expected_ctr": _num(imp["p_click_true"].mean()),
                "touched_share": _num(imp["touched"].cast(pl.Float64).mean()),
                "mean_position_of_clicks": _num(imp.filter(pl.col("clicked") == 1)["position"].mean()),
                "budget_exhausted": res.budget_exhausted,
                "min_budget_left": _num(res.min_budget_left),
                "timings_s": {k: round(v, 2) for k, v in res.timings_s.items()},
                "lift": None,
            }
        )
    control_point, control_boot = point[0], boot[0]
    daily: list[dict[str, Any]] = [{"day": d + 1, "arms": {}} for d in range(last + 1)]
    for i in range(1, len(arms)):
        lifts: dict[str, Any] = {}
        for metric in METRICS:
            treated = boot[i]
            with np.errstate(divide="ignore", invalid="ignore"):
                est = 100.0 * (point[i][metric] / control_point[metric] - 1.0)  # (D,)
                samples = (
                    100.0 * (treated[metric] / control_boot[metric] - 1.0)  # (B, D)
                    if treated is not None and control_boot is not None
                    else np.full((cfg.bootstrap, D), np.nan)
                )
            for d in range(last + 1):
                lo, hi = _pct(samples[:, d], 2.5), _pct(samples[:, d], 97.5)
                entry = {"lift": _num(est[d]), "ci": [lo, hi]}
                daily[d]["arms"].setdefault(arms[i]["name"], {})[metric] = entry
            lo, hi = _pct(samples[:, last], 2.5), _pct(samples[:, last], 97.5)
            lifts[metric] = {
                "lift": _num(est[last]),
                "ci": [lo, hi],
                "significant": lo is not None and hi is not None and (lo > 0 or hi < 0),
            }
        arms[i]["lift"] = lifts
    return {"arms": arms, "daily": daily}


# ---------------------------------------------------------------------------------------------- outputs
def _pct_text(entry: dict[str, Any] | None) -> str:
    if entry is None or entry["lift"] is None:
        return "n/a"
    lo, hi = entry["ci"]
    ci = f" [{lo:+.1f}, {hi:+.1f}]" if lo is not None and hi is not None else ""
    mark = "" if entry.get("significant", True) else " (n.s.)"
    return f"{entry['lift']:+.2f}%{ci}{mark}"


def _fmt(x: float | int | None, digits: int = 4) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, int):
        return f"{x:,}"
    return f"{x:,.{digits}f}"


def arms_table(arms: Sequence[dict[str, Any]]) -> list[str]:
    """The Markdown table of the arms' metrics."""
    lines = [
        "| arm | users | requests | impressions | CTR | conv. rate | revenue | ROAS | GMS | CPC |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for a in arms:
        lines.append(
            f"| {a['name']} | {a['users']:,} | {a['requests']:,} | {a['impressions']:,} | {_fmt(a['ctr'])} | "
            f"{_fmt(a['conversion_rate'])} | {_fmt(a['revenue'], 2)} | {_fmt(a['roas'], 2)} | "
            f"{_fmt(a['gms'], 2)} | {_fmt(a['cpc'], 3)} |"
        )
    return lines


def lifts_table(arms: Sequence[dict[str, Any]]) -> list[str]:
    """The Markdown table of lifts against the first arm."""
    head = " | ".join(LABELS[m] for m in METRICS)
    lines = [f"| lift vs {arms[0]['name']} | {head} |", "|---|" + "---:|" * len(METRICS)]
    for a in arms[1:]:
        lines.append(f"| {a['name']} | " + " | ".join(_pct_text(a["lift"][m]) for m in METRICS) + " |")
    return lines


def write_markdown(path: Path, summary: dict[str, Any]) -> None:
    arms = summary["arms"]
    setup = summary["setup"]
    lines = [
        f"# Online A/B test: {summary['dataset']}",
        "",
        f"{setup['users']:,} simulated users, {setup['requests']:,} ad requests over {setup['days']} simulated "
        f"day(s), seed {summary['seed']}; users split into {len(arms)} arms by a hash of their id; "
        f"{setup['slots']} ads per request from up to {setup['candidates']} candidates; clicks and purchases "
        "drawn from the simulator's ground truth at the position shown; clicks charged the second-price CPC "
        "within each arm's share of the daily budgets.",
        "",
        *arms_table(arms),
        "",
        f"Lifts against **{arms[0]['name']}** with 95% intervals (bootstrap over users, {summary['bootstrap']} "
        "resamples; impressions, revenue and GMS per user). (n.s.): the interval crosses zero.",
        "",
        *lifts_table(arms),
        "",
        "Paper (online A/B, adSformer vs its production ranker): "
        + ", ".join(f"{LABELS[k]} {v:+.2f}%" for k, v in PAPER_ONLINE.items())
        + ".",
        "",
        "CTR: clicks / impressions; conv. rate: purchases / clicks; revenue: charged CPC (ad spend); ROAS: "
        "GMS of purchased ad listings / ad spend; CPC: revenue / clicks.",
        "",
        f"![cumulative lifts]({summary['plot']})",
        "",
    ]
    path.write_text("\n".join(lines))


def plot_lifts(path: Path, summary: dict[str, Any]) -> None:
    """Cumulative lifts (with 95% bands) over the simulated days, one panel per headline metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    metrics = ("ctr", "revenue", "roas", "gms")
    daily = summary["daily"]
    days = [d["day"] for d in daily]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.4), sharex=True)
    for ax, metric in zip(axes, metrics, strict=True):
        for arm in summary["arms"][1:]:
            entries = [d["arms"][arm["name"]][metric] for d in daily]
            est, lo, hi = (
                np.array([np.nan if v is None else v for v in values], np.float64)
                for values in (
                    [e["lift"] for e in entries],
                    [e["ci"][0] for e in entries],
                    [e["ci"][1] for e in entries],
                )
            )
            (line,) = ax.plot(days, est, marker="o", label=arm["name"])
            ax.fill_between(days, lo, hi, color=line.get_color(), alpha=0.2)
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set_title(f"{LABELS[metric]} lift vs {summary['arms'][0]['name']} (%)")
        ax.set_xlabel("simulated day (cumulative)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # days are whole
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@dataclass
class AbtestResult:
    out: Path
    summary: dict[str, Any]
    results: list[ArmResult] = field(default_factory=list)


def run_abtest(
    data_dir: str | Path,
    arms: Sequence[ArmSpec],
    out: str | Path,
    cfg: AbtestConfig | None = None,
    *,
    progress: Callable[[str, int, int], None] | None = None,
    clients: dict[str, Any] | None = None,
) -> AbtestResult:
    """Run the experiment and write ``abtest.json``, ``abtest.md``, ``abtest_lifts.png`` and
    ``impressions.parquet`` (every ad shown, per arm) into ``out`` (atomically).

    ``progress(stage, done, total)`` is called with ``"replay"`` as requests complete (all arms together);
    ``clients`` gives HTTP arms a client (tests pass FastAPI test clients)."""
    cfg = cfg or AbtestConfig()
    data_dir, out = Path(data_dir), Path(out)
    arms = list(arms)
    check_arms(arms)
    start = time.perf_counter()
    need_catalog = any(a.url is None for a in arms)
    replay = prepare_replay(data_dir, len(arms), cfg, load_catalog=need_catalog)
    prepare_s = time.perf_counter() - start
    total = replay.n_requests
    done = [0] * len(arms)

    def on_progress(i: int, n: int) -> None:
        done[i] = n
        if progress is not None:
            progress("replay", sum(done), total)

    if progress is not None:
        progress("replay", 0, total)
    t = time.perf_counter()
    results = run_arms(replay, arms, cfg, progress=on_progress, clients=clients)
    replay_s = time.perf_counter() - t
    analysis = analyse(replay, arms, results, cfg)
    sim = replay.cfg
    summary: dict[str, Any] = {
        "dataset": json.loads((data_dir / "dataset.json").read_text()).get("name", data_dir.name)
        if (data_dir / "dataset.json").exists()
        else data_dir.name,
        "data_dir": str(data_dir),
        "seed": cfg.seed,
        "control": arms[0].name,
        "metrics": list(METRICS),
        "lift_basis": "percent change of the arm's metric over the control's; impressions, revenue and gms "
        "per user (arms differ a little in size), the others as ratios of totals",
        "bootstrap": cfg.bootstrap,
        "setup": {
            "users": int((replay.arm_of_user >= 0).sum()),
            "requests": total,
            "days": len(set(replay.day_of(replay.r_ts).tolist())),
            "slots": cfg.slots or sim.slots,
            "candidates": cfg.candidates,
            "salt": cfg.salt,
            "budget_share_per_arm": 1.0 / len(arms),
            "config": asdict(cfg) | {"api_key": None},
        },
        "arms": analysis["arms"],
        "daily": analysis["daily"],
        "paper_online_lift": PAPER_ONLINE,
        "plot": "abtest_lifts.png",
        "timing": {
            "prepare_s": round(prepare_s, 2),
            "replay_s": round(replay_s, 2),
            "requests_per_s": round(total / max(replay_s, 1e-9), 1),
            "workers": min(cfg.workers, len(arms)),
        },
    }
    with atomic_dir(out) as tmp:
        impressions = pl.concat(
            [r.impressions.with_columns(pl.lit(r.name).alias("arm")) for r in results], how="vertical"
        )
        impressions = impressions.with_columns(
            pl.Series("user_id", replay.user_ids, dtype=pl.String).gather(impressions["user"]),
            (pl.lit("l_") + pl.col("listing").cast(pl.String)).alias("listing_id"),
        )
        impressions.write_parquet(tmp / "impressions.parquet", compression="zstd")
        summary["timing"]["total_s"] = round(time.perf_counter() - start, 2)
        (tmp / "abtest.json").write_text(json.dumps(summary, indent=2) + "\n")
        write_markdown(tmp / "abtest.md", summary)
        plot_lifts(tmp / summary["plot"], summary)
    return AbtestResult(out, summary, list(results))


def default_workers(n_arms: int) -> int:
    """One process per arm, at most the CPUs this process may use."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(n_arms, cpus))
