"""Run the simulation end to end: :func:`generate` (in memory) and :func:`simulate` (writes a dataset).

Each stage draws from its own child of ``SeedSequence(config.seed)``, so the same config gives identical
tables, and switching images on or off does not change them. Arrays become polars frames only at the end;
string ids are built with vectorized polars expressions.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from adsformer.data.schema import Dataset, DatasetMeta, write_tables
from adsformer.errors import UserError
from adsformer.io import atomic_dir
from adsformer.simulator.ads import Impressions, serve
from adsformer.simulator.behaviour import (
    ACTIONS,
    QUERY_KINDS,
    Events,
    Requests,
    Sessions,
    Users,
    browse,
    draw_sessions,
    draw_users,
    make_requests,
)
from adsformer.simulator.config import SimulatorConfig
from adsformer.simulator.images import write_images
from adsformer.simulator.truth import TRUTH_DIR, Truth, band_names, signal_report, truth_params
from adsformer.simulator.world import World, build_world, id_series

Progress = Callable[[str, float], None]
STAGES = ("world", "users", "sessions", "browsing", "requests", "ads", "images")


def _streams(seed: int) -> dict[str, np.random.Generator]:
    children = np.random.SeedSequence(seed).spawn(len(STAGES))
    return {name: np.random.default_rng(c) for name, c in zip(STAGES, children, strict=True)}


def _lookup(values: pl.Series, idx: np.ndarray) -> pl.Series:
    """``values[idx]`` with null where ``idx < 0``."""
    frame = pl.DataFrame({"i": np.asarray(idx, np.int64)})
    return frame.select(
        pl.lit(values).gather(pl.when(pl.col("i") >= 0).then(pl.col("i"))).alias(values.name)
    )[values.name]


def _user_ids(users: Users) -> pl.Series:
    n = users.is_browser.size
    return (
        pl.select(
            pl.when(pl.lit(pl.Series(users.is_browser))).then(pl.lit("b_")).otherwise(pl.lit("u_"))
            + pl.int_range(n, dtype=pl.Int64).cast(pl.String)
        )
        .to_series()
        .alias("user_id")
    )


def _events_frame(world: World, ev: Events, user_ids: pl.Series) -> pl.DataFrame:
    order = np.lexsort((np.arange(ev.ts.size), ev.user, ev.ts))
    listing = ev.listing[order]
    has = listing >= 0
    query = world.tax.join([w[order] for w in ev.words])
    return pl.DataFrame(
        {
            "user_id": user_ids.gather(ev.user[order]),
            "ts": ev.ts[order].astype(np.int64),
            "action": pl.Series(ACTIONS, dtype=pl.String).gather(ev.action[order]),
            "listing_id": _lookup(id_series("l_", world.n).alias("listing_id"), listing),
            "shop_id": _lookup(
                id_series("s_", world.shop_tops.shape[0]).alias("shop_id"),
                np.where(has, world.shop[np.where(has, listing, 0)], -1),
            ),
            "taxonomy_id": _lookup(
                pl.Series("taxonomy_id", world.tax.leaf_ids, dtype=pl.String),
                np.where(has, world.leaf[np.where(has, listing, 0)], -1),
            ),
            "query": pl.select(pl.when(pl.lit(query) != "").then(pl.lit(query))).to_series().alias("query"),
        }
    )


def _impressions_frame(
    world: World, s: Sessions, req: Requests, imp: Impressions, user_ids: pl.Series
) -> tuple[pl.DataFrame, pl.Series]:
    request_ids = id_series("r_", req.ts.size)
    queries = world.tax.join(req.words)
    frame = pl.DataFrame(
        {
            "request_id": request_ids.gather(imp.request),
            "user_id": user_ids.gather(s.user[req.session[imp.request]]),
            "ts": req.ts[imp.request].astype(np.int64),
            "listing_id": id_series("l_", world.n).gather(imp.listing),
            "position": imp.position.astype(np.int32),
            "query": queries.gather(imp.request),
            "clicked": imp.clicked,
            "purchased": imp.purchased,
            "bid": imp.bid.astype(np.float64),
        }
    )
    return frame, request_ids


def _truth_tables(
    cfg: SimulatorConfig,
    world: World,
    users: Users,
    s: Sessions,
    req: Requests,
    imp: Impressions,
    user_ids: pl.Series,
    request_ids: pl.Series,
) -> dict[str, pl.DataFrame]:
    tax = world.tax
    leaf_ids = pl.Series(tax.leaf_ids, dtype=pl.String)
    colors = pl.Series(tax.colors, dtype=pl.String)
    bands = pl.Series(band_names(world.n_bands), dtype=pl.String)
    nodes = pl.Series([*tax.leaf_ids, *tax.tops], dtype=pl.String)
    listings = pl.DataFrame(
        {
            "listing_id": id_series("l_", world.n),
            "shop_id": id_series("s_", cfg.n_shops).gather(world.shop),
            "taxonomy_id": leaf_ids.gather(world.leaf),
            "color": colors.gather(world.color),
            "price_band": bands.gather(world.band),
            "quality": world.quality,
            "quality_estimate": world.quality_estimate,
            "clicks": np.bincount(imp.listing, weights=imp.clicked, minlength=world.n).astype(np.int32),
            "spend": np.bincount(imp.listing, weights=imp.clicked * imp.bid, minlength=world.n).round(2),
            "mean_bid": world.bid_by_day.mean(axis=1),
            "shape": tax.top_of(world.leaf).astype(np.int8),
            "pattern": (world.leaf % tax.n_leaves).astype(np.int8),
        }
    )
    user_cols = {
        f"fav_leaf_{k}": leaf_ids.gather(users.fav_leaves[:, k]) for k in range(users.fav_leaves.shape[1])
    }
    user_cols |= {
        f"fav_color_{k}": colors.gather(users.fav_colors[:, k]) for k in range(users.fav_colors.shape[1])
    }
    users_df = pl.DataFrame(
        {
            "user_id": user_ids,
            "is_browser": users.is_browser,
            "n_sessions": users.n_sessions,
            **user_cols,
            "fav_band": bands.gather(users.fav_band),
        }
    )
    sessions = pl.DataFrame(
        {
            "session": np.arange(s.user.size, dtype=np.int32),
            "user_id": user_ids.gather(s.user),
            "start_ts": s.start,
            "n_steps": s.n_steps,
            "intent_taxonomy_id": leaf_ids.gather(s.leaf),
            "intent_color": colors.gather(s.color),
            "intent_band": bands.gather(s.band),
            "kept_previous_intent": s.kept,
        }
    )
    requests = pl.DataFrame(
        {
            "request_id": request_ids,
            "session": req.session,
            "ts": req.ts,
            "query_kind": pl.Series(QUERY_KINDS, dtype=pl.String).gather(req.kind),
            "query_node": nodes.gather(req.node),
            "at_session_start": req.at_start,
        }
    )
    impressions = pl.DataFrame(
        {
            "request_id": request_ids.gather(imp.request),
            "position": imp.position,
            "match_leaf": imp.match_leaf,
            "match_top": imp.match_top,
            "match_color": imp.match_color,
            "match_band": imp.match_band,
            "match_query_leaf": imp.match_query,
            "touch_age_s": imp.touch_age_s,
            "touch_recency": imp.touch_recency,
            "shop_touch_age_s": imp.shop_touch_age_s,
            "shop_touch_recency": imp.shop_touch_recency,
            "p_examine": imp.p_examine,
            "p_relevant": imp.p_relevant,
            "p_click": imp.p_examine * imp.p_relevant,
            "p_purchase": imp.p_purchase,
        }
    )
    return {
        "listings": listings,
        "users": users_df,
        "sessions": sessions,
        "requests": requests,
        "impressions": impressions,
    }


@dataclass
class Behaviour:
    """The simulation before any ad is served: the world, users, sessions (with their hidden intents), the
    users' browsing events and their ad requests (arrays; see :mod:`adsformer.simulator.behaviour`).
    Browsing does not depend on the ads, so this is also what a closed-loop experiment replays
    (``adsformer abtest``), showing its own ads where :func:`generate` shows the simulated platform's."""

    config: SimulatorConfig
    world: World
    users: Users
    sessions: Sessions
    browsing: Events
    requests: Requests

    def user_ids(self) -> pl.Series:
        """``u_<i>`` (logged in) / ``b_<i>`` (browsers), as in the dataset."""
        return _user_ids(self.users)


