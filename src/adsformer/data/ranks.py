"""Request-relative features: where a candidate's value stands among the other candidates of its request.

A price means little on its own (a hotel in Paris against one in Lyon); "the cheapest of this list" is what a
user sees. For each configured numeric column ``X`` the model also reads ``rank(X)``, the candidate's
percentile rank of ``X`` within its ranking request: 0 for the lowest value, 1 for the highest, ties share
their mean rank, a request of one candidate gets 0.5. Offline the request is the logged impression list
(the rows of one ``request_id``, or without that column the rows of one user at one second); online it is the
candidates being ranked. Both call :func:`within_request_rank` on the
*standardized* column (a monotone map of the raw value, so the ranks are the raw values' ranks, and a missing
value, standardized to 0, ranks as the training mean does), so training and serving cannot disagree.

Online, a column the request's ``context`` supplies holds one value for every candidate, so its rank is 0.5
for all of them: rank a column the catalog holds per listing (or pass per-candidate values through the
catalog), or switch the rank off (``data.request_ranks: []``) for a run served that way.

``auto`` (the default) ranks the price columns: ``price`` and every ``f_*price`` column except ``f_log_*``
(the log of a price ranks exactly as the price does).
"""

from __future__ import annotations

import numpy as np

from adsformer.config import ConfigError

PREFIX, SUFFIX = "rank(", ")"


def rank_name(column: str) -> str:
    """The dense feature name of ``column``'s within-request rank."""
    return f"{PREFIX}{column}{SUFFIX}"


def ranked_column(name: str) -> str | None:
    """The column a ``rank(X)`` feature ranks, else None."""
    if name.startswith(PREFIX) and name.endswith(SUFFIX):
        return name[len(PREFIX) : -len(SUFFIX)]
    return None


def resolve_rank_columns(requested: tuple[str, ...], dense: list[str]) -> list[str]:
    """The numeric columns to rank: ``auto`` expands to the price columns among ``dense``; named columns
    must be numeric features of the data."""
    out: list[str] = []
    for name in requested:
        if name == "auto":
            matches = [
                c for c in dense if c == "price" or (c.endswith("price") and not c.startswith("f_log"))
            ]
        elif name in dense:
            matches = [name]
        else:
            raise ConfigError(
                f"data.request_ranks: {name!r} is not a numeric feature of this dataset; "
                f"use one of {dense} (or auto, or [] for none)"
            )
        out += [m for m in matches if m not in out]
    return out


def within_request_rank(values: np.ndarray, request: np.ndarray) -> np.ndarray:
    """Percentile rank of ``values`` (N,) within each group of ``request`` (N,) codes -> (N,) float32 in
    [0, 1]; ties get their mean rank, a group of one 0.5."""
    n = values.shape[0]
    out = np.full(n, 0.5, np.float32)
    if n == 0:
        return out
    order = np.lexsort((values, request))  # by request, then value
    g, v = request[order], values[order]
    new_group = np.r_[True, g[1:] != g[:-1]]
    group_start = np.maximum.accumulate(np.where(new_group, np.arange(n), 0))  # (N,) index of the group head
    group_id = np.cumsum(new_group) - 1
    group_size = np.bincount(group_id)[group_id]  # (N,)
    new_tie = new_group | np.r_[True, v[1:] != v[:-1]]
    tie_id = np.cumsum(new_tie) - 1
    pos = np.arange(n) - group_start  # 0-based rank within the group
    tie_mean = np.bincount(tie_id, weights=pos) / np.bincount(tie_id)  # mean rank of each tie run
    denom = np.maximum(group_size - 1, 1)
    ranked = np.where(group_size > 1, tie_mean[tie_id] / denom, 0.5)
    out[order] = ranked.astype(np.float32)
    return out
