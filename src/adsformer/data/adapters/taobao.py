"""Adapter for the Taobao UserBehavior log (Alibaba / Tianchi).

Input: a CSV file without a header, one action per line ``user_id,item_id,category_id,behavior,unix_seconds``
with ``behavior`` in ``pv`` / ``fav`` / ``cart`` / ``buy``. ``path`` may be the file or a directory holding
``UserBehavior.csv``.

Reading is line-robust: a line with the wrong number of fields, an empty id, an unknown behavior or a
timestamp that is not a non-negative integer is skipped and reported (file, 1-based line number, reason);
the truncated last line of the public slice is such a line. A file that is empty or has no valid line
raises :class:`AdapterError`.

Mapping
-------
* events: every valid line, ``pv -> view``, ``fav -> favorite``, ``cart -> cart_add``, ``buy -> purchase``,
  with ``listing_id = item_id`` and ``taxonomy_id = category_id`` of that line.
* listings: every item; ``taxonomy_id`` = its category (the most frequent one if an item appears under
  several, ties to the earliest line). No shops, titles, prices, bids or budgets exist in this log.

Impression protocol (the log has no impressions; these are built, seeded)
-------------------------------------------------------------------------
Every ``view`` (pv line) is one request (``request_id = "tb-<line number>"``, same user and ``ts`` as the
view) holding one clicked impression, the viewed listing, shown beside up to ``negatives`` (N) non-clicked
listings of the *same category* (the clicked listing's ``taxonomy_id``):

* the non-clicked listings are drawn the way a results page would show them: by popularity, i.e. with
  probability proportional to each listing's number of views in the whole log, without replacement
  (successive weighted draws; collisions are redrawn), never the clicked listing itself. Listings that were
  never viewed have weight 0 and are never drawn.
* ``exclude_user_history=False`` (default, SPEC section 5): only the clicked listing is excluded. Listings
  the user viewed at other times may appear as non-clicked ones, so "was it in my history" does not separate
  clicks from non-clicks by construction.
  ``exclude_user_history=True`` is the stricter rule of the original issue ("N listings of the same
  category that the user had not viewed", over the whole log): every listing the user ever viewed is
  excluded. It inflates personalised models' lift, because every history match is then a click.
* a category with fewer than N eligible listings shows as many as exist, possibly none (a request with a
  single, clicked impression); the counts are in ``dataset.json`` ``protocol``.
* positions: the clicked listing takes a slot drawn uniformly from ``1..k+1`` (k = non-clicked shown); the
  non-clicked listings fill the other slots top-down in the order they were drawn (so more popular listings
  tend to sit higher). Each request's positions are a permutation of ``1..k+1``.
* ``purchased`` (clicked impressions only): 1 when the same user has a ``buy`` of the same listing with
  ``0 <= buy_ts - view_ts <= purchase_window_s`` (a buy in the same second counts: the log's times are
  coarse); otherwise 0. Every view inside the window before a buy is labelled, so one buy can label several
  clicks. Non-clicked impressions have ``purchased = 0``.

Sampling is vectorized: per category, cumulative view counts + ``searchsorted`` on draws from
``numpy.random.Generator(PCG64(seed))``, rounds of redraws for collisions, and an exact
Efraimidis-Spirakis pass for the few requests still short after ``MAX_ROUNDS``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from adsformer.data.adapters.base import (
    AdapterError,
    AdapterResult,
    Progress,
    first_reason,
    progress_or_noop,
    publish,
    read_lines,
    skipped_lines,
    skipped_notes,
)
from adsformer.data.schema import DatasetMeta

NAME = "taobao-userbehavior"
DEFAULT_FILE = "UserBehavior.csv"
FIELDS = ("user_id", "item_id", "category_id", "behavior", "unix_seconds")
BEHAVIORS = {"pv": "view", "fav": "favorite", "cart": "cart_add", "buy": "purchase"}

#: Redraw rounds before the exact fallback fills the requests that are still short.
MAX_ROUNDS = 8


def prepare_taobao(
    path: Path,
    out: Path,
    *,
    negatives: int = 4,
    exclude_user_history: bool = False,
    purchase_window_s: int = 86_400,
    seed: int = 0,
    popularity: str = "day",
    progress: Progress | None = None,
) -> AdapterResult:
    """Turn a Taobao UserBehavior CSV into the canonical dataset at ``out`` (see the module docstring).

    Args:
        path: the CSV file, or a directory holding ``UserBehavior.csv``.
        out: the dataset directory to write (replaced atomically).
        negatives: N, the most non-clicked listings shown beside each clicked one (>= 0).
        exclude_user_history: False (default, SPEC): exclude only the clicked listing from its negatives.
            True: exclude every listing the user viewed anywhere in the log (the issue's stricter rule;
            makes history membership separate clicks from non-clicks).
        purchase_window_s: a buy of the same listing by the same user at most this many seconds after the
            view (same second included) labels the view ``purchased = 1``.
        seed: seeds negative sampling and the clicked listing's position.
        popularity: "day" (default): non-clicked listings are drawn by their view count in the category on
            the request's UTC day; "log": by the whole log's view count, which looks ahead (a listing popular
            only in later days is shown as non-clicked earlier, an anti-signal for id-based models).
        progress: called with one line per step.

    Returns:
        :class:`AdapterResult` with the dataset, ``out``, the skipped lines and the notes.

    Raises:
        AdapterError: missing/empty file, no valid line, no ``pv`` line, or bad options.
    """
    say = progress_or_noop(progress)
    path = Path(path)
    if negatives < 0:
        raise AdapterError(f"negatives must be >= 0, got {negatives}")
    if purchase_window_s < 0:
        raise AdapterError(f"purchase_window_s must be >= 0, got {purchase_window_s}")
    if popularity not in ("day", "log"):
        raise AdapterError(f"popularity must be 'day' or 'log', got {popularity!r}")
    file = path / DEFAULT_FILE if path.is_dir() else path
    if not file.is_file():
        raise AdapterError(
            f"{file}: file not found; expected the Taobao UserBehavior CSV ({','.join(FIELDS)})"
        )

    say(f"reading {file.name}")
    rows, skipped = _parse(file)
    say(f"{rows.height:,} valid lines, {len(skipped)} skipped")

    listings = _listings(rows)
    events = rows.sort("user_id", "ts", "line_no").select(
        "user_id", "ts", "action", "listing_id", "taxonomy_id"
    )
    say(f"building impressions ({negatives} negatives per view, seed {seed})")
    impressions, stats = _impressions(
        rows,
        listings,
        negatives=negatives,
        exclude_user_history=exclude_user_history,
        purchase_window_s=purchase_window_s,
        seed=seed,
        popularity=popularity,
    )

    n_requests = stats["requests"]
    notes = [
        "Impressions are synthetic: each pv (view) is a clicked impression shown beside up to "
        f"{negatives} popularity-weighted listings of the same category; CTR is about 1/(k+1) by "
        "construction and says nothing about real user behaviour.",
        (
            "Popularity weights are the listing's view count in its category on the request's UTC day (a "
            "results page ranks by current popularity); same-day views count, later days never do."
            if popularity == "day"
            else "Popularity weights are view counts over the whole log: this looks ahead (a listing popular "
            "only in the test days is shown as non-clicked in the training days), which penalizes every "
            "id-based model; prefer popularity='day'."
        ),
        (
            "exclude_user_history=True: every listing the user viewed is excluded from their negatives (the "
            "issue's rule). Any history match is then a click by construction, which inflates the lift of "
            "every personalised model; use the default (False, SPEC section 5) for honest comparisons."
            if exclude_user_history
            else "Only the clicked listing is excluded from its request's negatives (SPEC section 5); listings "
            "from the user's own history may be shown as non-clicked. The issue's stricter rule (exclude "
            "everything the user viewed) is available with exclude_user_history=True, at the cost of making "
            "'was it in my history' separate clicks from non-clicks by construction."
        ),
        f"{stats['short_requests']:,} of {n_requests:,} requests show fewer than {negatives} non-clicked "
        f"listings because their category has too few eligible viewed listings; {stats['lonely_requests']:,} "
        "show none (a single clicked impression).",
        f"purchased = 1 when the same user bought the listing 0..{purchase_window_s} s after the view (same "
        "second included); one buy labels every view in its window. Buys with no earlier view label nothing.",
        "Never-viewed listings are never drawn as negatives (weight 0). No shops, prices, titles, queries, "
        "bids or budgets exist in this log.",
    ]
    if stats["multi_category_items"]:
        notes.append(
            f"{stats['multi_category_items']} item(s) appear under several categories: the listing's "
            "taxonomy_id is its most frequent one; events keep the category of their own line."
        )
    notes += skipped_notes(skipped)
    protocol = {
        "source_file": file.name,
        "behavior_map": dict(BEHAVIORS),
        "impressions": "one request per view: the viewed listing (clicked=1) beside up to N non-clicked "
        "listings of its category drawn without replacement with probability proportional to the listing's "
        + (
            "view count in that category on the request's UTC day"
            if popularity == "day"
            else "view count in the whole log"
        ),
        "popularity": popularity,
        "negatives": negatives,
        "exclude_user_history": exclude_user_history,
        "excluded_from_negatives": "every listing the user viewed"
        if exclude_user_history
        else "the clicked listing only",
        "category": "the clicked listing's taxonomy_id (its most frequent category_id)",
        "positions": "clicked slot uniform in 1..k+1; non-clicked fill the other slots in draw order",
        "request_id": "tb-<1-based line number of the pv line>",
        "purchase_rule": "clicked and the same user bought the same listing with "
        "0 <= buy_ts - view_ts <= purchase_window_s",
        "purchase_window_s": purchase_window_s,
        "seed": seed,
        "rng": "numpy.random.Generator(PCG64(seed))",
        "requests": n_requests,
        "requests_with_fewer_negatives": stats["short_requests"],
        "requests_without_negatives": stats["lonely_requests"],
        "skipped_lines": len(skipped),
    }
    source = f"Taobao UserBehavior ({file.name})"
    meta = DatasetMeta(NAME, source, has_conversions=True, notes=notes, protocol=protocol)
    return publish((listings, events, impressions), meta, out, say, skipped)


# -- reading --------------------------------------------------------------------------------------------


def _parse(file: Path) -> tuple[pl.DataFrame, list]:
    lines = read_lines(file)
    if lines.height == 0:
        raise AdapterError(f"{file.name}: the file is empty; expected CSV lines {','.join(FIELDS)}")
    f = pl.col("fields")
    parsed = (
        lines.with_columns(pl.col("text").str.split(",").alias("fields"))
        .with_columns(
            pl.col("fields").list.len().alias("n_fields"),
            *[f.list.get(i, null_on_oob=True).str.strip_chars().alias(name) for i, name in enumerate(FIELDS)],
        )
        .with_columns(
            pl.col("unix_seconds").str.to_integer(base=10, strict=False).alias("ts"),
            pl.col("behavior")
            .replace_strict(BEHAVIORS, default=None, return_dtype=pl.String)
            .alias("action"),
        )
    )
    checks: list[tuple[pl.Expr, str | pl.Expr]] = [
        (pl.col("bad_encoding"), "not valid UTF-8"),
        (pl.col("text").str.strip_chars() == "", "empty line"),
        (
            pl.col("n_fields") != len(FIELDS),
            pl.format(
                f"expected {len(FIELDS)} comma-separated fields ({','.join(FIELDS)}), found {{}}",
                pl.col("n_fields"),
            ),
        ),
    ]
    for i, name in enumerate(FIELDS[:3]):
        checks.append((pl.col(name) == "", f"column {i + 1} ({name}) is empty; expected an id"))
    checks += [
        (
            pl.col("action").is_null(),
            pl.format(
                "column 4 (behavior): unknown behavior '{}'; expected one of pv, fav, cart, buy",
                pl.col("behavior"),
            ),
        ),
        (
            pl.col("ts").is_null(),
            pl.format("column 5 (unix_seconds): '{}' is not an integer", pl.col("unix_seconds")),
        ),
        (
            pl.col("ts") < 0,
            pl.format("column 5 (unix_seconds): {} is negative; expected Unix seconds >= 0", pl.col("ts")),
        ),
    ]
    parsed = parsed.with_columns(first_reason(checks).alias("reason"))
    bad = parsed.filter(pl.col("reason").is_not_null())
    skipped = skipped_lines(bad, file.name)
    good = parsed.filter(pl.col("reason").is_null()).select(
        "line_no",
        "user_id",
        pl.col("item_id").alias("listing_id"),
        pl.col("category_id").alias("taxonomy_id"),
        "action",
        pl.col("ts").cast(pl.Int64),
    )
    if good.height == 0:
        raise AdapterError(
            f"{file.name}: none of the {lines.height:,} line(s) is a valid record "
            f"({','.join(FIELDS)}); first problem: {skipped[0]}"
        )
    return good, skipped


def _listings(rows: pl.DataFrame) -> pl.DataFrame:
    """One row per item: its most frequent category (ties to the earliest line)."""
    return (
        rows.group_by("listing_id", "taxonomy_id")
        .agg(pl.len().alias("n"), pl.col("line_no").min().alias("first"))
        .sort(["listing_id", "n", "first"], descending=[False, True, False])
        .unique("listing_id", keep="first", maintain_order=True)
        .select("listing_id", "taxonomy_id")
    )


# -- impressions ----------------------------------------------------------------------------------------


def _impressions(
    rows: pl.DataFrame,
    listings: pl.DataFrame,
    *,
    negatives: int,
    exclude_user_history: bool,
    purchase_window_s: int,
    seed: int,
    popularity: str = "day",
) -> tuple[pl.DataFrame, dict[str, int]]:
    rng = np.random.Generator(np.random.PCG64(seed))
    multi = (
        rows.group_by("listing_id").agg(pl.col("taxonomy_id").n_unique()).filter(pl.col("taxonomy_id") > 1)
    )

    # Integer codes: items in listings order (sorted by id), categories by id, users by id.
    items = listings.sort("listing_id").with_row_index("item").with_columns(pl.col("item").cast(pl.Int64))
    cats = (
        items.select("taxonomy_id")
        .unique()
        .sort("taxonomy_id")
        .with_row_index("cat")
        .with_columns(pl.col("cat").cast(pl.Int64))
    )
    items = items.join(cats, on="taxonomy_id", how="left")
    n_items = items.height
    views = (
        rows.filter(pl.col("action") == "view")
        .sort("line_no")
        .join(items.select("listing_id", "item", "cat"), on="listing_id", how="left", maintain_order="left")
    )
    if views.height == 0:
        raise AdapterError(
            "no 'pv' line in the log: impressions are built from views, so there is nothing to "
            "label (expected at least one line with behavior pv)"
        )
    users = (
        views.select("user_id")
        .unique()
        .sort("user_id")
        .with_row_index("user")
        .with_columns(pl.col("user").cast(pl.Int64))
    )
    views = views.join(users, on="user_id", how="left", maintain_order="left")

    # Pool: viewed items per category (and per UTC day with popularity="day"), weight = view count there.
    # Per-day pools keep the protocol causal at day resolution: a listing that only becomes popular in the
    # test days is never shown as a non-clicked ad in the training days (which would teach every id-based
    # model the opposite of what the test days show).
    day = (pl.col("ts") // 86_400) if popularity == "day" else pl.lit(0, dtype=pl.Int64)
    views = views.with_columns(day.cast(pl.Int64).alias("day"))
    groups = (
        views.select("cat", "day")
        .unique()
        .sort("cat", "day")
        .with_row_index("grp")
        .with_columns(pl.col("grp").cast(pl.Int64))
    )
    views = views.join(groups, on=["cat", "day"], how="left", maintain_order="left")
    counts = views.group_by("item", "grp").len()
    pool = counts.sort("grp", "item").select(
        "item", pl.col("grp").alias("cat"), pl.col("len").cast(pl.Int64).alias("w")
    )
    n_cats = groups.height
    pool_item = pool["item"].to_numpy()
    pool_w = pool["w"].to_numpy()
    pool_cat = pool["cat"].to_numpy()
    cat_lo = np.searchsorted(pool_cat, np.arange(n_cats), side="left")
    cat_hi = np.searchsorted(pool_cat, np.arange(n_cats), side="right")

    req_item = views["item"].to_numpy()
    req_cat = views["grp"].to_numpy()  # the request's pool: its category (on its day)
    req_user = views["user"].to_numpy()
    n_req = req_item.size

    excluded_keys: np.ndarray | None = None
    size = cat_hi[req_cat] - cat_lo[req_cat]
    if exclude_user_history:
        pairs = views.select("user", "item").unique()
        excluded_keys = np.sort(pairs["user"].to_numpy() * n_items + pairs["item"].to_numpy())
        # items this user ever viewed that sit in each pool (a pool is one category, on one day)
        in_pool = pairs.join(pool.select("item", "cat"), on="item", how="inner")
        per_user_cat = in_pool.group_by("user", "cat").len()
        uc_keys = per_user_cat["user"].to_numpy() * n_cats + per_user_cat["cat"].to_numpy()
        order = np.argsort(uc_keys)
        uc_keys, uc_n = uc_keys[order], per_user_cat["len"].to_numpy()[order].astype(np.int64)
        seen_in_cat = uc_n[np.searchsorted(uc_keys, req_user * n_cats + req_cat)]
        eligible = size - seen_in_cat
    else:
        eligible = size - 1
    k = np.minimum(negatives, np.maximum(eligible, 0)).astype(np.int64)

    neg_req, neg_item, neg_rank = sample_negatives(
        req_item=req_item,
        req_cat=req_cat,
        req_user=req_user,
        k=k,
        pool_item=pool_item,
        pool_w=pool_w,
        cat_lo=cat_lo,
        cat_hi=cat_hi,
        n_items=n_items,
        excluded_keys=excluded_keys,
        rng=rng,
    )

    # Positions: the clicked one uniform in 1..k+1, the others fill the remaining slots in draw order.
    click_pos = rng.integers(1, k + 2)
    neg_pos = neg_rank + 1
    neg_pos = np.where(neg_pos >= click_pos[neg_req], neg_pos + 1, neg_pos)

    purchased = _purchase_labels(rows, views, purchase_window_s)
    item_ids = items["listing_id"]
    request_id = pl.concat_str(pl.lit("tb-"), pl.col("line_no").cast(pl.String))
    clicked = views.select(
        request_id.alias("request_id"),
        "user_id",
        "ts",
        "listing_id",
        pl.lit(1, dtype=pl.Int8).alias("clicked"),
        pl.Series("position", click_pos, dtype=pl.Int32),
        purchased.cast(pl.Int8).alias("purchased"),
        pl.Series("req", np.arange(n_req, dtype=np.int64)),
    )
    head = clicked.select("request_id", "user_id", "ts")
    non_clicked = pl.concat(
        [
            head.select(pl.all().gather(neg_req)),
            pl.DataFrame(
                {
                    "listing_id": item_ids.gather(neg_item),
                    "clicked": pl.Series(np.zeros(neg_req.size, dtype=np.int8)),
                    "position": pl.Series(neg_pos, dtype=pl.Int32),
                    "purchased": pl.Series(np.zeros(neg_req.size, dtype=np.int8)),
                    "req": neg_req,
                }
            ),
        ],
        how="horizontal",
    )
    impressions = pl.concat([clicked, non_clicked], how="vertical").sort("req", "position").drop("req")
    stats = {
        "requests": n_req,
        "short_requests": int((k < negatives).sum()),
        "lonely_requests": int((k == 0).sum()),
        "multi_category_items": multi.height,
    }
    return impressions, stats


def sample_negatives(
    *,
    req_item: np.ndarray,
    req_cat: np.ndarray,
    req_user: np.ndarray,
    k: np.ndarray,
    pool_item: np.ndarray,
    pool_w: np.ndarray,
    cat_lo: np.ndarray,
    cat_hi: np.ndarray,
    n_items: int,
    excluded_keys: np.ndarray | None,
    rng: np.random.Generator,
    max_rounds: int = MAX_ROUNDS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw ``k[r]`` distinct pool items of category ``req_cat[r]`` for every request ``r``, with probability
    proportional to ``pool_w``, never ``req_item[r]`` nor (when given) an item whose key
    ``req_user[r] * n_items + item`` is in the sorted ``excluded_keys``.

    The pool is sorted by category; category ``c`` occupies ``pool_*[cat_lo[c]:cat_hi[c]]``. ``k`` must not
    exceed the number of eligible items. Returns ``(request, item, rank)`` arrays sorted by request then rank
    (the draw order). Successive weighted draws with rejection, in vectorized rounds; requests still short
    after ``max_rounds`` are completed exactly by Efraimidis-Spirakis keys over their remaining items (same
    distribution).
    """
    n_req = req_item.size
    cum = np.cumsum(pool_w, dtype=np.int64)
    before = np.concatenate([[0], cum])  # before[j] = total weight of pool[:j]
    cat_start_w = before[cat_lo]
    cat_total_w = before[cat_hi] - before[cat_lo]

    def bad(r: np.ndarray, item: np.ndarray) -> np.ndarray:
        out = item == req_item[r]
        if excluded_keys is not None and excluded_keys.size:
            key = req_user[r] * n_items + item
            pos = np.clip(np.searchsorted(excluded_keys, key), 0, excluded_keys.size - 1)
            out |= excluded_keys[pos] == key
        return out

    got_r: list[np.ndarray] = []
    got_i: list[np.ndarray] = []
    got_rank: list[np.ndarray] = []
    have = np.zeros(n_req, dtype=np.int64)
    chosen_keys = np.empty(0, dtype=np.int64)

    def take(r: np.ndarray, item: np.ndarray, ok: np.ndarray) -> None:
        """Keep, per request in draw order, the first still-missing valid new items."""
        nonlocal have, chosen_keys
        key = r * n_items + item
        ok = ok & ~np.isin(key, chosen_keys)
        first = np.zeros(key.size, dtype=bool)
        first[np.unique(key, return_index=True)[1]] = True
        idx = np.flatnonzero(ok & first)
        g = r[idx]
        if g.size == 0:
            return
        starts = np.flatnonzero(np.concatenate([[True], g[1:] != g[:-1]]))
        lengths = np.diff(np.append(starts, g.size))
        rank_in_round = np.arange(g.size) - np.repeat(starts, lengths)
        keep = rank_in_round < (k[g] - have[g])
        idx, g, rank_in_round = idx[keep], g[keep], rank_in_round[keep]
        got_r.append(g)
        got_i.append(item[idx])
        got_rank.append(have[g] + rank_in_round)
        chosen_keys = np.union1d(chosen_keys, key[idx])
        have += np.bincount(g, minlength=n_req)

    for round_ in range(max_rounds):
        deficit = k - have
        active = np.flatnonzero(deficit > 0)
        if active.size == 0:
            break
        m = (2 * deficit[active] + 2) << round_
        r = np.repeat(active, m)
        c = req_cat[r]
        u = cat_start_w[c] + rng.integers(0, cat_total_w[c])
        item = pool_item[np.searchsorted(cum, u, side="right")]
        take(r, item, ~bad(r, item))

    deficit = k - have
    left = np.flatnonzero(deficit > 0)
    if left.size:  # exact completion: largest log(U)/w over the remaining eligible items
        sizes = cat_hi[req_cat[left]] - cat_lo[req_cat[left]]
        r = np.repeat(left, sizes)
        offsets = np.arange(r.size) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        j = cat_lo[req_cat[r]] + offsets
        item = pool_item[j]
        score = np.log1p(-rng.random(r.size)) / pool_w[j]
        ok = ~bad(r, item) & ~np.isin(r * n_items + item, chosen_keys)
        order = np.lexsort((-score, r))
        r, item, ok = r[order], item[order], ok[order]
        take(r, item, ok)

    if not got_r:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, empty
    rr, ii, kk = np.concatenate(got_r), np.concatenate(got_i), np.concatenate(got_rank)
    order = np.lexsort((kk, rr))
    return rr[order], ii[order], kk[order]


def _purchase_labels(rows: pl.DataFrame, views: pl.DataFrame, window_s: int) -> pl.Series:
    """For each view (in ``views`` order): did the same user buy the same listing 0..window_s s later?"""
    buys = (
        rows.filter(pl.col("action") == "purchase")
        .select("user_id", "listing_id", pl.col("ts").alias("buy_ts"))
        .unique()
        .sort("buy_ts")
    )
    left = views.select("user_id", "listing_id", "ts", pl.int_range(pl.len()).alias("_i")).sort("ts")
    joined = left.join_asof(
        buys,
        left_on="ts",
        right_on="buy_ts",
        by=["user_id", "listing_id"],
        strategy="forward",
        check_sortedness=False,
    )
    labels = joined.sort("_i").select(
        (pl.col("buy_ts").is_not_null() & (pl.col("buy_ts") - pl.col("ts") <= window_s)).alias("purchased")
    )
    return labels["purchased"]