def simulate_behaviour(
    config: SimulatorConfig,
    *,
    streams: dict[str, np.random.Generator] | None = None,
    tick: Callable[[str, float], None] | None = None,
) -> Behaviour:
    """The stages before ads are served (world, users, sessions, browsing, requests), from ``streams``
    (default: the seed's own; :func:`generate` passes them on to serve the ads)."""
    rng = streams or _streams(config.seed)
    if tick is not None:
        tick("world", 0.0)
    world = build_world(config, rng["world"])
    users = draw_users(config, world, rng["users"])
    sessions = draw_sessions(config, world, users, rng["sessions"])
    if tick is not None:
        tick("browsing", 0.15)
    events, slots = browse(config, world, sessions, rng["browsing"])
    req = make_requests(config, world, sessions, slots, rng["requests"])
    return Behaviour(config, world, users, sessions, events, req)


class ReplayError(UserError):
    """A dataset directory whose world cannot be rebuilt as it was generated."""


def load_behaviour(directory: str | Path) -> Behaviour:
    """Rebuild the :class:`Behaviour` of a simulated dataset from its ``truth.json`` (seed and every knob)
    and check it against the truth files (the requests' times, the listings' hidden quality): the same
    world, users, sessions, browsing and requests as when the dataset was written."""
    directory = Path(directory)
    truth_file = directory / "truth.json"
    if not truth_file.exists():
        raise ReplayError(f"{directory}: no truth.json; give a dataset written by adsformer prepare simulate")
    params = json.loads(truth_file.read_text())
    known = {f.name: f for f in dataclasses.fields(SimulatorConfig)}
    values: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in params.get("config", {}).items()
    }
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ReplayError(
            f"{truth_file}: simulator settings {unknown} are unknown to this version of the simulator; "
            "regenerate the dataset with adsformer prepare simulate"
        )
    config = SimulatorConfig(**values)
    behaviour = simulate_behaviour(config)
    _check_replay(directory, behaviour)
    return behaviour


