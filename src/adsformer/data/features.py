"""From a canonical :class:`Dataset` to model-ready columns: split, vocabularies, sequences, features.

:func:`build_features` is the one offline entry point. It

1. splits the impressions by time (:mod:`adsformer.data.splits`);
2. fills each event's shop and taxonomy from the listings table where the event lacks them;
3. fits the vocabularies on the training period only (events before ``val_start`` and training
   impressions), unless vocabularies are given (evaluation, serving: unseen ids then map to OOV);
4. encodes the target listing (id, shop, taxonomy), the query and ``c_*`` features, standardizes the
   numeric features (``f_*``, log price, log bid) with training statistics;
5. builds one :class:`~adsformer.data.sequences.SequenceColumn` per (entity, action) pair.

The result is a :class:`FeatureSet` of columnar numpy arrays; :mod:`adsformer.data.batching` turns row
subsets of it into torch tensors.

Letters: N impressions, F numeric features, M max sequence length.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from adsformer.config import DataConfig
from adsformer.data.ranks import rank_name, ranked_column, resolve_rank_columns, within_request_rank
from adsformer.data.schema import ENTITY_COLUMNS, Dataset
from adsformer.data.sequences import EventIndex, SequenceColumn, time_origin
from adsformer.data.splits import TEST, TRAIN, VAL, Split, downsample_negatives, time_split
from adsformer.data.touch import NEVER, raw_codes, touch_signals
from adsformer.data.vocab import Vocabularies, Vocabulary

TARGET_ENTITIES = ("listing", "shop", "taxonomy")
#: The merged listing sequence: every listing interaction of the window (any action), in time order. Its
#: tokens pack the listing and the action: ``listing_index * A + action_index`` with A the size of the
#: ``action`` vocabulary (:func:`pack_actions`), so one id column carries both and 0 stays padding.
MERGED_PAIR = "listing:any"
LOG_FEATURES = ("price", "bid")  # standardized as log1p


@dataclass(frozen=True)
class Pair:
    """An (entity, action) sequence, e.g. ``Pair("listing", "view")``, named ``"listing:view"``."""

    entity: str
    action: str

    @property
    def name(self) -> str:
        return f"{self.entity}:{self.action}"

    @property
    def column(self) -> str:
        """The events column holding this entity (listing attributes ``c_*`` are their own column)."""
        return ENTITY_COLUMNS.get(self.entity, self.entity)

    @classmethod
    def parse(cls, text: str) -> Pair:
        entity, sep, action = text.partition(":")
        if not sep or not (entity in ENTITY_COLUMNS or entity.startswith("c_")) or not action:
            raise ValueError(
                f"bad sequence pair {text!r}: expected 'entity:action' with entity one of "
                f"{sorted(ENTITY_COLUMNS)}"
            )
        return cls(entity, action)


@dataclass
class FeatureSet:
    """Model-ready columns for N impressions. Row order = the dataset's impression order."""

    clicked: np.ndarray  # (N,) int8
    purchased: np.ndarray | None  # (N,) int8, None when the dataset has no conversions
    ts: np.ndarray  # (N,) int64
    position: np.ndarray  # (N,) int32, 0 = unknown
    split: Split
    train_keep: np.ndarray  # (N,) bool: negative down-sampling of the training split
    target: dict[str, np.ndarray]  # entity -> (N,) int32 vocabulary indices of the target listing
    categorical: dict[str, np.ndarray]  # "query", "c_*" -> (N,) int32 vocabulary indices
    dense: np.ndarray  # (N, F) float32, standardized
    dense_names: list[str]
    sequences: dict[str, SequenceColumn]  # pair name -> sequences
    vocabs: Vocabularies
    info: dict[str, Any] = field(default_factory=dict)
    # (N,) int64 dense codes of ``request_id`` (rows of one ranking request share a code); None when unknown
    # (a feature store): per-request metrics (GAUC, NDCG, MRR) and request-level bootstrap need it
    request: np.ndarray | None = None
    # (N, P, 2) float32 raw touch signals [count, age_s] of the target in each of ``touch_pairs``'
    # sequences (:mod:`adsformer.data.touch`); (N, 0, 2) when none
    touch: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 2), np.float32))
    touch_pairs: list[str] = field(default_factory=list)

    def listing_pair(self, requested: str = "auto") -> str:
        """The listing sequence a one-sequence module reads: ``requested`` itself, or for ``auto``
        ``listing:view`` when built, else the listing pair with the most events (ValueError when none)."""
        return choose_listing_pair(requested, {p: c.values.shape[0] for p, c in self.sequences.items()})

    def touch_count(self, entity: str = "listing") -> np.ndarray:
        """(N,) the user's touches of the target's ``entity`` in the window: the merged listing sequence's
        count where it is built (every listing interaction once), else the sum over every pair of that
        entity (e.g. how often the user viewed, favorited, carted or bought the target listing)."""
        merged = entity == "listing" and MERGED_PAIR in self.touch_pairs
        cols = [
            i
            for i, p in enumerate(self.touch_pairs)
            if (p == MERGED_PAIR if merged else p.split(":", 1)[0] == entity and p != MERGED_PAIR)
        ]
        if not cols or self.touch.shape[0] != self.n:
            return np.zeros(self.n, np.float32)
        return self.touch[:, cols, 0].sum(axis=1)

    @property
    def n(self) -> int:
        return int(self.clicked.shape[0])

    def rows(self, split: str, task: str = "ctr") -> np.ndarray:
        """Row indices of a split for a task.

        CTR: training rows after negative down-sampling; validation/test at the natural rate.
        PCCVR: clicked impressions only (predicts P(purchase | click)).
        """
        which = {"train": TRAIN, "val": VAL, "test": TEST}[split]
        mask = self.split.split == which
        if task == "ctr":
            if which == TRAIN:
                mask &= self.train_keep
        elif task == "pccvr":
            if self.purchased is None:
                raise ValueError(
                    "this dataset has no conversions (purchased): PCCVR cannot be trained or evaluated on it"
                )
            mask &= self.clicked == 1
        else:
            raise ValueError(f"unknown task {task!r}; expected ctr or pccvr")
        return np.flatnonzero(mask)

    def labels(self, task: str) -> np.ndarray:
        if task == "pccvr":
            if self.purchased is None:
                raise ValueError("this dataset has no conversions: no PCCVR labels")
            return self.purchased
        return self.clicked


