"""Typed, frozen configuration: one small dataclass per component, YAML in, ``--set key=value`` on top.

Every component reads its own dataclass; :class:`DataConfig` gathers the data-side ones. Overrides
address a field by its dotted path (``split.test_days=2``) or by a documented short key (``window_s``,
``max_len``, ...; see :data:`SHORT_KEYS`). Values are parsed as YAML scalars, so ``3600``, ``0.5``,
``true`` and ``[listing:view, shop:view]`` all work.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from adsformer.errors import UserError

T = TypeVar("T")

#: The longest sequence window: the sequence index packs ``ts - (first ts - window_s)`` into 32 bits, so the
#: data's time span plus the window must stay under 2^32 s (136 years); timestamps are checked to be before
#: 2100 (:data:`adsformer.data.validate.MAX_TS`), which leaves room for this window
MAX_WINDOW_S = 5 * 365 * 86_400
#: The widest embedding / hidden layer, the most heads and blocks: beyond these a config is a typo
MAX_DIM, MAX_HEADS, MAX_BLOCKS, MAX_SEQ_LEN = 4096, 64, 64, 10_000
#: Vocabulary indices are int32: top-K plus the OOV buckets must fit
MAX_TOP_K, MAX_OOV = 2**31 - 1 - 1024, 1024
#: Seeds feed numpy's and torch's generators, which take 64-bit seeds
MAX_SEED = 2**63 - 1
SPLIT_MODES = ("auto", "days", "fraction")
#: Entities a sequence pair may name besides listing attributes ``c_*`` (see adsformer.data.schema)
PAIR_ENTITIES = ("listing", "shop", "taxonomy", "query")


class ConfigError(UserError):
    """A configuration key or value that does not fit the typed config.

    Range checks raise it with ``key`` (the field name) and ``detail`` (the rule and the value), so
    :func:`from_dict` can say the full dotted path (``data.sequences.max_len must be >= 1, got -1``)."""

    def __init__(self, message: str, *, key: str | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.key = key
        self.detail = detail


def check_ranges(cfg: Any, checks: list[tuple[str, bool, str]]) -> None:
    """Raise :class:`ConfigError` for the first ``(field, ok, rule)`` that is not ok (used in the
    ``__post_init__`` of every config dataclass, so a bad value fails when the config is built)."""
    for key, ok, rule in checks:
        if not ok:
            detail = f" {rule}, got {getattr(cfg, key)!r}"
            raise ConfigError(f"{key}{detail}", key=key, detail=detail)


def finite(x: float, lo: float = -math.inf, hi: float = math.inf) -> bool:
    """``x`` is a finite number in [lo, hi]."""
    return isinstance(x, int | float) and math.isfinite(x) and lo <= x <= hi


def in_range(x: int, lo: int, hi: int) -> bool:
    """``x`` is an integer in [lo, hi]."""
    return isinstance(x, int) and not isinstance(x, bool) and lo <= x <= hi


def valid_pair(name: str, *, allow: tuple[str, ...] = ("all",)) -> bool:
    """``name`` is one of ``allow`` or an ``entity:action`` pair (entity a known one or ``c_*``; action
    may be ``*`` where the component allows it)."""
    if name in allow:
        return True
    entity, sep, action = name.partition(":")
    return bool(sep and action and (entity in PAIR_ENTITIES or (entity.startswith("c_") and len(entity) > 2)))


@dataclass(frozen=True)
class SequenceConfig:
    """Which (entity, action) sequences to build and how.

    ``pairs`` holds names ``"entity:action"`` (entities: listing, shop, taxonomy, query), or ``"all"`` for
    every pair the training events contain.
    """

    pairs: tuple[str, ...] = ("all",)
    window_s: int = 3600  # only events with ts in [t - window_s, t) feed a request at time t
    max_len: int = 50  # M: newest first, capped

    def __post_init__(self) -> None:
        check_ranges(
            self,
            [
                (
                    "pairs",
                    all(valid_pair(p) for p in self.pairs),
                    "must be 'all' or entity:action names (entity: listing, shop, taxonomy, query or c_*)",
                ),
                (
                    "window_s",
                    in_range(self.window_s, 0, MAX_WINDOW_S),
                    f"must be in [0, {MAX_WINDOW_S}] seconds",
                ),
                ("max_len", in_range(self.max_len, 1, MAX_SEQ_LEN), f"must be in [1, {MAX_SEQ_LEN}]"),
            ],
        )


@dataclass(frozen=True)
class VocabConfig:
    """Top-K vocabularies per entity, fit on the training split only. 0 = padding, 1..num_oov = OOV."""

    listing_top_k: int = 750_000
    shop_top_k: int = 100_000
    taxonomy_top_k: int = 10_000
    query_top_k: int = 100_000
    categorical_top_k: int = 10_000  # each c_* feature
    num_oov: int = 1

    def __post_init__(self) -> None:
        checks = [
            (
                f"{e}_top_k",
                in_range(getattr(self, f"{e}_top_k"), 0, MAX_TOP_K),
                f"must be in [0, {MAX_TOP_K}]",
            )
            for e in ("listing", "shop", "taxonomy", "query", "categorical")
        ]
        checks.append(("num_oov", in_range(self.num_oov, 1, MAX_OOV), f"must be in [1, {MAX_OOV}]"))
        check_ranges(self, checks)

    def top_k(self, entity: str) -> int:
        return int(getattr(self, f"{entity}_top_k", self.categorical_top_k))


@dataclass(frozen=True)
class SplitConfig:
    """Time-based train / validation / test split of the impressions.

    ``mode``: ``"days"`` = the last ``test_days`` are test and the ``val_days`` before are validation;
    ``"fraction"`` = cut at time quantiles so the last ``test_fraction`` of impressions is test;
    ``"auto"`` = ``days`` when the data spans at least ``3 * (val_days + test_days)`` days, else ``fraction``.
    """

    mode: str = "auto"
    val_days: float = 1.0
    test_days: float = 1.0
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    # "days" mode only (the daily protocol): the test period ends this many days before the data's end, and
    # training keeps only the train_days before validation (0 = all). Rows outside are left out (UNUSED).
    end_days_ago: float = 0.0
    train_days: float = 0.0

    def __post_init__(self) -> None:
        days = "must be a number of days in (0, 36500]"
        check_ranges(
            self,
            [
                ("mode", self.mode in SPLIT_MODES, f"must be one of {list(SPLIT_MODES)}"),
                ("val_days", finite(self.val_days, 0, 36_500) and self.val_days > 0, days),
                ("test_days", finite(self.test_days, 0, 36_500) and self.test_days > 0, days),
                (
                    "val_fraction",
                    finite(self.val_fraction, 0, 1) and 0 < self.val_fraction < 1,
                    "must be in (0, 1)",
                ),
                (
                    "test_fraction",
                    finite(self.test_fraction, 0, 1)
                    and 0 < self.test_fraction < 1
                    and self.val_fraction + self.test_fraction < 1,
                    "must be in (0, 1), with val_fraction + test_fraction < 1",
                ),
                (
                    "end_days_ago",
                    finite(self.end_days_ago, 0, 36_500),
                    "must be a number of days in [0, 36500]",
                ),
                (
                    "train_days",
                    finite(self.train_days, 0, 36_500),
                    "must be a number of days in [0, 36500] (0 = all)",
                ),
            ],
        )


@dataclass(frozen=True)
class SamplingConfig:
    """Negative down-sampling of the training split only (validation and test keep the natural rate)."""

    neg_keep_rate: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        check_ranges(
            self,
            [
                (
                    "neg_keep_rate",
                    finite(self.neg_keep_rate, 0, 1) and self.neg_keep_rate > 0,
                    "must be in (0, 1] (1 = keep every negative)",
                ),
                ("seed", in_range(self.seed, 0, MAX_SEED), "must be an integer >= 0"),
            ],
        )


@dataclass(frozen=True)
class DataConfig:
    sequences: SequenceConfig = field(default_factory=SequenceConfig)
    vocab: VocabConfig = field(default_factory=VocabConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)


#: Short override keys users type most, mapped to their dotted paths (relative to the config root).
SHORT_KEYS: dict[str, str] = {
    "window_s": "sequences.window_s",
    "max_len": "sequences.max_len",
    "pairs": "sequences.pairs",
    "neg_keep_rate": "sampling.neg_keep_rate",
    "listing_top_k": "vocab.listing_top_k",
    "num_oov": "vocab.num_oov",
    "split_mode": "split.mode",
    "test_days": "split.test_days",
    "val_days": "split.val_days",
    "end_days_ago": "split.end_days_ago",
    "train_days": "split.train_days",
}


def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain, JSON/YAML-ready dict of a (nested) config dataclass."""
    out = dataclasses.asdict(cfg)
    return _listify(out)


