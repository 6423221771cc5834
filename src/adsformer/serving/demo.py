"""The serving demo: :func:`replay` starts the service in-process on trained runs, replays a few simulated
users' recent actions through ``POST /events`` and prints their ads from ``POST /rank`` before and after.

For each chosen user the demo takes one of their search requests from the dataset's impressions and the
user's actions in the hour before it, shifted in time so that they end a few seconds ago (the service's
clock is the request time). "Before" is the ranking for that query with no history; "after" is the same
query once the actions are in the store: the difference is the personalization.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from rich.table import Table

from adsformer.console import console
from adsformer.serving.app import create_app
from adsformer.serving.settings import ServingSettings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's note that its test client will move to httpx2
    from fastapi.testclient import TestClient

DEMO_KEY = "demo-key"


@dataclass(frozen=True)
class ReplayUser:
    user_id: str  # the dataset's id; "b_*" ids are replayed as logged-out browsers
    query: str
    events: pl.DataFrame  # the actions before the request, oldest first


def pick_users(data_dir: Path, n: int, *, window_s: int = 3600, min_events: int = 6) -> list[ReplayUser]:
    """Up to ``n`` users (logged-in and browsers alternately) with a search request preceded by at least
    ``min_events`` actions within ``window_s``; the busiest such requests first."""
    events = pl.read_parquet(data_dir / "events.parquet")
    imps = pl.read_parquet(data_dir / "impressions.parquet", columns=["request_id", "user_id", "ts", "query"])
    requests = imps.drop_nulls("query").unique("request_id").sort("ts")
    counted = (
        requests.join(events.select("user_id", pl.col("ts").alias("ets")), on="user_id")
        .filter((pl.col("ets") < pl.col("ts")) & (pl.col("ets") >= pl.col("ts") - window_s))
        .group_by("request_id", "user_id", "ts", "query")
        .len()
        .filter(pl.col("len") >= min_events)
        .sort(["len", "request_id"], descending=[True, False])
        .unique("user_id", keep="first", maintain_order=True)
    )
    logged_in = counted.filter(pl.col("user_id").str.starts_with("u_"))
    browsers = counted.filter(~pl.col("user_id").str.starts_with("u_"))
    chosen: list[dict[str, Any]] = []
    for i in range(max(logged_in.height, browsers.height)):
        for frame in (logged_in, browsers):
            if i < frame.height and len(chosen) < n:
                chosen.append(frame.row(i, named=True))
    out = []
    for row in chosen:
        evs = events.filter(
            (pl.col("user_id") == row["user_id"])
            & (pl.col("ts") < row["ts"])
            & (pl.col("ts") >= row["ts"] - window_s)
        ).sort("ts", maintain_order=True)
        out.append(ReplayUser(row["user_id"], row["query"], evs))
    return out


def replay(
    ctr_run: str | Path,
    data_dir: str | Path,
    *,
    pccvr_run: str | Path | None = None,
    users: int = 3,
    n_ads: int = 5,
    redis_url: str | None = None,
    feature_log_dir: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Replay ``users`` simulated users through the service (in-process); print and return, per user,
    the query, the actions sent and the ads before and after."""
    data_dir = Path(data_dir)
    start = time.perf_counter()
    settings = ServingSettings(
        run=Path(ctr_run),
        pccvr_run=Path(pccvr_run) if pccvr_run is not None else None,
        catalog=data_dir,
        redis_url=redis_url,
        api_keys=[DEMO_KEY],
        cache_ttl_s=0,
        feature_log_dir=Path(feature_log_dir) if feature_log_dir is not None else None,
    )
    app = create_app(settings)
    titles = _titles(data_dir)
    results = []
    with TestClient(app) as client:
        for user in pick_users(data_dir, users):
            who = {"browser_id": user.user_id} if user.user_id.startswith("b_") else {"user_id": user.user_id}
            ask = {**who, "query": user.query, "n": n_ads}
            before = _post(client, "/rank", ask)
            shift = int(time.time()) - 2 - int(user.events["ts"].to_numpy().max())  # the last action 2 s ago
            sent = [
                {k: v for k, v in row.items() if k in _EVENT_KEYS and v is not None}
                | {"ts": row["ts"] + shift}
                for row in user.events.to_dicts()
            ]
            _post(client, "/events", {**who, "events": sent}, headers={"X-API-Key": DEMO_KEY})
            after = _post(client, "/rank", ask)
            change = _change(before, after)
            results.append(
                {"user": user.user_id, "query": user.query, "events": sent, "before": before, "after": after}
                | change
            )
            console.print(_table(user, sent, before, after, titles))
            console.print(
                f"  {change['history_events']} sequence entries in the window; the top {n_ads} kept "
                f"{change['kept']} ads ({change['moved']} at another position); mean pCTR of the shown ads "
                f"{change['mean_p_ctr_before']:.4f} -> {change['mean_p_ctr_after']:.4f}"
            )
    console.print(
        f"serving demo: {len(results)} users replayed through POST /events and POST /rank "
        f"({app.state.service.store.kind} store) in {time.perf_counter() - start:.1f} s"
    )
    return results