def choose_listing_pair(requested: str, counts: dict[str, int]) -> str:
    """``requested``, or for ``auto``: ``listing:view`` when among ``counts`` (pair -> events), else the
    merged listing sequence when built, else the listing pair with the most events."""
    if requested != "auto":
        return requested
    listing = {p: n for p, n in counts.items() if p.startswith("listing:")}
    if not listing:
        from adsformer.config import ConfigError

        raise ConfigError(
            f"no listing sequence to read: the events of the training period hold no listing action (sequence "
            f"pairs: {sorted(counts)}); the encoder, BST and last-k read one: add listing events (view, "
            f"favorite, ...) before the validation period, or train --model baseline"
        )
    if "listing:view" in listing:
        return "listing:view"
    if MERGED_PAIR in listing:
        return MERGED_PAIR
    return max(sorted(listing), key=lambda p: listing[p])


def enrich_events(events: pl.DataFrame, listings: pl.DataFrame) -> pl.DataFrame:
    """Fill each event's shop_id / taxonomy_id (and listing attributes ``c_*``) from its listing where the
    event lacks them, so (shop, action), (taxonomy, action) and (c_color, action) sequences exist."""
    cols = [c for c in listings.columns if c in ("shop_id", "taxonomy_id") or c.startswith("c_")]
    if "listing_id" not in events.columns or not cols:
        return events
    lookup = listings.select("listing_id", *[pl.col(c).alias(f"{c}__listing") for c in cols])
    joined = events.join(lookup, on="listing_id", how="left", maintain_order="left")
    exprs = []
    for c in cols:
        fill = pl.col(f"{c}__listing")
        exprs.append((pl.coalesce(pl.col(c), fill) if c in events.columns else fill).alias(c))
    return joined.with_columns(exprs).drop([f"{c}__listing" for c in cols])


