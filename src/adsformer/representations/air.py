"""AIR (ads information retrieval) listing vectors: a pseudo two-tower network over content (paper A.8).

Both towers are one network (shared weights): a listing's input is the concatenation of its vectors from
the given content tables (text, visual, ...; L2-normalized, zeros plus a "missing" flag where a table has
no row for it) and its standardized numeric attributes (``f_*``, log price). The network maps it to a
``dim``-d unit vector. It learns from listing pairs that users related: consecutive distinct listings in a
browsing session (co-viewed) and listings clicked in the same request (co-clicked). The loss is the
in-batch softmax over cosine similarities divided by a temperature, in both directions; a batch's other
pairs are the negatives, except copies of the positive listing itself (masked).

No leakage: by default only events and impressions before the dataset's test period are read
(``until="test"``, as for the skip-gram). Held-out pairs (``eval_fraction``, by session/request) measure
recall@k of the paired listing among all listings, for AIR and for each input table on its own.

Letters: B batch of pairs, N listings, X input width, H hidden width, D output width.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import polars as pl
import torch
from pydantic import with_config
from rich.progress import BarColumn, TextColumn, TimeRemainingColumn
from torch import nn

from adsformer.config import KNOWN_KEYS_ONLY, SplitConfig, to_dict
from adsformer.console import ProgressBar
from adsformer.representations.contrastive import fit_pairs, in_batch_softmax_loss
from adsformer.representations.quality import unit_rows as _unit
from adsformer.representations.skipgram import Until, cutoff, sessionize
from adsformer.representations.table import RepresentationTable, TableError
from adsformer.runtime import torch_threads


@with_config(KNOWN_KEYS_ONLY)
@dataclass(frozen=True)
class AIRConfig:
    """Settings of ``adsformer represent air``."""

    KIND: ClassVar[str] = "air"

    tables: tuple[str, ...] = ()  # content tables (directories) the towers read, e.g. text and visual
    dim: int = 256
    hidden: int = 512
    temperature: float = 0.05
    epochs: int = 10
    batch_size: int = 512
    lr: float = 1e-3
    gap_s: int = 1800  # a gap longer than this starts a new browsing session
    eval_fraction: float = 0.1  # sessions / requests whose pairs are held out for recall@k
    ks: tuple[int, ...] = (10, 50)
    until: Until = "test"  # which events and impressions the pairs come from
    split: SplitConfig = field(default_factory=SplitConfig)
    seed: int = 0
    threads: int = 1
    name: str = "air"

    def __post_init__(self) -> None:
        for key in ("dim", "hidden", "epochs", "batch_size", "threads"):
            if getattr(self, key) < 1:
                raise TableError(f"air setting {key}={getattr(self, key)}: must be >= 1")
        if not self.temperature > 0:
            raise TableError(f"air setting temperature={self.temperature}: must be > 0")
        if not 0.0 < self.eval_fraction < 1.0:
            raise TableError(f"air setting eval_fraction={self.eval_fraction}: must be in (0, 1)")
        if not self.ks or min(self.ks) < 1:
            raise TableError(f"air setting ks={self.ks}: must be positive integers")


# ----------------------------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class Inputs:
    ids: list[str]  # the N listings that have at least one content vector
    x: np.ndarray  # (N, X) float32 tower inputs
    tables: dict[str, np.ndarray]  # table name -> (N, d) L2-normalized vectors (zeros where missing)


def build_inputs(listings: pl.DataFrame, tables: list[RepresentationTable]) -> Inputs:
    """Concatenate each listing's content vectors (+ missing flags) and standardized numeric attributes."""
    if not tables:
        raise TableError("air needs at least one content table: --set tables=[TEXT_DIR,VISUAL_DIR]")
    covered = sorted(set().union(*(t.ids for t in tables)) & set(listings["listing_id"].to_list()))
    if not covered:
        raise TableError("no listing of the dataset has a vector in any of the given tables")
    row = {lid: i for i, lid in enumerate(covered)}
    parts, by_name = [], {}
    for t in tables:
        vec = np.zeros((len(covered), t.dim), np.float32)  # (N, d)
        have = np.zeros((len(covered), 1), np.float32)
        src = [(row[lid], j) for j, lid in enumerate(t.ids) if lid in row]
        dst, rows = (np.array(a, dtype=np.int64) for a in zip(*src, strict=True))
        vec[dst] = _unit(np.asarray(t.vectors, np.float32)[rows])
        have[dst] = 1.0
        by_name[t.name] = vec
        parts += [vec, have]
    numeric = listings.filter(pl.col("listing_id").is_in(covered)).sort(
        pl.col("listing_id").replace_strict(row, return_dtype=pl.Int64)
    )
    cols = [c for c in numeric.columns if c.startswith("f_")]
    num = numeric.select(
        *[pl.col(c).cast(pl.Float64) for c in cols],
        *(
            [pl.col("price").cast(pl.Float64).log1p().alias("log_price")]
            if "price" in numeric.columns
            else []
        ),
    ).to_numpy()
    if num.size:
        missing = np.isnan(num)
        mean, std = np.nanmean(num, axis=0), np.nanstd(num, axis=0)
        num = np.where(missing, 0.0, (num - np.nan_to_num(mean)) / np.where(std > 0, std, 1.0))
        parts.append(np.nan_to_num(num).astype(np.float32))
    return Inputs(covered, np.concatenate(parts, axis=1).astype(np.float32), by_name)