def _check_replay(directory: Path, b: Behaviour) -> None:
    fix = "regenerate it with this version (adsformer prepare simulate)"
    req_file, lst_file = (
        directory / TRUTH_DIR / "requests.parquet",
        directory / TRUTH_DIR / "listings.parquet",
    )
    for file in (req_file, lst_file):
        if not file.exists():
            raise ReplayError(f"{file}: missing; the world's truth files are needed to check the replay")
    ts = pl.read_parquet(req_file, columns=["ts"])["ts"].to_numpy()
    quality = pl.read_parquet(lst_file, columns=["quality"])["quality"].to_numpy()
    same = (
        ts.size == b.requests.ts.size
        and bool(np.array_equal(ts, b.requests.ts))
        and quality.size == b.world.quality.size
        and bool(np.allclose(quality, b.world.quality, atol=1e-6))
    )
    if not same:
        raise ReplayError(
            f"{directory}: rebuilding its world from truth.json does not give the same requests and "
            f"listings (another simulator version wrote it); {fix}"
        )


def generate(config: SimulatorConfig, *, progress: Progress | None = None) -> tuple[Dataset, Truth]:
    """Simulate in memory: the canonical dataset and its ground truth (no disk access)."""

    def tick(stage: str, frac: float) -> None:
        if progress is not None:
            progress(stage, frac)

    rng = _streams(config.seed)
    b = simulate_behaviour(config, streams=rng, tick=tick)
    world, users, sessions, events, req = b.world, b.users, b.sessions, b.browsing, b.requests
    tick("ads", 0.4)
    imp, click_events = serve(config, world, sessions, req, rng["ads"], events)
    tick("frames", 0.6)
    user_ids = _user_ids(users)
    impressions, request_ids = _impressions_frame(world, sessions, req, imp, user_ids)
    ds = Dataset(
        listings=world.listings_frame(config.images),
        events=_events_frame(world, Events.concat([events, click_events]), user_ids),
        impressions=impressions,
        meta=DatasetMeta(
            name=config.name,
            source="simulator",
            has_conversions=True,
            notes=[
                "Synthetic marketplace from adsformer.simulator; hidden ground truth (session intents, "
                "listing quality, click model) is in truth.json and truth/*.parquet."
            ],
            protocol={"generator": "adsformer.simulator", "seed": config.seed, "config": config.to_json()},
        ),
    )
    truth = Truth(
        truth_params(config, world),
        _truth_tables(config, world, users, sessions, req, imp, user_ids, request_ids),
    )
    tick("report", 0.8)
    truth.params["summary"] = signal_report(ds, truth)
    tick("done", 1.0)
    return ds, truth


def simulate(config: SimulatorConfig, out: Path, *, progress: Progress | None = None) -> Dataset:
    """Simulate and write the dataset, ``truth.json``, ``truth/`` and ``images/`` to ``out`` atomically."""
    out = Path(out)
    with atomic_dir(out) as tmp:
        ds, truth = generate(
            config, progress=None if progress is None else lambda st, f: progress(st, 0.8 * f)
        )
        if progress is not None:
            progress("write", 0.85)
        write_tables(ds, tmp)
        truth.write(tmp)
        if config.images:
            lt = truth.tables["listings"]
            write_images(
                tmp / "images",
                lt["listing_id"].to_list(),
                lt["shape"].to_numpy(),
                lt["pattern"].to_numpy(),
                _color_index(lt["color"], truth),
                config.image_size,
                _streams(config.seed)["images"],
                progress=None if progress is None else lambda f: progress("images", 0.9 + 0.1 * f),
            )
    return ds


def _color_index(colors: pl.Series, truth: Truth) -> np.ndarray:
    names = list(truth.params["taxonomy"]["colors"])
    return colors.replace_strict(names, list(range(len(names))), return_dtype=pl.Int32).to_numpy()