def pack_actions(listing: np.ndarray, action: np.ndarray, n_actions: int) -> np.ndarray:
    """Merged-sequence tokens (E,) int32 from listing and action vocabulary indices (E,)."""
    return (listing.astype(np.int64) * n_actions + action.astype(np.int64)).astype(np.int32)


def resolve_pairs(spec: tuple[str, ...], events: pl.DataFrame) -> list[Pair]:
    """Expand ``"all"`` to every (entity, action) with at least one event, plus the merged listing sequence
    (:data:`MERGED_PAIR`) when listings come with two or more actions; check named pairs."""
    if "all" in spec:
        present = []
        actions = sorted(events["action"].unique().to_list()) if events.height else []
        entities = dict(ENTITY_COLUMNS) | {c: c for c in events.columns if c.startswith("c_")}
        for action in actions:
            sub = events.filter(pl.col("action") == action)
            for entity, col in entities.items():
                if col in sub.columns and sub[col].null_count() < sub.height:
                    present.append(Pair(entity, action))
        if len({p.action for p in present if p.entity == "listing"}) >= 2:
            present.append(Pair.parse(MERGED_PAIR))
        extra = [Pair.parse(s) for s in spec if s != "all"]
        return present + [p for p in extra if p not in present]
    return [Pair.parse(s) for s in spec]


def user_codes(*series: pl.Series) -> list[np.ndarray]:
    """Dense int codes for user ids shared across several columns."""
    joined = pl.concat([s.cast(pl.String) for s in series]).rename("u")
    uniques = joined.unique().sort()
    codes = (
        pl.DataFrame({"u": joined})
        .join(
            pl.DataFrame({"u": uniques, "code": np.arange(uniques.len(), dtype=np.int64)}),
            on="u",
            how="left",
            maintain_order="left",
        )["code"]
        .to_numpy()
    )
    out, start = [], 0
    for s in series:
        out.append(codes[start : start + s.len()])
        start += s.len()
    return out


def fit_vocabularies(ds: Dataset, events: pl.DataFrame, split: Split, cfg: DataConfig) -> Vocabularies:
    """Top-K vocabularies from the training period only: events before ``val_start`` + training impressions."""
    train_events = events.filter(pl.col("ts") < split.val_start)
    train_imps = _with_listing_attrs(ds.impressions.filter(pl.Series(split.split == TRAIN)), ds.listings)
    vc = cfg.vocab
    vocabs: dict[str, Vocabulary] = {}
    for entity, col in ENTITY_COLUMNS.items():
        cols = [df[col] for df in (train_events, train_imps) if col in df.columns]
        vocabs[entity] = Vocabulary.fit(entity, cols, vc.top_k(entity), vc.num_oov)
    for col in _categorical_columns(ds):
        cols = [df[col] for df in (train_imps, train_events) if col in df.columns]
        vocabs[col] = Vocabulary.fit(col, cols, vc.categorical_top_k, vc.num_oov)
    # action words, for the merged listing sequence's action tokens
    vocabs["action"] = Vocabulary.fit("action", [train_events["action"]], vc.categorical_top_k, vc.num_oov)
    return Vocabularies(vocabs)


def _with_listing_attrs(impressions: pl.DataFrame, listings: pl.DataFrame) -> pl.DataFrame:
    """Impressions joined with their listing's shop, taxonomy, price and ``f_*`` / ``c_*`` columns."""
    keep = [
        c for c in listings.columns if c in ("shop_id", "taxonomy_id", "price") or c.startswith(("f_", "c_"))
    ]
    keep = [c for c in keep if c not in impressions.columns]
    return impressions.join(
        listings.select("listing_id", *keep), on="listing_id", how="left", maintain_order="left"
    )


def _categorical_columns(ds: Dataset) -> list[str]:
    cols = [c for c in ds.impressions.columns if c.startswith("c_")]
    return cols + [c for c in ds.listings.columns if c.startswith("c_") and c not in cols]