# ------------------------------------------------------------------------------------------------ pairs
def related_pairs(
    events: pl.DataFrame, impressions: pl.DataFrame, gap_s: int, cutoff_ts: int | None
) -> pl.DataFrame:
    """Listing pairs users related, with the group (session or request) they came from:
    ``a, b, group`` for consecutive distinct listings of a browsing session and for listings clicked in
    the same request."""
    ev = events.select("user_id", "ts", "listing_id").filter(pl.col("listing_id").is_not_null())
    imp = impressions.filter(pl.col("clicked") == 1).select("request_id", "ts", "listing_id")
    if cutoff_ts is not None:
        ev, imp = ev.filter(pl.col("ts") < cutoff_ts), imp.filter(pl.col("ts") < cutoff_ts)
    ev = sessionize(ev, gap_s)
    viewed = ev.select(
        pl.col("listing_id").alias("a"),
        pl.col("listing_id").shift(-1).alias("b"),
        pl.format("s{}", pl.col("session")).alias("group"),
        (pl.col("session") == pl.col("session").shift(-1)).alias("same"),
    ).filter(pl.col("same") & (pl.col("a") != pl.col("b")))
    clicked = (
        imp.group_by("request_id", maintain_order=True)
        .agg(pl.col("listing_id").unique(maintain_order=True))
        .filter(pl.col("listing_id").list.len() >= 2)
        .select(
            pl.col("listing_id").list.head(pl.col("listing_id").list.len() - 1).alias("a"),
            pl.col("listing_id").list.tail(pl.col("listing_id").list.len() - 1).alias("b"),
            pl.format("r{}", pl.col("request_id")).alias("group"),
        )
        .explode("a", "b")
    )
    return pl.concat([viewed.select("a", "b", "group"), clicked], how="vertical")


# ------------------------------------------------------------------------------------------------ model
class Tower(nn.Module):
    """x (B, X) -> unit vector (B, D): Linear -> ReLU -> Linear, L2-normalized. Both sides share it."""

    def __init__(self, in_dim: int, hidden: int, dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.net(x), dim=1)  # (B, D)


# --------------------------------------------------------------------------------------------- metrics
def recall_at_k(vectors: np.ndarray, a: np.ndarray, b: np.ndarray, ks: tuple[int, ...]) -> dict[str, float]:
    """Share of pairs whose ``b`` is among the top-k cosine neighbours of ``a`` (``a`` itself excluded) over
    all N rows of ``vectors`` (N, d). Rows of zeros (no vector) never rank above a real neighbour."""
    v = _unit(np.asarray(vectors, np.float32))
    hits = dict.fromkeys(ks, 0)
    for start in range(0, a.size, 1024):
        qa, qb = a[start : start + 1024], b[start : start + 1024]
        sims = v[qa] @ v.T  # (Q, N)
        sims[np.arange(qa.size), qa] = -np.inf
        target = sims[np.arange(qa.size), qb]
        rank = (sims > target[:, None]).sum(axis=1)  # neighbours strictly closer than the pair
        missing = ~np.any(v[qb] != 0, axis=1)
        for k in ks:
            hits[k] += int(((rank < k) & ~missing).sum())
    return {f"recall@{k}": hits[k] / max(a.size, 1) for k in ks}


