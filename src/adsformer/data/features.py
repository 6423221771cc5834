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

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from adsformer.config import ENGINES, DataConfig, Engine, SequenceConfig
from adsformer.data.dense import LOG_FEATURES, Stats, fit_stats, standardize, transform
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


@dataclass(frozen=True)
class FeatureInfo:
    """How a feature set was built: what a run (``features.json``) and a feature store (``meta.json``'s
    ``info``) record beside the features, and what scoring needs again (the pairs, the training split's
    negative keep rate, the dense statistics)."""

    pairs: tuple[str, ...]  # the (entity, action) pairs built, resolved (``all`` expanded)
    window_s: int
    max_len: int
    neg_keep_rate: float  # of the training split's negatives (the CTR down-sampling correction)
    split_mode: str  # days | fraction as resolved, or ``all`` when scoring
    val_start: int
    test_start: int
    dense_stats: Mapping[str, Stats]  # numeric feature -> its training (mean, std), in the dense order

    @classmethod
    def of(
        cls, pairs: list[Pair], cfg: DataConfig, split: Split, dense_stats: Mapping[str, Stats]
    ) -> FeatureInfo:
        return cls(
            pairs=tuple(p.name for p in pairs),
            window_s=cfg.sequences.window_s,
            max_len=cfg.sequences.max_len,
            neg_keep_rate=cfg.sampling.neg_keep_rate,
            split_mode=split.mode,
            val_start=split.val_start,
            test_start=split.test_start,
            dense_stats=dense_stats,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written to disk (keys and values as ever: ``pairs`` a list, stats ``[mean, std]``)."""
        return {
            "pairs": list(self.pairs),
            "window_s": self.window_s,
            "max_len": self.max_len,
            "neg_keep_rate": self.neg_keep_rate,
            "split_mode": self.split_mode,
            "val_start": self.val_start,
            "test_start": self.test_start,
            "dense_stats": {name: [mean, std] for name, (mean, std) in self.dense_stats.items()},
        }

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> FeatureInfo:
        """The inverse of :meth:`to_dict` (a feature store's ``info``)."""
        return cls(
            pairs=tuple(obj["pairs"]),
            window_s=int(obj["window_s"]),
            max_len=int(obj["max_len"]),
            neg_keep_rate=float(obj["neg_keep_rate"]),
            split_mode=str(obj["split_mode"]),
            val_start=int(obj["val_start"]),
            test_start=int(obj["test_start"]),
            dense_stats={name: (float(m), float(s)) for name, (m, s) in obj["dense_stats"].items()},
        )


@dataclass(kw_only=True)
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
    info: FeatureInfo
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
    dense_stats: Mapping[str, Stats] | None = None,
    *,
    score_all: bool = False,
    engine: Engine = "local",
) -> FeatureSet:
    """All model inputs for every impression of ``ds`` (see the module docstring).

    ``engine`` builds the sequences: ``local`` (:class:`EventIndex`) or ``spark``
    (:mod:`adsformer.data.spark_sequences`, same inputs, same sequences).

    ``score_all`` is the scoring mode (prediction, serving): no time split (every row is "test"), no
    down-sampling, labels optional, and the trained run's ``vocabs``, ``dense_stats`` and (resolved) pairs
    rule; a sequence whose column the data lacks is empty rather than an error.
    """
    if score_all and (vocabs is None or dense_stats is None):
        raise ValueError("score_all needs the trained run's vocabularies and dense statistics")
    if engine not in ENGINES:
        raise ValueError(f"unknown sequence engine {engine!r}; expected local or spark")
    inputs = _inputs(ds, cfg, vocabs, score_all)
    request = user_codes(inputs.imps["request_id"])[0] if "request_id" in inputs.imps.columns else None
    dense = _dense_features(inputs, cfg, dense_stats, _request_groups(inputs.imps, request))
    pairs = _sequence_pairs(cfg.sequences.pairs, inputs, score_all)
    timeline = _timeline(inputs, cfg.sequences.window_s)
    built = _event_positions(_pair_events(pairs, inputs, score_all), timeline, cfg.sequences, engine)
    clicked = _int_column(inputs.imps, "clicked", np.int8)
    has_purchases = ds.meta.has_conversions and "purchased" in inputs.imps.columns
    return FeatureSet(
        clicked=clicked,
        purchased=_int_column(inputs.imps, "purchased", np.int8) if has_purchases else None,
        ts=timeline.imp_ts,
        position=_int_column(inputs.imps, "position", np.int32),
        split=inputs.split,
        train_keep=_train_keep(clicked, inputs.split, cfg, score_all),
        target=_targets(inputs),
        categorical=_categoricals(inputs, ds),
        dense=dense.values,
        dense_names=dense.names,
        sequences=_sequences(pairs, built, inputs.imps.height, cfg.sequences.max_len),
        vocabs=inputs.vocabs,
        info=FeatureInfo.of(pairs, cfg, inputs.split, dense.stats),
        request=request,
        touch=_touch(pairs, built, inputs, timeline),
        touch_pairs=[p.name for p in pairs],
    )


# --- the stages of build_features ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Inputs:
    """What every stage reads: the impressions (N rows), the same with their listing's attributes, the
    enriched events (E rows), the split, the vocabularies and whether they were given (``trained``: the
    trained feature set rules, a feature the data lacks is padding / zero, one the model never saw ignored)."""

    imps: pl.DataFrame
    wide: pl.DataFrame
    events: pl.DataFrame
    split: Split
    vocabs: Vocabularies
    trained: bool


def _inputs(ds: Dataset, cfg: DataConfig, vocabs: Vocabularies | None, score_all: bool) -> _Inputs:
    """Split the impressions (scoring: every row is test), enrich the events, fit the vocabularies unless
    given."""
    imps = ds.impressions
    if score_all:
        start = int(imps["ts"].to_numpy().min()) if imps.height else 0
        split = Split(np.full(imps.height, TEST, np.int8), start, start, "all")
    else:
        split = time_split(imps["ts"].to_numpy(), cfg.split)
    events = enrich_events(ds.events, ds.listings)
    return _Inputs(
        imps=imps,
        wide=_with_listing_attrs(imps, ds.listings),
        events=events,
        split=split,
        vocabs=vocabs if vocabs is not None else fit_vocabularies(ds, events, split, cfg),
        trained=vocabs is not None,
    )


def _targets(inputs: _Inputs) -> dict[str, np.ndarray]:
    """Entity -> (N,) int32 vocabulary indices of the target listing's id, shop and taxonomy."""
    wide = inputs.wide
    return {
        e: inputs.vocabs[e].encode(wide[ENTITY_COLUMNS[e]])
        if ENTITY_COLUMNS[e] in wide.columns
        else np.zeros(wide.height, np.int32)
        for e in TARGET_ENTITIES
    }


def _categoricals(inputs: _Inputs, ds: Dataset) -> dict[str, np.ndarray]:
    """``query`` and ``c_*`` -> (N,) int32 vocabulary indices; with given vocabularies, exactly the trained
    ``c_*`` columns (zeros where the data lacks one)."""
    vocabs, wide = inputs.vocabs, inputs.wide
    names = ["query"] + (
        [c for c in vocabs.by_name if c.startswith("c_")] if inputs.trained else _categorical_columns(ds)
    )
    out = {}
    for col in names:
        if col in wide.columns:
            out[col] = vocabs[col].encode(wide[col])
        elif inputs.trained or col != "query":
            out[col] = np.zeros(wide.height, np.int32)
    return out


@dataclass(frozen=True)
class _Dense:
    """The standardized numeric features: ``values`` (N, F) float32, their ``names`` (rank features last),
    the training ``stats`` of each."""

    values: np.ndarray
    names: list[str]
    stats: dict[str, Stats]


def _dense_features(
    inputs: _Inputs, cfg: DataConfig, dense_stats: Mapping[str, Stats] | None, groups: np.ndarray
) -> _Dense:
    """The numeric columns (the trained run's, in its order, when ``dense_stats`` are given), standardized,
    then their ``rank(X)`` within each request ``groups`` (N,)."""
    if dense_stats is not None:
        names = [n for n in dense_stats if ranked_column(n) is None]
        rank_columns = [c for n in dense_stats if (c := ranked_column(n)) is not None]
    else:
        names = _dense_columns(inputs.wide)
        rank_columns = resolve_rank_columns(cfg.request_ranks, names)
    train_rows = inputs.split.split == TRAIN
    values, stats = _standardize(inputs.wide, names, train_rows, dense_stats)
    values, names, stats = _with_request_ranks(values, names, stats, rank_columns, groups, train_rows)
    return _Dense(values, names, stats)


def _sequence_pairs(spec: tuple[str, ...], inputs: _Inputs, score_all: bool) -> list[Pair]:
    """The (entity, action) pairs to build: the trained run's when scoring, else ``spec`` resolved over the
    events before the validation period."""
    if score_all:
        return [Pair.parse(p) for p in spec]
    return resolve_pairs(spec, inputs.events.filter(pl.col("ts") < inputs.split.val_start))


@dataclass(frozen=True)
class _Timeline:
    """Dense user codes and times of the events (E,) and of the impressions (N,), and the time origin of the
    sequence index."""

    event_user: np.ndarray
    event_ts: np.ndarray
    imp_user: np.ndarray
    imp_ts: np.ndarray
    t0: int


def _timeline(inputs: _Inputs, window_s: int) -> _Timeline:
    events, imps = inputs.events, inputs.imps
    event_user, imp_user = user_codes(events["user_id"], imps["user_id"])
    event_ts, imp_ts = events["ts"].to_numpy(), imps["ts"].to_numpy()
    t0 = time_origin(event_ts, imp_ts, window_s=window_s)
    return _Timeline(event_user, event_ts, imp_user, imp_ts, t0)


@dataclass(frozen=True)
class _PairEvents:
    """One pair's events: ``mask`` (E,) bool, which of all events they are; ``ids`` (E_p,) int32, their
    model tokens (vocabulary indices; for the merged sequence listing and action packed)."""

    ids: np.ndarray
    mask: np.ndarray


def _pair_events(pairs: list[Pair], inputs: _Inputs, score_all: bool) -> dict[str, _PairEvents]:
    """Pair name -> its encoded events, for every pair whose column the events have (scoring: a pair without
    one gets empty sequences; otherwise that is an error)."""
    events, vocabs = inputs.events, inputs.vocabs
    actions = events["action"].to_numpy()
    out: dict[str, _PairEvents] = {}
    for pair in pairs:
        col = pair.column
        if col not in events.columns:
            if not score_all:
                raise ValueError(f"sequence pair {pair.name!r}: events have no column {col!r}")
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
        out[pair.name] = _PairEvents(ids, mask)
    return out


@dataclass(frozen=True)
class _PairSequences:
    """One pair's encoded ``events`` and its sequences over event *positions* (0..E_p-1 of the pair's events),
    which map to the model's ids (:func:`_sequences`) and to raw-id codes and times for the touch signals
    (:func:`_touch`)."""

    events: _PairEvents
    positions: SequenceColumn


def _event_positions(
    encoded: dict[str, _PairEvents], timeline: _Timeline, seq_cfg: SequenceConfig, engine: Engine
) -> dict[str, _PairSequences]:
    """Pair name -> its events and their sequences, for every pair with encoded events."""
    positions = _positions(encoded, timeline, seq_cfg, engine)
    return {name: _PairSequences(e, positions[name]) for name, e in encoded.items()}


def _positions(
    encoded: dict[str, _PairEvents], timeline: _Timeline, seq_cfg: SequenceConfig, engine: Engine
) -> dict[str, SequenceColumn]:
    """Pair name -> its sequences over event positions, by the local index or on Spark."""
    inputs = {
        name: (
            timeline.event_user[e.mask],
            timeline.event_ts[e.mask],
            np.arange(int(e.mask.sum()), dtype=np.int32),
        )
        for name, e in encoded.items()
    }
    if engine == "spark" and inputs:
        from adsformer.data.spark_sequences import spark_sequence_columns

        return spark_sequence_columns(
            inputs, timeline.imp_user, timeline.imp_ts, window_s=seq_cfg.window_s, max_len=seq_cfg.max_len
        )
    return {
        name: EventIndex.build(user, ts, where, timeline.t0).sequences(
            timeline.imp_user, timeline.imp_ts, seq_cfg.window_s, seq_cfg.max_len
        )
        for name, (user, ts, where) in inputs.items()
    }


def _sequences(
    pairs: list[Pair], built: dict[str, _PairSequences], n: int, max_len: int
) -> dict[str, SequenceColumn]:
    """Pair name -> the model's sequences of ids, in the pairs' order; empty for a pair without events."""
    empty = SequenceColumn(np.zeros(0, np.int32), np.zeros(n, np.int64), np.zeros(n, np.int32), max_len)
    return {
        p.name: built[p.name].positions.map_values(built[p.name].events.ids) if p.name in built else empty
        for p in pairs
    }


def _touch(
    pairs: list[Pair], built: dict[str, _PairSequences], inputs: _Inputs, timeline: _Timeline
) -> np.ndarray:
    """(N, P, 2) float32 raw touch signals [count, age_s] of the target in each pair's sequences; a pair
    without events or a target without that column never matches ([0, NEVER])."""
    wide, events = inputs.wide, inputs.events
    touch = np.zeros((wide.height, len(pairs), 2), np.float32)
    touch[:, :, 1] = NEVER
    codes: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # column -> raw-id codes of targets, of all events
    for j, pair in enumerate(pairs):
        if pair.name not in built or pair.column not in wide.columns:
            continue
        if pair.column not in codes:  # one shared dictionary per column, for every pair reading it
            target_codes, event_codes = raw_codes(wide[pair.column], events[pair.column])
            codes[pair.column] = (target_codes, event_codes)
        target_codes, event_codes = codes[pair.column]
        mask = built[pair.name].events.mask
        touch[:, j] = _touch_column(
            built[pair.name].positions,
            target_codes,
            event_codes[mask],
            timeline.event_ts[mask],
            timeline.imp_ts,
        )
    return touch


def _train_keep(clicked: np.ndarray, split: Split, cfg: DataConfig, score_all: bool) -> np.ndarray:
    """(N,) bool: the training rows kept by negative down-sampling (scoring: every row)."""
    if score_all:
        return np.ones(clicked.shape[0], bool)
    return downsample_negatives(clicked, split.split, cfg.sampling)


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
    stats: dict[str, Stats],
    columns: list[str],
    groups: np.ndarray,
    train_mask: np.ndarray,
) -> tuple[np.ndarray, list[str], dict[str, Stats]]:
    """Append ``rank(X)`` for each X of ``columns``: (N, F) -> (N, F + R), the percentile rank of the
    standardized X within its request ``groups`` (N,) (:mod:`adsformer.data.ranks`), standardized in turn
    with training statistics (fitted unless in ``stats``); returns the names and statistics with theirs."""
    if not columns:
        return dense, names, stats
    stats = dict(stats)
    extra = np.empty((dense.shape[0], len(columns)), np.float32)
    for j, column in enumerate(columns):
        name = rank_name(column)
        r = within_request_rank(dense[:, names.index(column)], groups).astype(np.float64)  # (N,)
        if name not in stats:
            stats[name] = fit_stats(r[train_mask], empty_mean=0.5)
        extra[:, j] = standardize(r, stats[name])
    return np.concatenate([dense, extra], axis=1), names + [rank_name(c) for c in columns], stats


def _standardize(
    frame: pl.DataFrame,
    names: list[str],
    train_mask: np.ndarray,
    stats: Mapping[str, Stats] | None,
) -> tuple[np.ndarray, dict[str, Stats]]:
    """(N, F) float32: each column of ``names`` through :mod:`adsformer.data.dense` (transform, training
    statistics fitted unless in ``stats``, standardize); a column the frame lacks is 0."""
    if not names:
        return np.zeros((frame.height, 0), np.float32), {}
    out = np.zeros((frame.height, len(names)), np.float32)
    fitted = {} if stats is None else dict(stats)
    for j, name in enumerate(names):
        if name not in frame.columns:
            continue
        x = transform(name, frame[name].cast(pl.Float64).to_numpy().astype(np.float64))
        if name not in fitted:
            fitted[name] = fit_stats(x[train_mask])
        out[:, j] = standardize(x, fitted[name])
    return out, fitted