def _dense_columns(frame: pl.DataFrame) -> list[str]:
    return [c for c in frame.columns if c in LOG_FEATURES or c.startswith("f_")]


def build_features(
    ds: Dataset,
    cfg: DataConfig,
    vocabs: Vocabularies | None = None,
    dense_stats: dict[str, tuple[float, float]] | None = None,
    *,
    score_all: bool = False,
    engine: str = "local",
) -> FeatureSet:
    """All model inputs for every impression of ``ds`` (see the module docstring).

    ``engine`` builds the sequences: ``local`` (:class:`EventIndex`) or ``spark``
    (:mod:`adsformer.data.spark_sequences`, same inputs, same sequences).

    ``score_all`` is the scoring mode (prediction, serving): no time split (every row is "test"), no
    down-sampling, labels optional, and the trained run's ``vocabs``, ``dense_stats`` and (resolved) pairs
    rule; a sequence whose column the data lacks is empty rather than an error.
    """
    imps = ds.impressions
    if score_all:
        if vocabs is None or dense_stats is None:
            raise ValueError("score_all needs the trained run's vocabularies and dense statistics")
        start = int(imps["ts"].to_numpy().min()) if imps.height else 0
        split = Split(np.full(imps.height, TEST, np.int8), start, start, "all")
    else:
        split = time_split(imps["ts"].to_numpy(), cfg.split)
    events = enrich_events(ds.events, ds.listings)
    given_vocabs = vocabs is not None
    if vocabs is None:
        vocabs = fit_vocabularies(ds, events, split, cfg)
    wide = _with_listing_attrs(imps, ds.listings)

    target = {
        e: vocabs[e].encode(wide[ENTITY_COLUMNS[e]])
        if ENTITY_COLUMNS[e] in wide.columns
        else np.zeros(wide.height, np.int32)
        for e in TARGET_ENTITIES
    }
    # With given vocabularies / statistics (evaluation, serving) the trained feature set rules: a feature the
    # data lacks is padding / zero, a feature the model never saw is ignored.
    cat_names = ["query"] + (
        [c for c in vocabs.by_name if c.startswith("c_")] if given_vocabs else _categorical_columns(ds)
    )
    categorical = {}
    for col in cat_names:
        if col in wide.columns:
            categorical[col] = vocabs[col].encode(wide[col])
        elif given_vocabs or col != "query":
            categorical[col] = np.zeros(wide.height, np.int32)
    train_rows = split.split == TRAIN
    request = user_codes(imps["request_id"])[0] if "request_id" in imps.columns else None
    if dense_stats is not None:  # the trained run's features, in its order (rank features last)
        dense_names = [n for n in dense_stats if ranked_column(n) is None]
        rank_columns = [c for n in dense_stats if (c := ranked_column(n)) is not None]
    else:
        dense_names = _dense_columns(wide)
        rank_columns = resolve_rank_columns(cfg.request_ranks, dense_names)
    dense, stats = _standardize(wide, dense_names, train_rows, dense_stats)
    dense, dense_names = _with_request_ranks(
        dense, dense_names, stats, rank_columns, _request_groups(imps, request), train_rows
    )

    clicked = _int_column(imps, "clicked", np.int8)
    has_purchases = ds.meta.has_conversions and "purchased" in imps.columns
    purchased = imps["purchased"].fill_null(0).to_numpy().astype(np.int8) if has_purchases else None
    position = _int_column(imps, "position", np.int32)

    seq_cfg = cfg.sequences
    pairs = (
        [Pair.parse(p) for p in seq_cfg.pairs]
        if score_all
        else resolve_pairs(seq_cfg.pairs, events.filter(pl.col("ts") < split.val_start))
    )
    ev_user, imp_user = user_codes(events["user_id"], imps["user_id"])
    imp_ts = imps["ts"].to_numpy()
    ev_ts_all = events["ts"].to_numpy()
    t0 = time_origin(ev_ts_all, imp_ts, window_s=seq_cfg.window_s)
    if engine not in ("local", "spark"):
        raise ValueError(f"unknown sequence engine {engine!r}; expected local or spark")
    sequences: dict[str, SequenceColumn] = {}
    # Each pair's sequences are built over event positions (0..E_p-1 of the pair's events), then mapped to
    # vocabulary indices for the model and to raw-id codes and times for the touch signals.
    positions: dict[str, SequenceColumn] = {}
    spark_inputs: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    pair_events: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # vocab ids, the pair's events mask
    actions = events["action"].to_numpy()
    for pair in pairs:
        col = pair.column
        if col not in events.columns:
            if not score_all:
                raise ValueError(f"sequence pair {pair.name!r}: events have no column {col!r}")
            n = imps.height  # scoring data without that column: every sequence is empty
            sequences[pair.name] = SequenceColumn(
                np.zeros(0, np.int32), np.zeros(n, np.int64), np.zeros(n, np.int32), seq_cfg.max_len
            )
            continue
        merged = pair.name == MERGED_PAIR
        mask = (merged | (actions == pair.action)) & events[col].is_not_null().to_numpy()
        ids = vocabs[pair.entity].encode(events[col].filter(pl.Series(mask)))
        if merged:
            if "action" not in vocabs.by_name:
                raise ValueError(
                    f"{MERGED_PAIR} needs an action vocabulary (a run trained before it existed)"
                )
            act = vocabs["action"].encode(events["action"].filter(pl.Series(mask)))
            ids = pack_actions(ids, act, vocabs["action"].size)
        pair_events[pair.name] = (ids, mask)
        where = np.arange(int(mask.sum()), dtype=np.int32)
        if engine == "spark":
            spark_inputs[pair.name] = (ev_user[mask], ev_ts_all[mask], where)
            continue
        index = EventIndex.build(ev_user[mask], ev_ts_all[mask], where, t0)
        positions[pair.name] = index.sequences(imp_user, imp_ts, seq_cfg.window_s, seq_cfg.max_len)
    if spark_inputs:
        from adsformer.data.spark_sequences import spark_sequence_columns

        positions |= spark_sequence_columns(
            spark_inputs, imp_user, imp_ts, window_s=seq_cfg.window_s, max_len=seq_cfg.max_len
        )
    for name, column in positions.items():
        sequences[name] = column.map_values(pair_events[name][0])
    sequences = {p.name: sequences[p.name] for p in pairs}
    # every pair gets touch signals; a pair without events or a target without that column never matches
    touch = np.zeros((imps.height, len(pairs), 2), np.float32)
    touch[:, :, 1] = NEVER
    codes: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # column -> raw-id codes of targets, of all events
    for j, pair in enumerate(pairs):
        if pair.name in positions and pair.column in wide.columns:
            if pair.column not in codes:  # one shared dictionary per column, for every pair reading it
                target_codes, event_codes = raw_codes(wide[pair.column], events[pair.column])
                codes[pair.column] = (target_codes, event_codes)
            target_codes, event_codes = codes[pair.column]
            mask = pair_events[pair.name][1]
            touch[:, j] = _touch_column(
                positions[pair.name], target_codes, event_codes[mask], ev_ts_all[mask], imp_ts
            )

    keep = (
        np.ones(imps.height, bool) if score_all else downsample_negatives(clicked, split.split, cfg.sampling)
    )
    info = {
        "pairs": [p.name for p in pairs],
        "window_s": seq_cfg.window_s,
        "max_len": seq_cfg.max_len,
        "neg_keep_rate": cfg.sampling.neg_keep_rate,
        "split_mode": split.mode,
        "val_start": split.val_start,
        "test_start": split.test_start,
        "dense_stats": stats,
    }
    return FeatureSet(
        clicked,
        purchased,
        imp_ts,
        position,
        split,
        keep,
        target,
        categorical,
        dense,
        dense_names,
        sequences,
        vocabs,
        info,
        request=request,
        touch=touch,
        touch_pairs=[p.name for p in pairs],
    )