_EVENT_KEYS = {"ts", "action", "listing_id", "shop_id", "taxonomy_id", "query"}


def _change(before: Any, after: Any) -> dict[str, Any]:
    """How the ranking moved once the user's actions were in the store."""
    b = [x["listing_id"] for x in before["ads"]]
    a = [x["listing_id"] for x in after["ads"]]
    return {
        "history_events": after["history_events"],
        "kept": len(set(a) & set(b)),
        "moved": sum(1 for i, lid in enumerate(a) if lid in b and b.index(lid) != i),
        "mean_p_ctr_before": _mean_p(before["ads"]),
        "mean_p_ctr_after": _mean_p(after["ads"]),
    }


def _mean_p(ads: list[dict[str, Any]]) -> float:
    return sum(x["p_ctr"] for x in ads) / max(1, len(ads))


def _post(client: TestClient, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    response = client.post(path, json=body, headers=headers)
    if response.status_code != 200:
        raise RuntimeError(f"POST {path} -> {response.status_code}: {response.text}")
    return response.json()


def _titles(data_dir: Path) -> dict[str, str]:
    listings = pl.read_parquet(data_dir / "listings.parquet")
    cols = [c for c in ("title", "taxonomy_id") if c in listings.columns]
    if not cols:
        return {}
    text = pl.concat_str([pl.col(c).fill_null("") for c in cols], separator="  |  ")
    return dict(
        zip(listings["listing_id"].to_list(), listings.select(text).to_series().to_list(), strict=True)
    )


def _table(
    user: ReplayUser, sent: list[dict[str, Any]], before: Any, after: Any, titles: dict[str, str]
) -> Table:
    views = [titles.get(e.get("listing_id", ""), "") for e in sent if e["action"] == "view"][-3:]
    actions = pl.Series([e["action"] for e in sent]).value_counts(sort=True)
    summary = ", ".join(f"{a} x{c}" for a, c in actions.iter_rows())
    table = Table(
        title=f"{user.user_id}: query {user.query!r}; replayed {summary}; last views: {'; '.join(views)}",
        title_justify="left",
    )
    for col in ("#", "before (no history)", "pCTR", "after the replayed actions", "pCTR", "CPC"):
        table.add_column(col, justify="right" if col in ("#", "pCTR", "CPC") else "left")
    rows = max(len(before["ads"]), len(after["ads"]))
    for i in range(rows):
        b = before["ads"][i] if i < len(before["ads"]) else None
        a = after["ads"][i] if i < len(after["ads"]) else None
        table.add_row(
            str(i + 1),
            titles.get(b["listing_id"], b["listing_id"]) if b else "",
            f"{b['p_ctr']:.4f}" if b else "",
            titles.get(a["listing_id"], a["listing_id"]) if a else "",
            f"{a['p_ctr']:.4f}" if a else "",
            f"{a['cpc']:.3f}" if a else "",
        )
    return table
