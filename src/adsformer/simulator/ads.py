"""Ad serving and the ground-truth click / purchase model.

For each request, candidates are drawn from the query's taxonomy (its leaf, partly the rest of its
category; the whole category for broad queries), ranked by a noisy non-personalized score
``log(bid of the day) + static quality estimate + noise`` and the top ``slots`` are shown at positions
1..slots. Whether an ad is clicked depends on its position (examination curve) and on how well it matches
the session's hidden intent (leaf, color, price band), which the query does not reveal (see
:mod:`adsformer.simulator.config` for the formula). A click adds a ``view`` event shortly after the
impression; a purchase adds ``cart_add`` and ``purchase`` events later (minutes later, or with probability
``purchase_later_share`` hours later, from the cart).

Re-engagement: a request's candidates include, with probability ``ad_touch_recall x recency``, listings
the user touched while browsing (in the query's top-level category), and the click and purchase models add
``w_touch x recency`` (``pw_touch``) for an ad of a touched listing and ``w_shop_touch x recency``
(``pw_shop_touch``) for an ad of another listing of a touched shop, where recency is
``exp(-age / touch_decay_s)`` of the newest such touch among the user's last ``touch_lookback``.

:func:`impression_truth` is that click and purchase model for any (user state, listing, position): the
session's intent, the query and the user's touches against each ad shown; :func:`followup_times` draws when
the events a click causes happen. :func:`serve` draws the dataset's clicks from them, and ``adsformer
abtest`` (:mod:`adsformer.experiments.abtest`) the clicks on the ads a ranking service shows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from adsformer.simulator.behaviour import CART_ADD, PURCHASE, VIEW, Events, Requests, Sessions
from adsformer.simulator.config import SimulatorConfig
from adsformer.simulator.world import World


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def examination(cfg: SimulatorConfig, position: np.ndarray) -> np.ndarray:
    """P(an ad at ``position`` (1-based) is looked at)."""
    return np.power(position.astype(np.float32), np.float32(-cfg.examination_eta))


@dataclass
class Impressions:
    """Impression columns (request order, then position) plus their ground-truth click model terms."""

    request: np.ndarray  # row in Requests
    position: np.ndarray
    listing: np.ndarray
    bid: np.ndarray
    clicked: np.ndarray
    purchased: np.ndarray
    match_leaf: np.ndarray
    match_top: np.ndarray
    match_color: np.ndarray
    match_band: np.ndarray
    match_query: np.ndarray
    touch_age_s: np.ndarray  # seconds since the user last touched this listing (-1 = not among touches)
    touch_recency: np.ndarray  # exp(-touch_age_s / touch_decay_s), 0 when untouched
    shop_touch_age_s: np.ndarray  # seconds since the user last touched another listing of its shop
    shop_touch_recency: np.ndarray
    p_examine: np.ndarray
    p_relevant: np.ndarray
    p_purchase: np.ndarray


@dataclass
class Touches:
    """Per request, the user's last ``touch_lookback`` browsing touches of listings strictly before it,
    newest first: listing (-1 = none; a listing touched twice keeps its newest entry only), age in
    seconds and recency ``exp(-age / touch_decay_s)`` (0 where none)."""

    listing: np.ndarray  # (R, K) int32
    age: np.ndarray  # (R, K) int64
    recency: np.ndarray  # (R, K) float32


def recent_touches(cfg: SimulatorConfig, events: Events, user: np.ndarray, ts: np.ndarray) -> Touches:
    """:class:`Touches` of requests by ``user`` at ``ts``, from the browsing ``events`` (one
    ``searchsorted`` over (user, time) keys; ad clicks' own follow-up events are not among them)."""
    K = cfg.touch_lookback
    has = events.listing >= 0
    ev_user = events.user[has].astype(np.int64)
    ev_ts = events.ts[has].astype(np.int64)
    ev_listing = events.listing[has]
    keys = (ev_user << 32) | (ev_ts - cfg.start_ts)
    order = np.argsort(keys, kind="stable")
    keys, ev_user, ev_ts, ev_listing = keys[order], ev_user[order], ev_ts[order], ev_listing[order]
    user = user.astype(np.int64)
    at = np.searchsorted(keys, (user << 32) | (ts.astype(np.int64) - cfg.start_ts), "left")
    pos = at[:, None] - 1 - np.arange(K)[None, :]  # (R, K) newest first
    safe = np.clip(pos, 0, max(keys.size - 1, 0))
    valid = (pos >= 0) & (ev_user[safe] == user[:, None]) if keys.size else np.zeros(pos.shape, bool)
    listing = np.where(valid, ev_listing[safe] if keys.size else -1, -1).astype(np.int32)
    for j in range(1, K):  # keep the newest entry of a listing touched more than once
        repeat = (listing[:, j : j + 1] == listing[:, :j]).any(axis=1)
        listing[repeat, j] = -1
    valid = listing >= 0
    age = np.where(valid, ts[:, None] - (ev_ts[safe] if keys.size else 0), -1).astype(np.int64)
    recency = np.where(valid, np.exp(-np.maximum(age, 0) / cfg.touch_decay_s), 0.0).astype(np.float32)
    return Touches(listing, age, recency)


def rank_candidates(
    cfg: SimulatorConfig,
    world: World,
    req: Requests,
    rng: np.random.Generator,
    touches: Touches | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(R, slots) listing indices and a validity mask (False where a request had too few distinct ads).

    With ``touches``, each listing the user touched that lies in the query's top-level category joins the
    candidates with probability ``ad_touch_recall * recency`` (retrieval finds what is relevant, and what
    the user just looked at is); ranking stays non-personalized."""
    n, P, tax = req.ts.size, cfg.candidates_per_request, world.tax
    broad = req.node >= tax.n_leaf_total
    leaf_node = np.where(broad, 0, req.node)
    top = np.where(broad, req.node - tax.n_leaf_total, tax.top_of(req.node))
    l_lo, l_hi = world.leaf_range(leaf_node)
    t_lo, t_hi = world.top_range(top)
    from_top = broad[:, None] | (rng.random((n, P)) < cfg.candidate_off_leaf)
    lo = np.where(from_top, t_lo[:, None], l_lo[:, None])
    hi = np.where(from_top, t_hi[:, None], l_hi[:, None])
    cand = world.draw_in(rng, lo, hi).astype(np.int32)
    if touches is not None and touches.listing.shape[1]:
        K = min(touches.listing.shape[1], P)
        tl = touches.listing[:, :K]
        in_top = (tl >= 0) & (tax.top_of(world.leaf[np.maximum(tl, 0)]) == top[:, None])
        recall = in_top & (rng.random(tl.shape) < cfg.ad_touch_recall * touches.recency[:, :K])
        cand[:, :K] = np.where(recall, tl, cand[:, :K])
    day = ((req.ts - cfg.start_ts) // 86_400).clip(0, cfg.days - 1)
    score = (
        np.log(world.bid_by_day[cand, day[:, None]]).astype(np.float32)
        + world.quality_estimate[cand]
        + rng.normal(0.0, cfg.rank_noise, (n, P)).astype(np.float32)
    )
    # a listing is shown at most once per request: drop repeated candidates
    by_id = np.argsort(cand, axis=1, kind="stable")
    sorted_ids = np.take_along_axis(cand, by_id, axis=1)
    dup_sorted = np.zeros((n, P), bool)
    dup_sorted[:, 1:] = sorted_ids[:, 1:] == sorted_ids[:, :-1]
    dup = np.zeros((n, P), bool)
    np.put_along_axis(dup, by_id, dup_sorted, axis=1)
    score[dup] = -np.inf
    best = np.argsort(-score, axis=1, kind="stable")[:, : cfg.slots]
    shown = np.take_along_axis(cand, best, axis=1)
    valid = np.isfinite(np.take_along_axis(score, best, axis=1))
    return shown, valid


@dataclass
class ImpressionTruth:
    """The ground-truth click and purchase model's terms for impressions (one row each)."""

    match_leaf: np.ndarray
    match_top: np.ndarray
    match_color: np.ndarray
    match_band: np.ndarray
    match_query: np.ndarray
    touch_age_s: np.ndarray  # int64, -1 = the listing is not among the user's touches
    touch_recency: np.ndarray  # float32
    shop_touch_age_s: np.ndarray  # int64, -1 = no other listing of its shop among the touches
    shop_touch_recency: np.ndarray  # float32
    p_examine: np.ndarray  # float32 P(looked at | position)
    p_relevant: np.ndarray  # float32 P(click | looked at)
    p_purchase: np.ndarray  # float32 P(purchase | click)

    @property
    def p_click(self) -> np.ndarray:
        return self.p_examine * self.p_relevant


def impression_truth(
    cfg: SimulatorConfig,
    world: World,
    *,
    listing: np.ndarray,
    position: np.ndarray,
    intent_leaf: np.ndarray,
    intent_color: np.ndarray,
    intent_band: np.ndarray,
    query_node: np.ndarray,
    touch_listing: np.ndarray,
    touch_age: np.ndarray,
    touch_recency: np.ndarray,
    noise: np.ndarray | float = 0.0,
) -> ImpressionTruth:
    """The click and purchase probabilities of showing ``listing`` at ``position`` (1-based) to a user in a
    state: the session's hidden intent (leaf, color, price band), the request's query node and the user's
    recent touches (rows of :class:`Touches`: ``(n, K)`` listing, age, recency). ``noise`` is the click
    logit's per-impression draw ``N(0, click_noise)`` (0: the expected user). Arrays of one row per
    impression; this is the model :func:`serve` draws clicks and purchases from (see the module docstring
    and :mod:`adsformer.simulator.config` for the formulas)."""
    a_leaf = world.leaf[listing]
    m_leaf = a_leaf == intent_leaf
    m_top = world.tax.top_of(a_leaf) == world.tax.top_of(intent_leaf)
    m_color = world.color[listing] == intent_color
    m_band = world.band[listing] == intent_band
    m_query = a_leaf == query_node
    quality = world.quality[listing]
    # touch terms: recency of the newest touch of this listing, and of another listing of its shop
    tl, rec, ages = touch_listing, touch_recency, touch_age  # (n, K)
    same = tl == listing[:, None]
    same_shop = (tl >= 0) & ~same & (world.shop[np.maximum(tl, 0)] == world.shop[listing][:, None])
    touch_rec = np.where(same, rec, 0).max(axis=1, initial=0.0)
    shop_rec = np.where(same_shop, rec, 0).max(axis=1, initial=0.0)
    touch_age_s = np.where(same, ages, -1).max(axis=1, initial=-1)  # one entry per listing: its newest touch
    big = np.iinfo(np.int64).max
    shop_age = np.where(same_shop, ages, big).min(axis=1, initial=big)
    shop_age = np.where(shop_age == big, -1, shop_age)
    f32 = np.float32
    logit = (
        cfg.click_bias
        + cfg.w_leaf * m_leaf
        + cfg.w_top * m_top
        + cfg.w_color * m_color
        + cfg.w_band * m_band
        + cfg.w_query * m_query
        + cfg.w_quality * quality
        + cfg.w_touch * touch_rec
        + cfg.w_shop_touch * shop_rec
        + noise
    ).astype(f32)
    p_purchase = sigmoid(
        cfg.purchase_bias
        + cfg.pw_leaf * m_leaf
        + cfg.pw_color * m_color
        + cfg.pw_band * m_band
        + cfg.pw_quality * quality
        + cfg.pw_touch * touch_rec
        + cfg.pw_shop_touch * shop_rec
    ).astype(f32)
    return ImpressionTruth(
        m_leaf,
        m_top,
        m_color,
        m_band,
        m_query,
        touch_age_s.astype(np.int64),
        touch_rec.astype(f32),
        shop_age.astype(np.int64),
        shop_rec.astype(f32),
        examination(cfg, position),
        sigmoid(logit).astype(f32),
        p_purchase,
    )


def followup_times(
    cfg: SimulatorConfig, rng: np.random.Generator, ts: np.ndarray, purchased: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Times of the events clicks cause: for clicks at ``ts`` (impression times), the click's ``view``
    1..``click_delay_max_s`` s later; for the clicks that are ``purchased``, a ``cart_add`` minutes later and
    a ``purchase`` minutes later still, or (``purchase_later_share``) hours later from the cart, within the
    simulated days. Returns (view_ts (c,), cart_ts (b,), buy_ts (b,))."""
    view_ts = ts + rng.integers(1, cfg.click_delay_max_s + 1, ts.size)
    cart_ts = view_ts[purchased] + rng.integers(20, 300, int(purchased.sum()))
    later = rng.random(cart_ts.size) < cfg.purchase_later_share  # bought later from the cart
    later_ts = cart_ts + 600 + rng.exponential(cfg.purchase_later_mean_s, cart_ts.size).astype(np.int64)
    end_ts = cfg.start_ts + cfg.days * 86_400 - 1
    buy_ts = np.where(
        later,
        np.maximum(np.minimum(later_ts, end_ts), cart_ts),
        cart_ts + rng.integers(20, 600, cart_ts.size),
    )
    return view_ts, cart_ts, buy_ts


def serve(
    cfg: SimulatorConfig,
    world: World,
    s: Sessions,
    req: Requests,
    rng: np.random.Generator,
    browsing: Events,
) -> tuple[Impressions, Events]:
    """Show ads for every request, draw clicks and purchases, and the events they cause.

    ``browsing`` (the users' browsing events) gives each request the user's recent touches: they join the
    candidates and earn the touch terms of the click and purchase models (:func:`impression_truth`)."""
    touches = recent_touches(cfg, browsing, s.user[req.session], req.ts)
    shown, valid = rank_candidates(cfg, world, req, rng, touches)
    request = np.repeat(np.arange(req.ts.size, dtype=np.int32), cfg.slots).reshape(shown.shape)[valid]
    position = np.broadcast_to(np.arange(1, cfg.slots + 1, dtype=np.int32), shown.shape)[valid]
    listing = shown[valid]
    n = listing.size
    sess = req.session[request]
    ts = req.ts[request]
    day = ((ts - cfg.start_ts) // 86_400).clip(0, cfg.days - 1)
    t = impression_truth(
        cfg,
        world,
        listing=listing,
        position=position,
        intent_leaf=s.leaf[sess],
        intent_color=s.color[sess],
        intent_band=s.band[sess],
        query_node=req.node[request],
        touch_listing=touches.listing[request],
        touch_age=touches.age[request],
        touch_recency=touches.recency[request],
        noise=rng.normal(0.0, cfg.click_noise, n),
    )
    f32 = np.float32
    clicked = rng.random(n, dtype=f32) < t.p_examine * t.p_relevant
    purchased = clicked & (rng.random(n, dtype=f32) < t.p_purchase)
    imps = Impressions(
        request,
        position,
        listing,
        world.bid_by_day[listing, day],
        clicked.astype(np.int8),
        purchased.astype(np.int8),
        t.match_leaf,
        t.match_top,
        t.match_color,
        t.match_band,
        t.match_query,
        t.touch_age_s,
        t.touch_recency,
        t.shop_touch_age_s,
        t.shop_touch_recency,
        t.p_examine,
        t.p_relevant,
        t.p_purchase,
    )

    # follow-up events: the click's view, and for purchases a cart_add and a purchase minutes later
    c = np.nonzero(clicked)[0]
    b = purchased[c]
    view_ts, cart_ts, buy_ts = followup_times(cfg, rng, ts[c], b)
    user = s.user[sess]
    none = np.full(c.size + 2 * cart_ts.size, -1, np.int32)
    events = Events(
        np.concatenate([user[c], user[c][b], user[c][b]]),
        np.concatenate([view_ts, cart_ts, buy_ts]),
        np.concatenate(
            [np.full(c.size, VIEW), np.full(cart_ts.size, CART_ADD), np.full(cart_ts.size, PURCHASE)]
        ).astype(np.int8),
        np.concatenate([listing[c], listing[c][b], listing[c][b]]),
        [none, none, none],
    )
    return imps, events
