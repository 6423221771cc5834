"""Model inputs for one ranking request, built online with the offline builder's semantics.

Two halves, both mirroring :mod:`adsformer.data.features` (the parity test compares them with
:meth:`adsformer.run.predictor.Predictor.features` on the same events and candidates):

* :func:`sequence_items` turns a batch of events into the store's entries: each event is enriched from its
  listing (shop, taxonomy and ``c_*`` attributes where the event lacks them, as ``enrich_events`` does) and
  contributes its entity value to every configured (entity, action) pair of its action;
* :class:`OnlineFeatures` builds a request's model inputs (:class:`~adsformer.data.inputs.ModelInputs`,
  the type training batches and export use too) for one trained run: the candidates' target ids
  (listing, shop, taxonomy), categorical ids (query, ``c_*``: request context first, else the listing's),
  standardized dense features (bid, price, ``f_*``) -- precomputed per catalog listing where they do not
  depend on the request -- and the user's sequences from the store, cut to the run's window and length
  and encoded with the run's vocabularies (unseen ids -> OOV, as offline).

The merged listing sequence (``listing:any``: every listing event, any action) stores ``"ACTION LISTING"``
(action words have no spaces) and is encoded as the offline builder packs it: ``listing * A + action``.

Letters: B candidates, F dense features, M sequence width (>= 1).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import torch

from adsformer.data.dense import standardize, transform
from adsformer.data.features import MERGED_PAIR, Pair, pack_actions
from adsformer.data.inputs import ModelInputs
from adsformer.data.ranks import ranked_column, within_request_rank
from adsformer.data.schema import ENTITY_COLUMNS
from adsformer.data.sequences import in_window
from adsformer.data.touch import NEVER, rows_by_value, touch_of_entries
from adsformer.data.vocab import Vocabularies
from adsformer.run.predictor import Predictor
from adsformer.serving.catalog import Catalog
from adsformer.serving.encoding import IdEncoder
from adsformer.serving.store import SequenceItem, UserState

EVENT_FIELDS = ("listing_id", "shop_id", "taxonomy_id", "query")

#: A user's encoded sequences as a run reads them: seq_ids, seq_len, the raw entries used (pair -> ...)
Sequences = tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, list[tuple[int, str]]]]


@dataclass
class RequestMemo:
    """What the runs of one request (CTR, PCCVR) compute once and share; one per request: it holds values
    for these candidates, this query, context, user state and time only.

    ``touch``: touch-signal columns (B, 2) ``[count, age_s]`` by (pair, its window entries); ``sequences``:
    the user's encoded sequences by :attr:`OnlineFeatures.sequence_key` (runs with the same sequence
    settings and vocabularies, as a CTR and a PCCVR run trained on one dataset have)."""

    touch: dict[tuple[str, tuple[tuple[int, str], ...]], np.ndarray] = field(default_factory=dict)
    sequences: dict[bytes, Sequences] = field(default_factory=dict)


def sequence_items(
    events: Sequence[Mapping[str, Any]], pairs: Sequence[str], catalog: Catalog
) -> list[SequenceItem]:
    """Store entries for ``events`` (dicts with ``ts``, ``action`` and optional entity fields), in order."""
    by_action: dict[str, list[Pair]] = {}
    for name in pairs:
        pair = Pair.parse(name)
        by_action.setdefault(pair.action, []).append(pair)
    merged = MERGED_PAIR in pairs
    items = []
    for event in events:
        action = str(event["action"])
        wanted = by_action.get(action)
        if not wanted and not (merged and event.get("listing_id") is not None):
            continue
        values = enrich_event(event, catalog)
        for pair in wanted or []:
            value = values.get(pair.column)
            if value is not None:
                items.append(SequenceItem(pair.name, int(event["ts"]), value))
        if merged and "listing_id" in values:
            items.append(SequenceItem(MERGED_PAIR, int(event["ts"]), f"{action} {values['listing_id']}"))
    return items


def _merged_listing(value: str) -> str:
    """The listing id of a merged-sequence entry ``"ACTION LISTING"``."""
    return value.split(" ", 1)[1] if " " in value else value


def enrich_event(event: Mapping[str, Any], catalog: Catalog) -> dict[str, str]:
    """The event's entity values: its own fields, then its listing's shop / taxonomy / ``c_*`` where missing."""
    values = {c: str(event[c]) for c in EVENT_FIELDS if event.get(c) is not None}
    row = catalog.row.get(values.get("listing_id", ""))
    if row is not None:
        for col, value in catalog.attributes[row].items():
            values.setdefault(col, value)
    return values


@dataclass(frozen=True, kw_only=True)
class RequestFeatures(ModelInputs):
    """One request's model inputs in the one-user form (:class:`~adsformer.data.inputs.ModelInputs`: the
    candidates' target, categorical, dense and touch (B, ...), the user's ``seq_ids`` pair -> (1, M) and
    ``seq_len`` pair -> (1,); no position), with the candidates' ids and the raw sequence entries used."""

    listing_ids: list[str]
    sequences: dict[str, list[tuple[int, str]]]  # pair -> the raw (ts, value) entries used, newest first


