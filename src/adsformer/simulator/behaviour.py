"""Users, sessions with drifting short-term intents, browsing events and the ad requests inside sessions.

Each user has long-term favourites (leaves, colors, a price band). Each session has a hidden intent
(leaf, color, price band): with probability ``intent_persistence`` the previous session's, otherwise a fresh
draw biased towards the favourites. A session is a run of browsing steps (a search, or a listing view that
mostly matches the intent, sometimes followed by favorite / cart_add / purchase) seconds-to-minutes apart.
Ad requests happen right at session start (empty recent history) or a few seconds after a step. All of it is
vectorized over sessions; the only Python loop runs over the (at most ``max_steps``) step indices.
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


def browse(
    cfg: SimulatorConfig, world: World, s: Sessions, rng: np.random.Generator
) -> tuple[Events, list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """Browsing events of all sessions, and request slots ``(session, ts, at_start)`` in session order."""
    t = s.start.copy()
    parts: list[Events] = []
    slots = []
    start_req = (rng.random(s.user.size) < cfg.p_request_at_start) | (s.n_steps == 0)
    slots.append((np.nonzero(start_req)[0], s.start[start_req], np.ones(int(start_req.sum()), bool)))
    no_words = np.empty(0, np.int32)
    for j in range(int(s.n_steps.max(initial=0))):
        act = np.nonzero(s.n_steps > j)[0]
        t[act] += 15 + rng.exponential(cfg.step_gap_s, act.size).astype(np.int64)
        search = rng.random(act.size) < cfg.p_search
        q = act[search]
        words = _query_words(world, s.leaf[q], rng)
        color_w = np.where(rng.random(q.size) < cfg.search_color_prob, world.tax.color_words(s.color[q]), -1)
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
        listing = world.pick(rng, *_view_targets(cfg, world, s, v, rng)).astype(np.int32)
        m_color = world.color[listing] == s.color[v]
        m_band = world.band[listing] == s.band[v]
        fav = rng.random(v.size) < cfg.p_favorite * (1 + m_color)
        cart = rng.random(v.size) < cfg.p_cart * (1 + m_band)
        buy = cart & (rng.random(v.size) < cfg.p_purchase_after_cart)
        for action, mask, delay in (
            (VIEW, np.ones(v.size, bool), 0),
            (FAVORITE, fav, 2),
            (CART_ADD, cart, 5),
            (PURCHASE, buy, 9),
        ):
            e = v[mask]
            ts = t[e] + delay + (rng.integers(0, 4, e.size) if delay else 0)
            parts.append(
                Events(
                    s.user[e],
                    ts,
                    np.full(e.size, action, np.int8),
                    listing[mask],
                    [np.full(e.size, -1, np.int32)] * 3,
                )
            )
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
