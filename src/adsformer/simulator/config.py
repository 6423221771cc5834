"""Every knob of the marketplace simulator, with presets by scale.

``SimulatorConfig.preset("tiny" | "demo" | "medium" | "large")`` gives a ready configuration;
``cfg.with_overrides(n_users=..., seed=...)`` changes any field (``adsformer prepare simulate --set KEY=VALUE``
goes through :func:`adsformer.config.apply_overrides`, which validates the values). All probabilities are per draw, all times
in seconds, all money in dollars. The click model is::

    P(click) = examination(position) * sigmoid(click_bias + w_leaf*[ad leaf == intent leaf]
               + w_top*[same top-level category] + w_color*[ad color == intent color]
               + w_band*[ad price band == intent band] + w_query*[ad leaf == query leaf]
               + w_quality*quality + w_touch*touch_recency + w_shop_touch*shop_touch_recency
               + N(0, click_noise))
    examination(p) = p ** -examination_eta
    touch_recency = exp(-(seconds since the user last touched this listing) / touch_decay_s), 0 if never
    shop_touch_recency = the same for the newest touch of another listing of the ad's shop

and, after a click, ``P(purchase) = sigmoid(purchase_bias + pw_leaf*.. + pw_color*.. + pw_band*..
+ pw_quality*quality + pw_touch*touch_recency + pw_shop_touch*shop_touch_recency)``. The intent (leaf,
color, band) is the session's hidden short-term intent; the query never reveals color or band, so only the
recent action sequence carries that signal. A "touch" is a browsing event (view, favorite, cart_add,
purchase) of the user on a listing, among the user's last ``touch_lookback`` ones before the request.

**Re-engagement** (users come back to what they just touched). While browsing, each listing view is a
*return* with probability ``revisit_prob * (1 - exp(-pull))``, where ``pull`` sums, over the user's
remembered touches (this session and earlier ones), ``weight * exp(-age / revisit_decay_s)`` (weight 1 for
a view, ``revisit_favorite_weight`` / ``revisit_cart_weight`` for a favorited / carted listing); a return
opens the touched listing, or (``revisit_shop_share``) another listing of its shop. Other views are fresh
draws for the intent, redrawn (``fresh_view_redraw``) when they land on an already-touched listing. A share
``purchase_later_share`` of purchases happens hours after the cart_add (straight from the cart), the rest
seconds to minutes after. Ad requests retrieve touched listings of the query's category as candidates
(``ad_touch_recall * touch_recency``) and the click / purchase models reward them (``w_touch``,
``w_shop_touch``, ``pw_touch``, ``pw_shop_touch``).

The defaults are calibrated so that the simulator's own shares, as ``adsformer stats reengagement``
measures them (a click, view or purchase on a listing the same user touched in the hour before), match the
public logs (``docs/simulator.md``): clicks follow **trivago** (37% of click-outs; ``w_touch``,
``ad_touch_recall``), views follow **Taobao** (12% of page views; ``revisit_prob``, ``fresh_view_redraw``),
purchases follow **Taobao** (42% of buys; ``purchase_later_share``). ``revisit_decay_s``,
``touch_decay_s``, the favorite / cart weights, the shop share and the ``pw_*`` / shop weights are not
measurable from these logs and are set by hand. The calibration holds at the demo and medium scales; the
tiny preset's catalogue (0.6 listings per leaf x color x band) makes chance returns more frequent.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import with_config

from adsformer.config import KNOWN_KEYS_ONLY, ConfigError


@with_config(KNOWN_KEYS_ONLY)
@dataclass(frozen=True)
class SimulatorConfig:
    """A seeded marketplace: world size, user behaviour, ad serving, click/purchase truth, images."""

    KIND: ClassVar[str] = "simulator"

    name: str = "simulated-demo"  #: dataset name written to dataset.json
    seed: int = 0  #: master seed; every stage draws from its own child stream
    # --- world -------------------------------------------------------------------------------------
    n_top: int = 8  #: top-level categories (1..8)
    n_leaves: int = 6  #: leaves per top-level category (1..6)
    n_colors: int = 10  #: listing colors (2..12)
    n_shops: int = 400  #: shops; each specialises in 1..shop_max_tops top-level categories
    shop_max_tops: int = 2
    n_listings: int = 5000
    leaf_color_alpha: float = 2.0  #: Dirichlet concentration of each leaf's color mix (small = peaked)
    price_band_multipliers: tuple[float, ...] = (0.55, 1.0, 2.0)  #: budget / mid / premium vs leaf base
    price_noise: float = 0.15  #: log-normal sigma of a listing's price around its band price
    quality_std: float = 0.5  #: hidden listing quality ~ N(0, quality_std) (truth only)
    rating_noise: float = 0.8  #: noise of the public f_rating proxy of quality
    bid_median: float = 0.30  #: median cost-per-click bid
    bid_sigma: float = 0.5  #: log-normal sigma of bids across listings
    bid_daily_sigma: float = 0.1  #: log-normal sigma of a listing's bid from one day to the next
    budget_median: float = 40.0  #: median daily campaign budget
    small_budget_fraction: float = 0.15  #: campaigns with a tiny budget (< 2 dollars)
    # --- users and sessions --------------------------------------------------------------------------
    n_users: int = 4000
    browser_fraction: float = 0.3  #: logged-out browsers (ids "b_..."): fewer sessions
    sessions_mean: float = 4.0  #: sessions per logged-in user: 1 + Poisson(sessions_mean - 1)
    browser_sessions_mean: float = 1.5
    max_sessions: int = 40
    days: int = 7  #: session starts are spread over this many days
    start_ts: int = 1_717_200_000  #: 2024-06-01 00:00 UTC
    min_session_gap_s: int = 2700  #: minimum time between two session starts of one user
    steps_mean: float = 5.0  #: browsing steps per session ~ Geometric - 1 (0 = an ad request only)
    max_steps: int = 20
    step_gap_s: float = 40.0  #: mean extra seconds between steps (each gap is >= 15 s)
    intent_persistence: float = 0.45  #: P(a session keeps the previous session's intent)
    preference_strength: float = 0.6  #: P(a fresh intent part comes from the user's long-term favorites)
    n_favorite_leaves: int = 2
    n_favorite_colors: int = 2
    # --- browsing ----------------------------------------------------------------------------------
    p_search: float = 0.25  #: P(a step is a search rather than a listing view)
    search_color_prob: float = 0.3  #: P(a search query names the intent color)
    view_leaf_match: float = 0.8  #: P(a viewed listing is in the intent leaf)
    view_sibling: float = 0.12  #: P(... in another leaf of the intent's top-level category)
    view_color_match: float = 0.8
    view_band_match: float = 0.8
    p_favorite: float = 0.08  #: per view, doubled when the listing matches the intent color
    p_cart: float = 0.05  #: per view, doubled when it matches the intent band
    p_purchase_after_cart: float = 0.3
    # --- ad requests ---------------------------------------------------------------------------------
    p_request_at_start: float = 0.5  #: P(an ad request right at session start, before any action)
    p_request_per_step: float = 0.22  #: P(an ad request a few seconds after a browsing step)
    slots: int = 8  #: ads shown per request (positions 1..slots)
    candidates_per_request: int = 24  #: candidates drawn before ranking (duplicates dropped)
    query_exact: float = 0.6  #: P(the request's query is the intent leaf)
    query_sibling: float = 0.15  #: P(... a sibling leaf); otherwise the broad top-level category
    candidate_off_leaf: float = 0.2  #: share of a leaf query's candidates from the rest of its category
    rank_noise: float = 0.4  #: noise of the non-personalized ranking score log(bid) + quality estimate
    quality_estimate_noise: float = 0.5  #: noise of the platform's static quality estimate
    # --- click and purchase truth ------------------------------------------------------------------
    examination_eta: float = 0.6
    click_bias: float = -4.6
    w_leaf: float = 1.0
    w_top: float = 0.3
    w_color: float = 1.3
    w_band: float = 0.9
    w_query: float = 0.6
    w_quality: float = 1.0
    click_noise: float = 0.3
    click_delay_max_s: int = 30  #: a click's view event lands 1..this many seconds after the impression
    purchase_bias: float = -4.3
    pw_leaf: float = 0.5
    pw_color: float = 0.8
    pw_band: float = 1.6
    pw_quality: float = 0.5
    # --- re-engagement (defaults calibrated on public logs; see docs/simulator.md) -------------------
    revisit_prob: float = 0.11  #: P(a view step returns to something touched), at full pull (Taobao views)
    revisit_decay_s: float = 1800.0  #: e-folding time of a touch's pull on the user's next views
    revisit_favorite_weight: float = 2.0  #: pull of a favorited listing relative to a viewed one
    revisit_cart_weight: float = 3.0  #: pull of a carted listing relative to a viewed one
    revisit_shop_share: float = 0.25  #: share of returns that open another listing of the touched shop
    fresh_view_redraw: float = 1.0  #: P(a fresh view that lands on an already-touched listing is redrawn)
    purchase_later_share: float = 0.66  #: share of purchases made hours later, from the cart (Taobao buys)
    purchase_later_mean_s: float = 21_600.0  #: mean delay (beyond 10 min) of such a later purchase
    ad_touch_recall: float = 0.8  #: P(a touched listing of the query's category is an ad candidate) (trivago)
    touch_decay_s: float = 1800.0  #: e-folding time of the recency of a touch in the click/purchase truth
    touch_lookback: int = 8  #: the user's last touches (any age) the ad side looks at
    w_touch: float = 2.8  #: click bonus x recency for an ad of a listing the user touched (trivago clicks)
    w_shop_touch: float = 0.5  #: click bonus x recency for an untouched listing of a touched shop
    pw_touch: float = 0.8  #: purchase bonus x recency for a touched listing
    pw_shop_touch: float = 0.2  #: purchase bonus x recency for an untouched listing of a touched shop
    # --- images ---------------------------------------------------------------------------------------
    images: bool = True  #: write images/<listing_id>.png
    image_size: int = 48

    def __post_init__(self) -> None:
        if self.slots < 1 or self.candidates_per_request < self.slots:
            raise ValueError("need 1 <= slots <= candidates_per_request")
        if self.n_users < 1 or self.n_listings < self.n_top * self.n_leaves or self.n_shops < self.n_top:
            raise ValueError("need n_users >= 1, n_listings >= leaves, n_shops >= top-level categories")
        if self.days < 1 or self.max_sessions * self.min_session_gap_s >= self.days * 86_400:
            raise ValueError("max_sessions * min_session_gap_s must fit in the simulated days")
        if len(self.price_band_multipliers) < 2:
            raise ValueError("need at least two price bands")
        if min(self.revisit_decay_s, self.touch_decay_s, self.purchase_later_mean_s) <= 0:
            raise ValueError("revisit_decay_s, touch_decay_s and purchase_later_mean_s must be > 0")
        if self.touch_lookback < 0:
            raise ValueError("touch_lookback must be >= 0")

    @classmethod
    def preset(cls, scale: str) -> SimulatorConfig:
        """``tiny`` (tests, ~5k impressions), ``demo`` (~150k), ``medium`` (~1.5M), ``large`` (>= 10M)."""
        if scale not in PRESETS:
            raise ConfigError(
                f"--scale: unknown simulator scale {scale!r}; expected one of {sorted(PRESETS)}"
            )
        return cls(name=f"simulated-{scale}", **PRESETS[scale])

    def with_overrides(self, **kw: Any) -> SimulatorConfig:
        return dataclasses.replace(self, **kw)

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


#: What the re-engagement defaults are calibrated to: kind -> (dataset, share of clicks / views / purchases
#: on a listing the same user touched in the prior hour), measured by ``adsformer stats reengagement`` on
#: the canonical trivago and Taobao directories (docs/simulator.md).
REENGAGEMENT_TARGETS: dict[str, tuple[str, float]] = {
    "clicks": ("trivago", 0.371),
    "views": ("taobao", 0.122),
    "purchases": ("taobao", 0.421),
}

PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"n_users": 120, "n_listings": 800, "n_shops": 60, "image_size": 32},
    "demo": {},
    "medium": {"n_users": 40_000, "n_listings": 20_000, "n_shops": 1500},
    "large": {"n_users": 300_000, "n_listings": 100_000, "n_shops": 6000, "images": False},
}