class OnlineFeatures:
    """Builds :class:`RequestFeatures` for one trained run over one catalog (see the module docstring)."""

    def __init__(self, predictor: Predictor, catalog: Catalog) -> None:
        vocabs = predictor.artifact.vocabs
        seq_cfg = predictor.config.data.sequences
        self.pairs = list(predictor.pairs)
        self.window_s = int(seq_cfg.window_s)
        self.max_len = int(seq_cfg.max_len)
        self.catalog = catalog
        self.encoders = {name: IdEncoder(v) for name, v in vocabs.by_name.items()}
        self.n_actions = vocabs["action"].size if "action" in vocabs.by_name else 0
        self.sequence_key = _sequence_key(self.pairs, self.window_s, self.max_len, vocabs)
        self.cat_names = [c for c in vocabs.by_name if c.startswith("c_")]
        self.dense_stats = predictor.dense_stats
        frame = catalog.listings
        n = len(catalog)
        # one extra row (index n) for candidates the catalog does not know: every attribute missing
        self._target = {
            "listing": np.append(self.encoders["listing"].many(catalog.ids), 0),
            **{e: self._column_ids(frame, ENTITY_COLUMNS[e], e, n) for e in ("shop", "taxonomy")},
        }
        self._categorical = {c: self._column_ids(frame, c, c, n) for c in self.cat_names}
        # listing columns the run reads that this catalog lacks (served as missing: a train/serve skew
        # unless the request context supplies them)
        listing_dense = [d for d in self.dense_stats if d != "bid" and ranked_column(d) is None]
        wanted = ["shop_id", "taxonomy_id", *self.cat_names, *listing_dense]
        self.missing_columns = [c for c in wanted if c not in frame.columns]
        self._dense = {
            name: np.append(self._standardize(name, _floats(frame, name)), 0.0)
            for name in listing_dense
            if name in frame.columns
        }
        # raw target values (strings; None where missing, and for the unknown-candidate row n) of the
        # columns the touch signals match on
        self._raw = {
            col: [*frame[col].cast(pl.String).to_list(), None]
            for col in {ENTITY_COLUMNS.get(e, e) for e in (p.split(":", 1)[0] for p in self.pairs)}
            if col in frame.columns and col != "listing_id"
        }

    def build(
        self,
        listing_ids: Sequence[str],
        *,
        query: str | None,
        state: UserState | None,
        now: int,
        bids: np.ndarray,
        context: Mapping[str, Any] | None = None,
        shared: RequestMemo | None = None,
    ) -> RequestFeatures:
        """Inputs for candidates ``listing_ids`` with ``bids`` (B,), the request's query and context
        (impression-level ``c_*`` / ``f_*`` values), and the user's store state at time ``now``.

        ``shared``: the :class:`RequestMemo` that the runs of one request fill and read, so a second run
        neither encodes the same sequences again nor matches the same window entries again."""
        context = dict(context or {})
        B = len(listing_ids)
        n = len(self.catalog)
        rows = np.fromiter((self.catalog.row.get(lid, n) for lid in listing_ids), np.int64, count=B)
        target = {e: ids[rows] for e, ids in self._target.items()}
        unknown = np.flatnonzero(rows == n)
        if unknown.size:  # ids the catalog lacks: the listing id may still be in the vocabulary (else OOV)
            target["listing"][unknown] = self.encoders["listing"].many(listing_ids[int(i)] for i in unknown)
        categorical = {"query": np.full(B, self.encoders["query"].one(query), np.int32)}
        for c in self.cat_names:
            if c in context:
                categorical[c] = np.full(B, self.encoders[c].one(_str(context[c])), np.int32)
            else:
                categorical[c] = self._categorical[c][rows]
        dense = np.zeros((B, len(self.dense_stats)), np.float32)
        for j, name in enumerate(self.dense_stats):
            if name in context:
                dense[:, j] = self._standardize(name, np.array([_float(context[name])], np.float64))[0]
            elif name == "bid":
                dense[:, j] = self._standardize(name, np.asarray(bids, np.float64))
            elif name in self._dense:
                dense[:, j] = self._dense[name][rows]
        self._request_ranks(dense)
        memo = RequestMemo() if shared is None else shared
        if self.sequence_key not in memo.sequences:
            memo.sequences[self.sequence_key] = self._sequences(state, now)
        seq_ids, seq_len, used = memo.sequences[self.sequence_key]
        return RequestFeatures(
            target={e: torch.from_numpy(v.astype(np.int64)) for e, v in target.items()},
            categorical={c: torch.from_numpy(v.astype(np.int64)) for c, v in categorical.items()},
            dense=torch.from_numpy(dense),
            seq_ids=seq_ids,
            seq_len=seq_len,
            touch=torch.from_numpy(self._touch(listing_ids, rows, query, context, used, now, memo.touch)),
            listing_ids=list(listing_ids),
            sequences=used,
        )

    def _touch(
        self,
        listing_ids: Sequence[str],
        rows: np.ndarray,
        query: str | None,
        context: Mapping[str, Any],
        used: dict[str, list[tuple[int, str]]],
        now: int,
        shared: dict[tuple[str, tuple[tuple[int, str], ...]], np.ndarray],
    ) -> np.ndarray:
        """(B, P, 2) raw touch signals: each pair's entries against each candidate's raw value of the
        pair's entity, by :func:`~adsformer.data.touch.touch_of_entries` (equal to the offline features'); a
        column ``shared`` already holds for the pair and its entries is taken from there."""
        B = len(listing_ids)
        out = np.zeros((B, len(self.pairs), 2), np.float32)
        out[:, :, 1] = NEVER
        indexed: dict[str, dict[str, np.ndarray]] = {}  # column -> the candidates' rows by raw value, once
        for j, name in enumerate(self.pairs):
            entries = used[name]
            if not entries:  # nothing in the window: nothing matches (the function would say the same)
                continue
            key = (name, tuple(entries))
            if key in shared:  # another run of this request matched the same entries
                out[:, j] = shared[key]
                continue
            column = ENTITY_COLUMNS.get(name.split(":", 1)[0], name.split(":", 1)[0])
            if column not in indexed:
                indexed[column] = rows_by_value(self._targets(column, listing_ids, rows, query, context))
            if name == MERGED_PAIR:  # "ACTION LISTING" entries match their listing
                entries = [(ts, _merged_listing(v)) for ts, v in entries]
            out[:, j] = touch_of_entries(indexed[column], B, entries, now)
            shared[key] = out[:, j]
        return out

    def _targets(
        self,
        column: str,
        listing_ids: Sequence[str],
        rows: np.ndarray,
        query: str | None,
        context: Mapping[str, Any],
    ) -> Sequence[object | None]:
        """Each candidate's raw value of ``column`` (B,), as the offline join gives it."""
        B = len(listing_ids)
        if column == "listing_id":
            return listing_ids
        if column == "query":
            return [query] * B
        if column in context:  # an impression-level value rules, as in the offline join
            return [_str(context[column])] * B
        if column in self._raw:
            raw = self._raw[column]
            return [raw[int(r)] for r in rows]
        return [None] * B

    def _sequences(self, state: UserState | None, now: int) -> Sequences:
        seq_ids, seq_len, used = {}, {}, {}
        for name in self.pairs:
            entries = state.sequences.get(name, []) if state is not None else []
            entries = [(ts, v) for ts, v in entries if in_window(ts, now, self.window_s)][: self.max_len]
            ids = np.zeros((1, max(1, len(entries))), np.int64)  # (1, M)
            entity = name.split(":", 1)[0]
            if name == MERGED_PAIR:  # "ACTION LISTING" -> listing * A + action, as features.pack_actions
                parts = [v.split(" ", 1) if " " in v else ["", v] for _, v in entries]
                listing = self.encoders["listing"].many(p[1] for p in parts)
                action = self.encoders["action"].many(p[0] for p in parts)
                ids[0, : len(entries)] = pack_actions(listing, action, self.n_actions)
            else:
                ids[0, : len(entries)] = self.encoders[entity].many(v for _, v in entries)
            seq_ids[name] = torch.from_numpy(ids)
            seq_len[name] = torch.tensor([len(entries)], dtype=torch.int64)
            used[name] = entries
        return seq_ids, seq_len, used

    def _column_ids(self, frame: pl.DataFrame, column: str, vocab: str, n: int) -> np.ndarray:
        if column not in frame.columns:
            return np.zeros(n + 1, np.int32)
        return np.append(self.encoders[vocab].many(frame[column].cast(pl.String).to_list()), 0)

    def _request_ranks(self, dense: np.ndarray) -> None:
        """Fill the ``rank(X)`` columns of ``dense`` (B, F) in place: X's percentile rank among this request's
        candidates, as offline (:func:`adsformer.data.ranks.within_request_rank`), then standardized."""
        names = list(self.dense_stats)
        one_request = np.zeros(dense.shape[0], np.int64)
        for j, name in enumerate(names):
            column = ranked_column(name)
            if column is None:
                continue
            r = within_request_rank(dense[:, names.index(column)], one_request).astype(np.float64)
            dense[:, j] = standardize(r, self.dense_stats[name])

    def _standardize(self, name: str, x: np.ndarray) -> np.ndarray:
        """(B,) float32 as offline (:mod:`adsformer.data.dense`): transformed, standardized with the run's
        training statistics, non-finite -> 0."""
        return standardize(transform(name, x), self.dense_stats[name])


def _sequence_key(pairs: Sequence[str], window_s: int, max_len: int, vocabs: Vocabularies) -> bytes:
    """A digest of what a run's encoded sequences depend on besides the request: the pairs, window, length
    and the vocabularies that encode them (ids in order, OOV buckets)."""
    digest = hashlib.blake2b(repr((list(pairs), window_s, max_len)).encode(), digest_size=16)
    for name in sorted(vocabs.by_name):
        vocab = vocabs[name]
        digest.update(f"\x01{name}\x01{vocab.num_oov}\x01{vocab.first_id_index}\x01".encode())
        digest.update("\x00".join(str(i) for i in vocab.ids).encode("utf-8", "backslashreplace"))
    return digest.digest()


def _floats(frame: pl.DataFrame, name: str) -> np.ndarray:
    return frame[name].cast(pl.Float64).to_numpy().astype(np.float64)


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _str(value: Any) -> str | None:
    return None if value is None else str(value)