def _touch_column(
    positions: SequenceColumn, target: np.ndarray, codes: np.ndarray, ts: np.ndarray, now: np.ndarray
) -> np.ndarray:
    """Touch signals (N, 2) of one pair: its sequences of event positions read as raw-id codes and times,
    in chunks of rows (bounded temporaries)."""
    out = np.zeros((len(positions), 2), np.float32)
    if codes.size == 0:
        out[:, 1] = NEVER
        return out
    step = 1 << 16
    for lo in range(0, len(positions), step):
        rows = np.arange(lo, min(lo + step, len(positions)))
        where, lengths = positions.padded(rows, trim=True)  # (n, M_b) event positions, (n,)
        out[rows] = touch_signals(target[rows], codes[where], ts[where], lengths, now[rows])
    return out


def _int_column(frame: pl.DataFrame, name: str, dtype: type) -> np.ndarray:
    """An integer column with nulls as 0; all zeros when absent (e.g. labels at scoring time)."""
    if name not in frame.columns:
        return np.zeros(frame.height, dtype)
    return frame[name].fill_null(0).to_numpy().astype(dtype)


def _request_groups(imps: pl.DataFrame, request: np.ndarray | None) -> np.ndarray:
    """(N,) codes of the ranking request of each impression: its ``request_id``, else its user and second
    (the rows one user was shown at one time)."""
    if request is not None:
        return request
    key = imps.select(
        pl.concat_str([pl.col("user_id").cast(pl.String), pl.col("ts").cast(pl.String)], separator="|")
    )
    return user_codes(key.to_series())[0]


