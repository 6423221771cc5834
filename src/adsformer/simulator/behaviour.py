"""Users, sessions with drifting short-term intents, browsing events and the ad requests inside sessions.

Each user has long-term favourites (leaves, colors, a price band). Each session has a hidden intent
(leaf, color, price band): with probability ``intent_persistence`` the previous session's, otherwise a fresh
draw biased towards the favourites. A session is a run of browsing steps (a search, or a listing view that
mostly matches the intent, sometimes followed by favorite / cart_add / purchase) seconds-to-minutes apart.
Users come back: a listing view may return to a listing (or the shop of a listing) the user touched in
this or an earlier session, more likely the fresher and stronger (favorite, cart) the touch. Ad requests
happen right at session start (before any action of the session) or a few seconds after a step. All of it
is vectorized over sessions; the only Python loops run over a session's rank within its user (at most
``max_sessions``) and the (at most ``max_steps``) step indices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from adsformer.simulator.config import SimulatorConfig
from adsformer.simulator.world import World, categorical, choice

#: event action codes (index into ACTIONS)
ACTIONS = ("view", "favorite", "cart_add", "purchase", "search")
VIEW, FAVORITE, CART_ADD, PURCHASE, SEARCH = range(5)
#: ad request query kinds
QUERY_KINDS = ("exact", "sibling", "broad")


@dataclass
class Users:
    is_browser: np.ndarray
    fav_leaves: np.ndarray  # (U, n_favorite_leaves)
    fav_colors: np.ndarray  # (U, n_favorite_colors)
    fav_band: np.ndarray
    n_sessions: np.ndarray


@dataclass
class Sessions:
    user: np.ndarray
    start: np.ndarray  # int64 Unix seconds
    n_steps: np.ndarray
    leaf: np.ndarray  # the hidden intent
    color: np.ndarray
    band: np.ndarray
    kept: np.ndarray  # intent carried over from the user's previous session


@dataclass
class Events:
    """Event columns as arrays; ``listing`` -1 for searches, ``words`` (-1 = none) only for searches."""

    user: np.ndarray
    ts: np.ndarray
    action: np.ndarray
    listing: np.ndarray
    words: list[np.ndarray]

    @staticmethod
    def concat(parts: list[Events]) -> Events:
        cat = np.concatenate
        return Events(
            cat([p.user for p in parts]),
            cat([p.ts for p in parts]),
            cat([p.action for p in parts]),
            cat([p.listing for p in parts]),
            [cat([p.words[i] for p in parts]) for i in range(len(parts[0].words))],
        )


@dataclass
class Requests:
    session: np.ndarray
    ts: np.ndarray
    at_start: np.ndarray  # bool: requested before any action of the session
    kind: np.ndarray  # index into QUERY_KINDS
    node: np.ndarray  # taxonomy node of the query: a leaf, or n_leaf_total + top for broad queries
    words: list[np.ndarray]


def draw_users(cfg: SimulatorConfig, world: World, rng: np.random.Generator) -> Users:
    U, n_b = cfg.n_users, len(cfg.price_band_multipliers)
    is_browser = rng.random(U) < cfg.browser_fraction
    mean = np.where(is_browser, cfg.browser_sessions_mean, cfg.sessions_mean)
    n_sessions = np.minimum(1 + rng.poisson(np.maximum(mean - 1.0, 0.0)), cfg.max_sessions).astype(np.int32)
    fav_leaves = choice(rng, world.leaf_pop, (U, cfg.n_favorite_leaves))
    fav_colors = rng.integers(0, len(world.tax.colors), (U, cfg.n_favorite_colors))
    fav_band = choice(rng, np.linspace(1.0, 0.6, n_b), U)
    return Users(
        is_browser,
        fav_leaves.astype(np.int32),
        fav_colors.astype(np.int8),
        fav_band.astype(np.int8),
        n_sessions,
    )


def draw_sessions(cfg: SimulatorConfig, world: World, users: Users, rng: np.random.Generator) -> Sessions:
    """Sessions sorted by user then time; starts spread over ``days`` at least ``min_session_gap_s`` apart."""
    user = np.repeat(np.arange(users.n_sessions.size, dtype=np.int32), users.n_sessions)
    S = user.size
    first = np.repeat(np.cumsum(users.n_sessions) - users.n_sessions, users.n_sessions)
    k = np.arange(S) - first
    span = cfg.days * 86_400 - 3_600 - users.n_sessions[user].astype(np.int64) * cfg.min_session_gap_s
    u = rng.random(S) * span
    u = u[np.lexsort((u, user))]  # sorted within each user (sessions are grouped by user already)
    start = cfg.start_ts + u.astype(np.int64) + k * cfg.min_session_gap_s
    n_steps = np.minimum(rng.geometric(1.0 / (cfg.steps_mean + 1.0), S) - 1, cfg.max_steps).astype(np.int32)

    # fresh intents, biased towards the user's favourites, then persistence across a user's sessions
    pref = rng.random((3, S)) < cfg.preference_strength
    fav_leaf = users.fav_leaves[user, rng.integers(0, users.fav_leaves.shape[1], S)]
    leaf = np.where(pref[0], fav_leaf, choice(rng, world.leaf_pop, S))
    fav_color = users.fav_colors[user, rng.integers(0, users.fav_colors.shape[1], S)]
    color = np.where(pref[1], fav_color, categorical(rng, world.leaf_color_probs, leaf))
    band = np.where(pref[2], users.fav_band[user], rng.integers(0, world.n_bands, S))
    kept = (rng.random(S) < cfg.intent_persistence) & (k > 0)
    src = np.maximum.accumulate(np.where(kept, 0, np.arange(S)))
    return Sessions(
        user,
        start,
        n_steps,
        leaf[src].astype(np.int32),
        color[src].astype(np.int8),
        band[src].astype(np.int8),
        kept,
    )


def _view_targets(
    cfg: SimulatorConfig, world: World, s: Sessions, idx: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Desired (leaf, color, band) of a browsing view: mostly the intent, with noise."""
    n, nl = idx.size, world.tax.n_leaves
    u = rng.random(n)
    sibling = world.tax.top_of(s.leaf[idx]) * nl + rng.integers(0, nl, n)
    other = choice(rng, world.leaf_pop, n)
    leaf = np.where(
        u < cfg.view_leaf_match,
        s.leaf[idx],
        np.where(u < cfg.view_leaf_match + cfg.view_sibling, sibling, other),
    ).astype(np.int32)
    color = np.where(
        rng.random(n) < cfg.view_color_match, s.color[idx], categorical(rng, world.leaf_color_probs, leaf)
    )
    band = np.where(rng.random(n) < cfg.view_band_match, s.band[idx], rng.integers(0, world.n_bands, n))
    return leaf, color, band