# ----------------------------------------------------------------------------------------------- train
def train_air(
    listings: pl.DataFrame,
    events: pl.DataFrame,
    impressions: pl.DataFrame,
    cutoff_ts: int | None,
    cfg: AIRConfig,
    tables: list[RepresentationTable],
) -> tuple[RepresentationTable, dict[str, Any]]:
    """Train AIR; returns the table (all covered listings) and the recall report."""
    torch.manual_seed(cfg.seed)
    inputs = build_inputs(listings, tables)
    row = {lid: i for i, lid in enumerate(inputs.ids)}
    pairs = related_pairs(events, impressions, cfg.gap_s, cutoff_ts).filter(
        pl.col("a").is_in(inputs.ids) & pl.col("b").is_in(inputs.ids)
    )
    if pairs.height < 2:
        raise TableError(
            "fewer than two related listing pairs (co-viewed or co-clicked) with content vectors"
        )
    groups = pairs["group"].unique().sort()
    held = set(groups.sample(fraction=cfg.eval_fraction, seed=cfg.seed).to_list())
    is_eval = pairs["group"].is_in(list(held)).to_numpy()
    a = pairs["a"].replace_strict(row, return_dtype=pl.Int64).to_numpy()
    b = pairs["b"].replace_strict(row, return_dtype=pl.Int64).to_numpy()
    tr_a, tr_b, ev_a, ev_b = a[~is_eval], b[~is_eval], a[is_eval], b[is_eval]
    x = torch.from_numpy(inputs.x)  # (N, X)
    model = Tower(x.shape[1], cfg.hidden, cfg.dim)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    steps = max(1, tr_a.size // cfg.batch_size)

    def batch_loss(rows: np.ndarray) -> torch.Tensor:
        ia, ib = torch.from_numpy(tr_a[rows]), torch.from_numpy(tr_b[rows])
        return in_batch_softmax_loss(model(x[ia]), model(x[ib]), ia, ib, cfg.temperature)

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[loss]}"),
        TimeRemainingColumn(),
    )
    with ProgressBar(*columns) as bar:
        task = bar.add_task("air", total=cfg.epochs * steps, loss="")
        losses = fit_pairs(
            batch_loss,
            opt,
            tr_a.size,
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            rng=np.random.default_rng(cfg.seed),
            on_step=lambda: bar.advance(task),
            on_epoch=lambda _e, loss: bar.update(task, loss=f"loss {loss:.3f}"),
        )
    history = [{"epoch": e + 1, "loss": loss} for e, loss in enumerate(losses)]
    model.eval()
    with torch.no_grad():
        vectors = torch.cat([model(x[i : i + 8192]) for i in range(0, len(x), 8192)]).numpy()  # (N, D)
    recall = {"air": recall_at_k(vectors, ev_a, ev_b, cfg.ks)}
    for name, vec in inputs.tables.items():
        recall[name] = recall_at_k(vec, ev_a, ev_b, cfg.ks)
    report = {
        "train_pairs": int(tr_a.size),
        "eval_pairs": int(ev_a.size),
        "listings": len(inputs.ids),
        "input_width": int(x.shape[1]),
        "recall": recall,
        "history": history,
    }
    settings = {
        **to_dict(cfg),
        "cutoff_ts": cutoff_ts,
        **{k: report[k] for k in ("train_pairs", "eval_pairs")},
    }
    return RepresentationTable(cfg.name, "air", inputs.ids, vectors, settings), report


def represent_air(data_dir: Path, out: Path, cfg: AIRConfig) -> dict[str, Any]:
    """``adsformer represent air``: train on ``data_dir`` with the content tables; write the table, its
    quality report and ``recall.json`` in one atomic write."""
    from adsformer.data.validate import read_dataset
    from adsformer.representations.quality import quality_report, write_report

    ds = read_dataset(data_dir)
    tables = [RepresentationTable.load(t) for t in cfg.tables]
    cut = cutoff(ds, cfg.until, cfg.split)
    with torch_threads(cfg.threads):
        table, retrieval = train_air(ds.listings, ds.events, ds.impressions, cut, cfg, tables)
    quality = quality_report(table, ds.listings)

    def extra(tmp: Path) -> None:
        write_report(quality, tmp)
        (tmp / "recall.json").write_text(json.dumps(retrieval, indent=2) + "\n")

    table.save(out, extra=extra)
    public = {k: v for k, v in quality.items() if not k.startswith("_")}
    return {**public, "retrieval": retrieval, "settings": table.settings}