def _with_request_ranks(
    dense: np.ndarray,
    names: list[str],
    stats: dict[str, tuple[float, float]],
    columns: list[str],
    groups: np.ndarray,
    train_mask: np.ndarray,
) -> tuple[np.ndarray, list[str]]:
    """Append ``rank(X)`` for each X of ``columns``: (N, F) -> (N, F + R), the percentile rank of the
    standardized X within its request ``groups`` (N,) (:mod:`adsformer.data.ranks`), standardized in turn
    with training statistics (fitted into ``stats`` unless there)."""
    if not columns:
        return dense, names
    extra = np.empty((dense.shape[0], len(columns)), np.float32)
    for j, column in enumerate(columns):
        name = rank_name(column)
        r = within_request_rank(dense[:, names.index(column)], groups).astype(np.float64)  # (N,)
        if name not in stats:
            train = r[train_mask]
            std = float(train.std()) if train.size else 1.0
            stats[name] = (float(train.mean()) if train.size else 0.5, std if std > 1e-12 else 1.0)
        mean, std = stats[name]
        extra[:, j] = (r - mean) / std
    return np.concatenate([dense, extra], axis=1), names + [rank_name(c) for c in columns]


def _standardize(
    frame: pl.DataFrame,
    names: list[str],
    train_mask: np.ndarray,
    stats: dict[str, tuple[float, float]] | None,
) -> tuple[np.ndarray, dict[str, tuple[float, float]]]:
    """(N, F) float32: log1p for prices/bids, then (x - mean) / std with training stats; nulls -> 0."""
    if not names:
        return np.zeros((frame.height, 0), np.float32), {}
    out = np.empty((frame.height, len(names)), np.float32)
    fitted = {} if stats is None else dict(stats)
    for j, name in enumerate(names):
        if name not in frame.columns:
            out[:, j] = 0.0
            continue
        x = frame[name].cast(pl.Float64).to_numpy().astype(np.float64)
        if name in LOG_FEATURES:
            x = np.log1p(np.clip(x, 0, None))
        if name not in fitted:
            train = x[train_mask]
            train = train[np.isfinite(train)]
            mean = float(train.mean()) if train.size else 0.0
            std = float(train.std()) if train.size else 1.0
            fitted[name] = (mean, std if std > 1e-12 else 1.0)
        mean, std = fitted[name]
        z = (x - mean) / std
        out[:, j] = np.where(np.isfinite(z), z, 0.0)
    return out, fitted