def _query_words(world: World, node: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Two word columns from a taxonomy node: usually its head noun, sometimes a second word."""
    tax = world.tax
    w1 = np.where(
        rng.random(node.size) < 0.7, tax.sample_words(rng, node, head=True), tax.sample_words(rng, node)
    )
    w2 = tax.sample_words(rng, node)
    w2 = np.where((rng.random(node.size) < 0.4) & (w2 != w1), w2, -1)
    return [w1, w2.astype(np.int32)]


#: listing touches each user remembers for returns (the newest ones; older ones have no pull left)
MEMORY = 32


@dataclass
class _Memory:
    """Per user, the last :data:`MEMORY` listings touched while browsing: listing (-1 = empty slot), time and
    pull weight (1 for a view, ``revisit_favorite_weight`` / ``revisit_cart_weight`` when favorited /
    carted). A ring buffer: ``count`` is how many touches were ever written."""

    listing: np.ndarray  # (U, MEMORY)
    ts: np.ndarray
    weight: np.ndarray
    count: np.ndarray  # (U,)

    @classmethod
    def empty(cls, n_users: int) -> _Memory:
        return cls(
            np.full((n_users, MEMORY), -1, np.int32),
            np.zeros((n_users, MEMORY), np.int64),
            np.zeros((n_users, MEMORY), np.float32),
            np.zeros(n_users, np.int64),
        )

    def seen(self, user: np.ndarray, listing: np.ndarray) -> np.ndarray:
        return (self.listing[user] == listing[:, None]).any(axis=1)

    def pull(self, cfg: SimulatorConfig, user: np.ndarray, now: np.ndarray) -> np.ndarray:
        """(n, MEMORY) pull of each remembered touch at ``now``: weight * exp(-age / revisit_decay_s)."""
        age = (now[:, None] - self.ts[user]).astype(np.float64)
        valid = (self.listing[user] >= 0) & (age >= 0)
        decay = np.exp(-np.maximum(age, 0.0) / cfg.revisit_decay_s)
        return np.where(valid, self.weight[user] * decay, 0.0)

    def write(self, user: np.ndarray, listing: np.ndarray, ts: np.ndarray, weight: np.ndarray) -> None:
        """Append one touch per user (``user`` holds each user at most once)."""
        slot = self.count[user] % MEMORY
        self.listing[user, slot] = listing
        self.ts[user, slot] = ts
        self.weight[user, slot] = weight
        self.count[user] += 1


def _returns(
    cfg: SimulatorConfig,
    world: World,
    memory: _Memory,
    user: np.ndarray,
    now: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Whether each view step is a return, and to which listing: with probability ``revisit_prob * (1 -
    exp(-total pull))`` the user goes back to a remembered touch drawn in proportion to its pull, and opens
    that listing, or (``revisit_shop_share``) another listing of its shop."""
    n = user.size
    pull = memory.pull(cfg, user, now)  # (n, MEMORY)
    total = pull.sum(axis=1)
    back = rng.random(n) < cfg.revisit_prob * -np.expm1(-total)
    pick = (np.cumsum(pull, axis=1) < (rng.random(n) * total)[:, None]).sum(axis=1).clip(0, MEMORY - 1)
    target = memory.listing[user, pick]
    safe = np.where(target >= 0, target, 0)
    to_shop = rng.random(n) < cfg.revisit_shop_share
    listing = np.where(to_shop, world.in_shop(rng, world.shop[safe]), safe)
    return back & (target >= 0), listing.astype(np.int32)


def browse(
    cfg: SimulatorConfig, world: World, s: Sessions, rng: np.random.Generator
) -> tuple[Events, list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """Browsing events of all sessions, and request slots ``(session, ts, at_start)`` in session order.

    Sessions run in waves by their rank within the user (all first sessions, then all second ones, ...),
    so each user's memory of touched listings carries from one session to the next; inside a wave the loop
    runs over step indices, vectorized over sessions. A view step is a **return** to a remembered touch
    (:func:`_returns`) or a **fresh** listing drawn for the intent; a fresh draw that lands on a listing
    the user already touched is redrawn once with probability ``fresh_view_redraw`` (so that returns come
    from the return process, not from chance in small catalogues). A purchase follows its cart_add seconds
    later, or (``purchase_later_share``) 10 minutes plus Exponential(``purchase_later_mean_s``) later,
    straight from the cart, within the simulated days.
    """
    t = s.start.copy()
    parts: list[Events] = []
    slots = []
    start_req = (rng.random(s.user.size) < cfg.p_request_at_start) | (s.n_steps == 0)
    slots.append((np.nonzero(start_req)[0], s.start[start_req], np.ones(int(start_req.sum()), bool)))
    no_words = np.empty(0, np.int32)
    rank = np.arange(s.user.size) - np.searchsorted(s.user, s.user, "left")
    memory = _Memory.empty(int(s.user.max(initial=-1)) + 1)
    end_ts = cfg.start_ts + cfg.days * 86_400 - 1
    for k in range(int(rank.max(initial=-1)) + 1):
        wave = np.nonzero(rank == k)[0]
        for j in range(int(s.n_steps[wave].max(initial=0))):
            act = wave[s.n_steps[wave] > j]
            t[act] += 15 + rng.exponential(cfg.step_gap_s, act.size).astype(np.int64)
            search = rng.random(act.size) < cfg.p_search
            q = act[search]
            words = _query_words(world, s.leaf[q], rng)
            color_w = np.where(
                rng.random(q.size) < cfg.search_color_prob, world.tax.color_words(s.color[q]), -1
            )
            parts.append(
                Events(
                    s.user[q],
                    t[q],
                    np.full(q.size, SEARCH, np.int8),
                    np.full(q.size, -1, np.int32),
                    [color_w.astype(np.int32), *words],
                )
            )
            v = act[~search]
            user = s.user[v]
            target = _view_targets(cfg, world, s, v, rng)
            fresh = world.pick(rng, *target).astype(np.int32)
            again = world.pick(rng, *target).astype(np.int32)
            wider = world.draw_in(rng, *world.leaf_range(target[0])).astype(np.int32)
            redraw = rng.random(v.size) < cfg.fresh_view_redraw
            fresh = np.where(redraw & memory.seen(user, fresh), again, fresh)
            fresh = np.where(redraw & memory.seen(user, fresh), wider, fresh)
            back, returned = _returns(cfg, world, memory, user, t[v], rng)
            listing = np.where(back, returned, fresh)
            m_color = world.color[listing] == s.color[v]
            m_band = world.band[listing] == s.band[v]
            fav = rng.random(v.size) < cfg.p_favorite * (1 + m_color)
            cart = rng.random(v.size) < cfg.p_cart * (1 + m_band)
            buy = cart & (rng.random(v.size) < cfg.p_purchase_after_cart)
            later = rng.random(v.size) < cfg.purchase_later_share
            later_delay = 600 + rng.exponential(cfg.purchase_later_mean_s, v.size).astype(np.int64)
            for action, mask, delay in (
                (VIEW, np.ones(v.size, bool), 0),
                (FAVORITE, fav, 2),
                (CART_ADD, cart, 5),
                (PURCHASE, buy, 9),
            ):
                e = v[mask]
                ts = t[e] + delay + (rng.integers(0, 4, e.size) if delay else 0)
                if action == PURCHASE:
                    ts = np.where(later[mask], np.minimum(t[e] + later_delay[mask], end_ts), ts)
                parts.append(
                    Events(
                        s.user[e],
                        ts,
                        np.full(e.size, action, np.int8),
                        listing[mask],
                        [np.full(e.size, -1, np.int32)] * 3,
                    )
                )
            weight = np.maximum.reduce(
                [
                    np.ones(v.size, np.float32),
                    fav * np.float32(cfg.revisit_favorite_weight),
                    cart * np.float32(cfg.revisit_cart_weight),
                ]
            )
            memory.write(user, listing, t[v], weight)
            r = act[rng.random(act.size) < cfg.p_request_per_step]
            slots.append((r, t[r] + rng.integers(1, 14, r.size), np.zeros(r.size, bool)))
    if not parts:
        parts.append(
            Events(no_words, no_words.astype(np.int64), no_words.astype(np.int8), no_words, [no_words] * 3)
        )
    return Events.concat(parts), slots


def make_requests(
    cfg: SimulatorConfig,
    world: World,
    s: Sessions,
    slots: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    rng: np.random.Generator,
) -> Requests:
    """Give each request slot a query: the intent leaf, a sibling leaf or the broad category."""
    session = np.concatenate([x[0] for x in slots]).astype(np.int32)
    ts = np.concatenate([x[1] for x in slots]).astype(np.int64)
    at_start = np.concatenate([x[2] for x in slots])
    order = np.lexsort((session, ts))
    session, ts, at_start = session[order], ts[order], at_start[order]
    n, nl = session.size, world.tax.n_leaves
    leaf = s.leaf[session]
    top = world.tax.top_of(leaf)
    u = rng.random(n)
    kind = np.where(u < cfg.query_exact, 0, np.where(u < cfg.query_exact + cfg.query_sibling, 1, 2)).astype(
        np.int8
    )
    if nl == 1:
        kind[kind == 1] = 0
    sibling = top * nl + (leaf % nl + rng.integers(1, max(nl, 2), n)) % nl
    node = np.select([kind == 0, kind == 1], [leaf, sibling], world.tax.n_leaf_total + top).astype(np.int32)
    return Requests(session, ts, at_start, kind, node, _query_words(world, node, rng))