def _listify(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _listify(v) for k, v in obj.items()}
    if isinstance(obj, tuple | list):
        return [_listify(v) for v in obj]
    return obj


def from_dict(cls: type[T], data: dict[str, Any] | None, *, where: str = "") -> T:
    """Build the dataclass ``cls`` from a (partial) dict, checking every key and coercing types."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in names:
            raise ConfigError(f"unknown config key {path!r}; expected one of {sorted(names)}")
        kwargs[key] = _coerce(hints[key], value, path)
    try:
        return cls(**kwargs)
    except ConfigError as exc:  # a range check: name the key by its full dotted path
        if exc.key is None or not where:
            raise
        key = f"{where}.{exc.key}"
        raise ConfigError(f"{key}{exc.detail}", key=key, detail=exc.detail) from None


def _coerce(tp: Any, value: Any, path: str) -> Any:
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where=path)
    origin = typing.get_origin(tp)
    if origin is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        (item_tp, *_rest) = typing.get_args(tp)
        return tuple(_coerce(item_tp, v, path) for v in value)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(args[0], value, path)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected true/false, got {value!r}")
    if tp is int:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or (isinstance(value, float) and not math.isfinite(value))
            or int(value) != value
        ):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return int(value)
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{path}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    return value


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["window_s=600", "split.mode=days"]`` -> ``{"window_s": 600, "split.mode": "days"}``."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
            raise ConfigError(
                f"--set {item!r}: the value is not a YAML scalar or list ({problem}); e.g. key=3, "
                f"key=0.5, key=true, key=[a, b]"
            ) from None
    return out


def apply_overrides(cfg: T, overrides: dict[str, Any], short_keys: dict[str, str] | None = None) -> T:
    """Return a copy of ``cfg`` with dotted-path (or short-key) overrides applied and type-checked."""
    short = SHORT_KEYS if short_keys is None else short_keys
    data = to_dict(cfg)
    for key, value in overrides.items():
        path = short.get(key, key).split(".")
        node = data
        for part in path[:-1]:
            if not isinstance(node.get(part), dict):
                raise ConfigError(
                    f"unknown config key {key!r} (no section {part!r}); short keys: {sorted(short)}"
                )
            node = node[part]
        if path[-1] not in node:
            raise ConfigError(f"unknown config key {key!r}; short keys: {sorted(short)}")
        node[path[-1]] = value
    return from_dict(type(cfg), data)


def load_yaml(cls: type[T], path: str | Path) -> T:
    """Read a YAML file into the config dataclass ``cls`` (unknown keys are errors)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc}); expected a YAML text file") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    try:
        return from_dict(cls, data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
