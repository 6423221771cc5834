"""Skip-gram listing vectors from browsing sessions (paper section 3, SPEC section 3).

A session is one user's run of listing actions with no gap longer than ``gap_s``; its listing ids, with
consecutive repeats collapsed, are a sentence. Sessions that contain a purchase are repeated
``purchase_upsample`` times (5:1 in the paper). gensim's skip-gram with hierarchical softmax
(``sg=1, hs=1, negative=0``) learns one ``dim``-d vector per listing.

No leakage by default: only events before the start of the dataset's test period (the same time split the
ranker uses, ``until="test"``) are read, so test impressions never see vectors trained on their own clicks.
``until="val"`` stops at the validation period too; ``until="all"`` reads every event (for serving).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

import numpy as np
import polars as pl
from pydantic import with_config

from adsformer.config import KNOWN_KEYS_ONLY, SplitConfig, to_dict
from adsformer.data.schema import Dataset
from adsformer.data.splits import time_split
from adsformer.representations.table import RepresentationTable, TableError

#: Which events a learned table reads: before the test period, before validation, or all of them
Until = Literal["test", "val", "all"]
UNTIL: tuple[Until, ...] = get_args(Until)


@with_config(KNOWN_KEYS_ONLY)
@dataclass(frozen=True)
class SkipGramConfig:
    """Settings of ``adsformer represent skipgram``."""

    KIND: ClassVar[str] = "skipgram"

    dim: int = 64
    window: int = 5
    epochs: int = 5
    min_count: int = 1  # listings seen fewer times are left out of the table (OOV at lookup)
    gap_s: int = 1800  # a gap longer than this starts a new session
    purchase_upsample: int = 5  # sessions with a purchase are repeated this many times
    until: Until = "test"  # "test": events before the test period; "val": before validation; "all"
    workers: int = 1  # gensim threads; 1 is reproducible for a given seed, more is faster
    seed: int = 0
    name: str = "skipgram"
    split: SplitConfig = field(default_factory=SplitConfig)  # must match the ranker's, for until=test|val


@dataclass(frozen=True)
class Sessions:
    sentences: list[list[str]]  # after up-sampling
    n_sessions: int  # before up-sampling, sessions with >= 2 listings
    n_purchase_sessions: int
    cutoff_ts: int | None  # events with ts < cutoff_ts were read (None: all)


def cutoff(ds: Dataset, until: str, split: SplitConfig) -> int | None:
    """The first instant not read: the start of the test (or validation) period, or None for ``all``."""
    if until not in UNTIL:
        raise TableError(f"until={until!r}: expected one of {', '.join(UNTIL)}")
    if until == "all":
        return None
    s = time_split(ds.impressions["ts"].to_numpy(), split)
    return s.test_start if until == "test" else s.val_start


def sessionize(events: pl.DataFrame, gap_s: int) -> pl.DataFrame:
    """``events`` (``user_id``, ``ts``, ...) sorted by user and time with a ``session`` number that changes
    with the user or after a gap longer than ``gap_s`` seconds."""
    ev = events.sort("user_id", "ts", maintain_order=True)
    new_user = pl.col("user_id") != pl.col("user_id").shift(1)
    gap = (pl.col("ts") - pl.col("ts").shift(1)) > gap_s
    return ev.with_columns(session=(new_user | gap).fill_null(True).cum_sum())


def build_sessions(events: pl.DataFrame, cfg: SkipGramConfig, cutoff_ts: int | None) -> Sessions:
    """Split each user's listing actions into sessions on gaps > ``gap_s``; up-sample purchase sessions."""
    ev = events.select("user_id", "ts", "action", "listing_id").filter(pl.col("listing_id").is_not_null())
    if cutoff_ts is not None:
        ev = ev.filter(pl.col("ts") < cutoff_ts)
    ev = sessionize(ev, cfg.gap_s)
    repeat = (pl.col("listing_id") == pl.col("listing_id").shift(1)) & (
        pl.col("session") == pl.col("session").shift(1)
    )
    purchased = ev.group_by("session").agg(bought=(pl.col("action") == "purchase").any())
    sessions = (
        ev.filter(~repeat.fill_null(False))
        .group_by("session", maintain_order=True)
        .agg(pl.col("listing_id"))
        .filter(pl.col("listing_id").list.len() >= 2)
        .join(purchased, on="session", how="left")
    )
    lists = sessions["listing_id"].to_list()
    bought = sessions["bought"].to_list()
    sentences: list[list[str]] = []
    for ids, b in zip(lists, bought, strict=True):
        sentences.extend([ids] * (cfg.purchase_upsample if b else 1))
    return Sessions(sentences, len(lists), int(sum(bought)), cutoff_ts)


def _stable_hash(text: str) -> int:
    """gensim seeds each word's initial vector with ``hashfxn(word + seed)``; Python's ``hash`` of a string
    changes between processes, so a fixed function keeps a seeded run reproducible."""
    return zlib.crc32(text.encode())


def train_skipgram(ds: Dataset, cfg: SkipGramConfig) -> RepresentationTable:
    """Train skip-gram vectors on the dataset's sessions; the table's settings record what was used."""
    from gensim.models import Word2Vec

    for key in ("dim", "window", "epochs", "min_count", "purchase_upsample", "workers"):
        if getattr(cfg, key) < 1:
            raise TableError(f"skipgram setting {key}={getattr(cfg, key)}: must be >= 1")
    if cfg.gap_s < 0:
        raise TableError(f"skipgram setting gap_s={cfg.gap_s}: must be >= 0 seconds")
    cut = cutoff(ds, cfg.until, cfg.split)
    sess = build_sessions(ds.events, cfg, cut)
    if not sess.sentences:
        raise TableError(
            "no session has two or more listing actions"
            + (f" before ts {cut} (until={cfg.until})" if cut is not None else "")
            + f"; gap_s={cfg.gap_s}: nothing to learn skip-gram vectors from"
        )
    model = Word2Vec(
        sentences=sess.sentences,
        vector_size=cfg.dim,
        window=cfg.window,
        sg=1,
        hs=1,
        negative=0,
        min_count=cfg.min_count,
        epochs=cfg.epochs,
        workers=cfg.workers,
        seed=cfg.seed,
        hashfxn=_stable_hash,
    )
    ids = list(model.wv.index_to_key)
    if not ids:
        raise TableError(f"no listing reached min_count={cfg.min_count}")
    vectors = np.asarray(model.wv.vectors, dtype=np.float32)  # (n, dim)
    settings = {
        **to_dict(cfg),
        "algorithm": "gensim Word2Vec sg=1 hs=1 negative=0",
        "cutoff_ts": cut,
        "sessions": sess.n_sessions,
        "purchase_sessions": sess.n_purchase_sessions,
        "sentences": len(sess.sentences),
    }
    return RepresentationTable(cfg.name, "skipgram", ids, vectors, settings)


def represent_skipgram(data_dir: Path, out: Path, cfg: SkipGramConfig) -> dict[str, Any]:
    """``adsformer represent skipgram``: train on ``data_dir``, write the table and its quality report."""
    from adsformer.data.validate import read_dataset
    from adsformer.representations.quality import save_with_report

    ds = read_dataset(data_dir)
    table = train_skipgram(ds, cfg)
    report = save_with_report(table, ds.listings, out)
    return {**report, "settings": table.settings}
