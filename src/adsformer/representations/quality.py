"""Quality report of a representation table: does it put listings of one taxonomy together?

Two views, as in the paper (figure 13 and figure 4):

* cosine similarity of random same-taxonomy pairs against random different-taxonomy pairs (means, a
  histogram, and ``separation_auc`` = P(a same pair is more similar than a different pair); 0.5 = none);
* nearest neighbours: the share of each sampled listing's top-k neighbours in its own taxonomy against the
  share a random listing would have (``chance``), and a few worked examples with titles.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from adsformer.representations.table import RepresentationTable


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (all-zero rows stay zero), float32."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def _pair_auc(same: np.ndarray, diff: np.ndarray) -> float:
    """P(same > diff) + 0.5 P(tie) by ranks (Mann-Whitney U)."""
    both = np.concatenate([same, diff])
    order = both.argsort(kind="mergesort")
    ranks = np.empty(both.size)
    ranks[order] = np.arange(1, both.size + 1)
    _, inv, counts = np.unique(both, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, weights=ranks)
    ranks = (sums / counts)[inv]  # average ranks for ties
    u = ranks[: same.size].sum() - same.size * (same.size + 1) / 2
    return float(u / (same.size * diff.size))


def quality_report(
    table: RepresentationTable,
    listings: pl.DataFrame,
    *,
    pairs: int = 20_000,
    queries: int = 1_000,
    k: int = 10,
    examples: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """Measure taxonomy coherence of ``table`` against ``listings`` (listing_id, taxonomy_id[, title])."""
    rng = np.random.default_rng(seed)
    meta = pl.DataFrame({"listing_id": table.ids, "row": np.arange(len(table.ids))}).join(
        listings.select("listing_id", "taxonomy_id", *(["title"] if "title" in listings.columns else [])),
        on="listing_id",
        how="inner",
    )
    meta = meta.filter(pl.col("taxonomy_id").is_not_null())
    report: dict[str, Any] = {"table": table.name, "kind": table.kind, "n": len(table.ids), "dim": table.dim}
    if meta.height < 2:
        return {**report, "note": "fewer than two listings with a taxonomy: nothing to measure"}
    vec = unit_rows(table.vectors[meta["row"].to_numpy()])
    tax = meta["taxonomy_id"].cast(pl.Categorical).to_physical().to_numpy().astype(np.int64)
    n = vec.shape[0]

    # random pairs: same taxonomy (drawn within taxonomies of >= 2 listings) vs different
    order = np.argsort(tax, kind="stable")
    sizes = np.bincount(tax)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    multi = np.flatnonzero(sizes >= 2)
    same = np.empty(0, np.float32)
    if multi.size:
        weights = sizes[multi] * (sizes[multi] - 1.0)
        t = rng.choice(multi, size=pairs, p=weights / weights.sum())
        a = rng.integers(0, sizes[t])
        b = (a + rng.integers(1, sizes[t])) % sizes[t]  # != a
        ia, ib = order[starts[t] + a], order[starts[t] + b]
        same = (vec[ia] * vec[ib]).sum(1)
    ia, ib = rng.integers(0, n, pairs), rng.integers(0, n, pairs)
    keep = tax[ia] != tax[ib]
    diff = (vec[ia[keep]] * vec[ib[keep]]).sum(1)
    report["cosine_same_taxonomy"] = float(same.mean()) if same.size else None
    report["cosine_different_taxonomy"] = float(diff.mean()) if diff.size else None
    report["separation_auc"] = _pair_auc(same, diff) if same.size and diff.size else None

    # nearest neighbours (cosine), excluding the listing itself
    q = rng.choice(n, size=min(queries, n), replace=False)
    kk = min(k, n - 1)
    sims = vec[q] @ vec.T  # (Q, n)
    sims[np.arange(q.size), q] = -np.inf
    top = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]  # (Q, k), unordered
    share = (tax[top] == tax[q][:, None]).mean()
    p = sizes / n
    chance = float(((sizes - 1).clip(0) / max(n - 1, 1) * p).sum())
    report["neighbours"] = {"k": kk, "queries": int(q.size), "same_taxonomy_share": float(share)}
    report["neighbours"]["chance"] = chance
    report["neighbours"]["lift_over_chance"] = float(share / chance) if chance > 0 else None
    ex = []
    titles = meta["title"].to_list() if "title" in meta.columns else [None] * n
    ids, taxa = meta["listing_id"].to_list(), meta["taxonomy_id"].to_list()
    for qi, i in enumerate(q[:examples]):
        nn = np.argsort(-sims[qi])[:5]
        ex.append(
            {
                "listing_id": ids[i],
                "taxonomy_id": taxa[i],
                "title": titles[i],
                "neighbours": [
                    {
                        "listing_id": ids[j],
                        "taxonomy_id": taxa[j],
                        "title": titles[j],
                        "cosine": round(float(vec[i] @ vec[j]), 4),
                    }
                    for j in nn
                ],
            }
        )
    report["examples"] = ex
    report["_cosines"] = {"same": same, "different": diff}
    return report


def plot_similarity(report: dict[str, Any], path: Path) -> None:
    """Histogram of same- vs different-taxonomy cosine similarity (paper figure 13)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cos = report["_cosines"]
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=120)
    bins = np.linspace(-1, 1, 81).tolist()
    for key, label in (("different", "different taxonomy"), ("same", "same taxonomy")):
        if cos[key].size:
            ax.hist(cos[key], bins=bins, alpha=0.6, density=True, label=label)
    auc = report.get("separation_auc")
    title = f"{report['table']} ({report['kind']}): cosine similarity"
    ax.set_title(title + (f", separation AUC {auc:.3f}" if auc is not None else ""))
    ax.set_xlabel("cosine similarity of a random listing pair")
    ax.set_ylabel("density")
    ax.legend(loc="upper left")  # a fixed place: "best" scans every bar
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(report: dict[str, Any], directory: Path) -> None:
    """``quality.json`` and ``similarity.png`` into ``directory`` (the table's own, inside its atomic write)."""
    import json

    if "_cosines" in report:
        plot_similarity(report, directory / "similarity.png")
    public = {k: v for k, v in report.items() if not k.startswith("_")}
    (directory / "quality.json").write_text(json.dumps(public, indent=2) + "\n")


def save_with_report(table: RepresentationTable, listings: pl.DataFrame, out: Path) -> dict[str, Any]:
    """Measure ``table`` and write it with its quality report in one atomic write; return the report."""
    report = quality_report(table, listings)
    table.save(out, extra=lambda tmp: write_report(report, tmp))
    return {k: v for k, v in report.items() if not k.startswith("_")}
