"""The simulator's ground truth: every hidden parameter, per-entity truth tables and a signal report.

Written beside the dataset as ``truth.json`` (seed, config, taxonomy tree, colors, price bands, click and
purchase coefficients, position curve, intent process settings, the signal summary) and ``truth/*.parquet``:

- ``listings``: hidden quality, the ranking's quality estimate, color, price band, image shape/pattern,
  total clicks and spend (clicks x bid) over the simulated days;
- ``users``: logged-out flag, long-term favourite leaves / colors / band, number of sessions;
- ``sessions``: user, start, steps and the hidden short-term intent (leaf, color, band) per session;
- ``requests``: session, query kind (exact / sibling / broad), query taxonomy node, at-session-start flag;
- ``impressions``: row-aligned with ``impressions.parquet`` (and keyed by request_id, position): which intent
  parts the ad matches, how recently the user touched the ad's listing (``touch_age_s``, -1 = not among
  the last ``touch_lookback`` touches; ``touch_recency``) and another listing of its shop
  (``shop_touch_age_s``, ``shop_touch_recency``), and the click / purchase probabilities it was drawn with.

``truth.json``'s ``summary`` also holds the re-engagement shares of the dataset itself
(:mod:`adsformer.data.reengagement`) and the CTR / conversion of touched vs untouched ads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from adsformer.data.reengagement import reengagement_shares
from adsformer.data.schema import Dataset
from adsformer.simulator.ads import examination
from adsformer.simulator.behaviour import QUERY_KINDS
from adsformer.simulator.config import SimulatorConfig
from adsformer.simulator.taxonomy import PRICE_BANDS
from adsformer.simulator.world import World

TRUTH_JSON = "truth.json"
TRUTH_DIR = "truth"


@dataclass
class Truth:
    """Hidden parameters (``params``, JSON-able) and per-entity truth tables."""

    params: dict[str, Any]
    tables: dict[str, pl.DataFrame] = field(default_factory=dict)

    @property
    def impressions(self) -> pl.DataFrame:
        return self.tables["impressions"]

    def write(self, directory: Path) -> None:
        """Write ``truth.json`` and ``truth/<table>.parquet`` into ``directory`` (inside an atomic dir)."""
        (directory / TRUTH_JSON).write_text(json.dumps(self.params, indent=2, default=_to_json) + "\n")
        (directory / TRUTH_DIR).mkdir(exist_ok=True)
        for name, df in self.tables.items():
            df.write_parquet(directory / TRUTH_DIR / f"{name}.parquet", compression="zstd")

    @classmethod
    def read(cls, directory: str | Path) -> Truth:
        directory = Path(directory)
        params = json.loads((directory / TRUTH_JSON).read_text())
        tables = {p.stem: pl.read_parquet(p) for p in sorted((directory / TRUTH_DIR).glob("*.parquet"))}
        return cls(params, tables)


def _to_json(obj: Any) -> Any:
    if hasattr(obj, "tolist"):  # numpy scalars and arrays
        return obj.tolist()
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def band_names(n: int) -> list[str]:
    return list(PRICE_BANDS) if n == len(PRICE_BANDS) else [f"band{i}" for i in range(n)]


def truth_params(cfg: SimulatorConfig, world: World) -> dict[str, Any]:
    """Every hidden parameter of the simulation, JSON-able."""
    tax = world.tax
    positions = np.arange(1, cfg.slots + 1)
    return {
        "generator": "adsformer.simulator",
        "seed": cfg.seed,
        "config": cfg.to_json(),
        "taxonomy": tax.to_json(),
        "price_bands": {
            "names": band_names(world.n_bands),
            "multipliers": list(cfg.price_band_multipliers),
            "leaf_base_price": dict(zip(tax.leaf_ids, world.leaf_base_price.tolist(), strict=True)),
            "note": "price = leaf base price * band multiplier * lognormal(0, price_noise)",
        },
        "click_model": {
            "formula": "P(click) = examination(position) * sigmoid(click_bias + w_leaf*leaf_match + "
            "w_top*top_match + w_color*color_match + w_band*band_match + w_query*query_leaf_match "
            "+ w_quality*quality + w_touch*touch_recency + w_shop_touch*shop_touch_recency "
            "+ N(0, click_noise)); matches are against the session intent; touch_recency = "
            "exp(-seconds since the user last touched the listing / touch_decay_s) (0 if untouched), "
            "shop_touch_recency the same for another listing of the ad's shop",
            **{
                k: getattr(cfg, k)
                for k in (
                    "click_bias",
                    "w_leaf",
                    "w_top",
                    "w_color",
                    "w_band",
                    "w_query",
                    "w_quality",
                    "w_touch",
                    "w_shop_touch",
                    "touch_decay_s",
                    "touch_lookback",
                    "click_noise",
                    "examination_eta",
                )
            },
            "position_curve": dict(
                zip(positions.tolist(), examination(cfg, positions).round(4).tolist(), strict=True)
            ),
        },
        "purchase_model": {
            "formula": "P(purchase | click) = sigmoid(purchase_bias + pw_leaf*leaf_match + pw_color*color_match "
            "+ pw_band*band_match + pw_quality*quality + pw_touch*touch_recency "
            "+ pw_shop_touch*shop_touch_recency)",
            **{
                k: getattr(cfg, k)
                for k in (
                    "purchase_bias",
                    "pw_leaf",
                    "pw_color",
                    "pw_band",
                    "pw_quality",
                    "pw_touch",
                    "pw_shop_touch",
                    "purchase_later_share",
                    "purchase_later_mean_s",
                )
            },
        },
        "reengagement": {
            "returns": "a listing view is a return with P = revisit_prob * (1 - exp(-pull)), pull = sum over "
            "the user's remembered touches of weight * exp(-age / revisit_decay_s) (weight 1 view, "
            "revisit_favorite_weight, revisit_cart_weight); a return opens the touched listing or "
            "(revisit_shop_share) another listing of its shop",
            "ad_candidates": "a touched listing of the query's top-level category is a candidate with "
            "P = ad_touch_recall * touch_recency",
            "calibrated_on": {
                "clicks": "trivago (w_touch, ad_touch_recall)",
                "views": "Taobao (revisit_prob, fresh_view_redraw)",
                "purchases": "Taobao (purchase_later_share)",
            },
            **{
                k: getattr(cfg, k)
                for k in (
                    "revisit_prob",
                    "revisit_decay_s",
                    "revisit_favorite_weight",
                    "revisit_cart_weight",
                    "revisit_shop_share",
                    "fresh_view_redraw",
                    "ad_touch_recall",
                    "touch_decay_s",
                    "touch_lookback",
                )
            },
        },
        "intent_process": {
            "intent": "per session: (leaf taxonomy, color, price band), hidden",
            **{
                k: getattr(cfg, k)
                for k in (
                    "intent_persistence",
                    "preference_strength",
                    "n_favorite_leaves",
                    "n_favorite_colors",
                    "view_leaf_match",
                    "view_sibling",
                    "view_color_match",
                    "view_band_match",
                    "search_color_prob",
                    "min_session_gap_s",
                    "steps_mean",
                    "step_gap_s",
                )
            },
        },
        "ad_requests": {
            "query_kinds": list(QUERY_KINDS),
            **{
                k: getattr(cfg, k)
                for k in (
                    "p_request_at_start",
                    "p_request_per_step",
                    "slots",
                    "candidates_per_request",
                    "query_exact",
                    "query_sibling",
                    "candidate_off_leaf",
                    "rank_noise",
                    "quality_estimate_noise",
                )
            },
            "ranking": "top slots by log(bid of the day) + quality_estimate + N(0, rank_noise)",
        },
    }


def history_empty(ds: Dataset, window_s: int = 3600) -> pl.Series:
    """Per impression: True when the user has no event in ``[ts - window_s, ts)``."""
    req = ds.impressions.select("request_id", "user_id", "ts").unique("request_id", keep="first").sort("ts")
    ev = ds.events.select("user_id", pl.col("ts").alias("ev_ts")).sort("ev_ts")
    last = req.join_asof(
        ev,
        left_on="ts",
        right_on="ev_ts",
        by="user_id",
        strategy="backward",
        allow_exact_matches=False,
        check_sortedness=False,
    )
    last = last.select(
        "request_id", (pl.col("ev_ts").is_null() | (pl.col("ts") - pl.col("ev_ts") > window_s)).alias("empty")
    )
    return ds.impressions.select("request_id").join(last, on="request_id", how="left", maintain_order="left")[
        "empty"
    ]


def signal_report(ds: Dataset, truth: Truth, window_s: int = 3600) -> dict[str, Any]:
    """How strong the planted signal is: CTR by intent match and by position, empty-history share."""
    t = truth.impressions
    df = pl.DataFrame(
        {
            "clicked": ds.impressions["clicked"],
            "purchased": ds.impressions["purchased"],
            "position": ds.impressions["position"],
            "leaf": t["match_leaf"],
            "color": t["match_color"],
            "band": t["match_band"],
            "empty": history_empty(ds, window_s),
            "touched": (t["touch_age_s"] >= 0) & (t["touch_age_s"] <= window_s),
        }
    )

    def rate(col: str, mask: pl.Expr | None = None, frame: pl.DataFrame = df) -> float | None:
        """Mean of ``col`` over the rows where ``mask`` holds (None where there are none)."""
        sub = frame if mask is None else frame.filter(mask)
        return float(sub.select(pl.col(col).cast(pl.Float64).mean()).item()) if sub.height else None

    def ctr(mask: pl.Expr | None = None) -> float | None:
        return rate("clicked", mask)

    leaf, color, band, empty = pl.col("leaf"), pl.col("color"), pl.col("band"), pl.col("empty")
    touched = pl.col("touched")
    n_match = leaf.cast(pl.Int8) + color.cast(pl.Int8) + band.cast(pl.Int8)
    clicks = df.filter(pl.col("clicked") == 1)
    return {
        "impressions": df.height,
        "requests": ds.impressions["request_id"].n_unique(),
        "events": ds.events.height,
        "ctr": ctr(),
        "purchases_per_click": rate("purchased", frame=clicks),
        "ctr_leaf_and_color_match": ctr(leaf & color),
        "ctr_neither_leaf_nor_color_match": ctr(~leaf & ~color),
        "share_leaf_and_color_match": rate("leaf", frame=df.with_columns(leaf=leaf & color)),
        "ctr_by_matched_parts": {str(k): ctr(n_match == k) for k in range(4)},
        "ctr_by_position": {int(p): ctr(pl.col("position") == p) for p in df["position"].unique().sort()},
        "cvr_band_match": rate("purchased", band, clicks),
        "cvr_band_mismatch": rate("purchased", ~band, clicks),
        "history_window_s": window_s,
        "empty_history_fraction": rate("empty"),
        "ctr_empty_history": ctr(empty),
        "ctr_nonempty_history": ctr(~empty),
        "share_impressions_touched": rate("touched"),
        "ctr_touched": ctr(touched),
        "ctr_untouched": ctr(~touched),
        "cvr_touched": rate("purchased", touched, clicks),
        "cvr_untouched": rate("purchased", ~touched, clicks),
        "reengagement": {r["kind"]: r["share"] for r in reengagement_shares(ds, window_s)},
    }
