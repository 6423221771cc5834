"""Typed, frozen configuration: one small dataclass per component, one loader, ``--set key=value`` on top.

Every component reads its own frozen dataclass; :class:`DataConfig` gathers the data-side ones. pydantic
validates them (a ``TypeAdapter`` over the dataclasses, :func:`from_dict`): unknown keys are refused, values
are converted to their field's type, enumerated strings are ``Literal`` types, and each dataclass's own
range checks run as it is built. Every problem is one :class:`ConfigError` naming the dotted key.

:func:`resolve_config` is the one loader: defaults, then a config file -- a preset shipped in the package
(``adsformer/configs/NAME.yaml``, chosen by name: ``--config ctr_test``) or a YAML file of the user's, which
may ``extends:`` a preset or another file and lists only what it changes -- then command-line options, then
``--set`` overrides, which address a field by its dotted path (``split.test_days=2``) or by a short key the
config class declares (``SHORT_KEYS``: ``window_s``, ``max_len``, ...). Values are parsed as YAML scalars,
so ``3600``, ``0.5``, ``true`` and ``[listing:view, shop:view]`` all work. It also says where every value
came from (``adsformer config show``).
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import math
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, Literal, TypeVar, cast

import pydantic
import yaml
from pydantic import ConfigDict, with_config

from adsformer.errors import UserError

T = TypeVar("T")
L = TypeVar("L", bound=str)

#: Every config dataclass is validated with this: a key it does not have is an error, not ignored
KNOWN_KEYS_ONLY = ConfigDict(extra="forbid")

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
#: What a model predicts: P(click) or P(purchase | click)
Task = Literal["ctr", "pccvr"]
TASKS: tuple[Task, ...] = typing.get_args(Task)
#: How impressions are split in time (see :class:`SplitConfig`)
SplitMode = Literal["auto", "days", "fraction"]
SPLIT_MODES: tuple[SplitMode, ...] = typing.get_args(SplitMode)
#: Where the windowed sequences are built: in process, or as an Apache Spark job
Engine = Literal["local", "spark"]
ENGINES: tuple[Engine, ...] = typing.get_args(Engine)
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


def one_of(choices: tuple[L, ...], value: object, name: str) -> L:
    """``value`` as one of the ``choices`` of a ``Literal`` type (typed as such); :class:`ConfigError`
    naming ``name`` when it is none of them."""
    for choice in choices:
        if value == choice:
            return choice
    raise ConfigError(f"{name} must be one of {list(choices)}, got {value!r}", key=name)


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


@with_config(KNOWN_KEYS_ONLY)
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


@with_config(KNOWN_KEYS_ONLY)
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


@with_config(KNOWN_KEYS_ONLY)
@dataclass(frozen=True)
class SplitConfig:
    """Time-based train / validation / test split of the impressions.

    ``mode``: ``"days"`` = the last ``test_days`` are test and the ``val_days`` before are validation;
    ``"fraction"`` = cut at time quantiles so the last ``test_fraction`` of impressions is test;
    ``"auto"`` = ``days`` when the data spans at least ``3 * (val_days + test_days)`` days, else ``fraction``.
    """

    mode: SplitMode = "auto"
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


@with_config(KNOWN_KEYS_ONLY)
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


@with_config(KNOWN_KEYS_ONLY)
@dataclass(frozen=True)
class DataConfig:
    """The data side of a run, or of a feature store (``adsformer features``): presets ``data``, ``data_test``."""

    KIND: ClassVar[str] = "data"
    #: ``--set`` short keys users type most, mapped to their dotted paths
    SHORT_KEYS: ClassVar[Mapping[str, str]] = {
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

    sequences: SequenceConfig = field(default_factory=SequenceConfig)
    vocab: VocabConfig = field(default_factory=VocabConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    # numeric columns also fed as their percentile rank within the request (adsformer.data.ranks);
    # auto = the price columns, [] = none
    request_ranks: tuple[str, ...] = ("auto",)


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


# -- validation: pydantic over the frozen dataclasses --------------------------------------------------
_ADAPTERS: dict[type, pydantic.TypeAdapter[Any]] = {}


def _adapter(cls: type) -> pydantic.TypeAdapter[Any]:
    """The (cached) pydantic validator of a config dataclass."""
    if cls not in _ADAPTERS:
        _ADAPTERS[cls] = pydantic.TypeAdapter(cls)
    return _ADAPTERS[cls]


def from_dict(cls: type[T], data: Mapping[str, Any] | None, *, where: str = "") -> T:
    """Build the config dataclass ``cls`` from a (partial) mapping: pydantic checks every key and converts
    every value to its field's type; the dataclasses' own range checks run as they are built. Any problem
    is one :class:`ConfigError` naming the full dotted key (``where`` is prefixed to it)."""
    try:
        return cast(T, _adapter(cls).validate_python(dict(data or {})))
    except pydantic.ValidationError as exc:
        errors = exc.errors()
        union = _union_field(cls, errors)
        if union is not None:  # a value none of a union field's types takes: one line for the field
            field, nullable = union
            key = ".".join([where, *field] if where else field)
            kinds = [
                _EXPECTED.get(e["type"].split("_")[0], e["msg"].removeprefix("Input should be "))
                for e in errors
            ]
            kinds += ["null"] if nullable else []
            detail = f": expected {', '.join(kinds)}; got {errors[0].get('input')!r}"
            raise ConfigError(f"{key}{detail}", key=key) from None
        raise _config_error(cls, errors[0], where) from None


def _union_field(cls: type, errors: list[Any]) -> tuple[list[str], bool] | None:
    """The field path when the errors are the members of one union field (``int | Literal['auto'] | None``)
    each refusing the value -- pydantic names the member last: ``cross_rank.int``,
    ``cross_rank.literal['auto']`` -- and whether it takes null; else None."""
    paths = {tuple(str(p) for p in e["loc"][:-1]) for e in errors}
    if len(errors) < 2 or len(paths) != 1 or not next(iter(paths)):  # () : errors in two top-level keys
        return None
    path = list(next(iter(paths)))
    try:
        parent = _field_type(cls, path[:-1])
        declared = typing.get_type_hints(parent)[path[-1]] if dataclasses.is_dataclass(parent) else None
    except (KeyError, IndexError, StopIteration, TypeError):
        return None
    members = [a for a in typing.get_args(declared) if a is not type(None)]
    is_union = typing.get_origin(declared) in (typing.Union, types.UnionType) and len(members) > 1
    return (path, type(None) in typing.get_args(declared)) if is_union else None


def _config_error(cls: type, error: Any, where: str) -> ConfigError:
    """One pydantic error as the one-line :class:`ConfigError` adsformer prints."""
    loc = [str(part) for part in error["loc"]]
    key = ".".join([where, *loc] if where else loc)
    kind, value = error["type"], error.get("input")
    if kind == "value_error":  # a range check in __post_init__
        cause = error["ctx"]["error"]
        if isinstance(cause, ConfigError) and cause.key is not None:
            full = f"{key}.{cause.key}" if key else cause.key
            return ConfigError(f"{full}{cause.detail}", key=full, detail=cause.detail)
        text = str(cause)
        return ConfigError(text if isinstance(cause, ConfigError) or not key else f"{key}: {text}")
    if kind == "unexpected_keyword_argument":
        known = sorted(f.name for f in dataclasses.fields(_field_type(cls, loc[:-1])))
        return ConfigError(f"unknown config key {key!r}; expected one of {known}")
    if kind == "literal_error":
        choices = list(typing.get_args(_field_type(cls, loc)))
        detail = f" must be one of {choices}, got {value!r}"
        return ConfigError(f"{key}{detail}", key=key, detail=detail)
    expected = _EXPECTED.get(kind.split("_")[0], error["msg"].removeprefix("Input should be ").lower())
    return ConfigError(f"{key}: expected {expected}, got {value!r}", key=key)


#: What a field expected, by the first word of pydantic's error type (int_parsing, float_type, ...)
_EXPECTED = {
    "int": "an integer",
    "finite": "an integer",  # only int fields refuse nan / inf: float ones leave them to the range checks
    "float": "a number",
    "bool": "true/false",
    "string": "a string",
    "tuple": "a list",
    "list": "a list",
    "iterable": "a list",
    "dataclass": "a mapping",
    "dict": "a mapping",
}


def _field_type(cls: type, loc: Sequence[str]) -> Any:
    """The declared type at ``loc`` (field names) under the dataclass ``cls``, optional unwrapped."""
    tp: Any = cls
    for name in loc:
        if typing.get_origin(tp) in (typing.Union, types.UnionType):
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
        if typing.get_origin(tp) is dict:  # a mapping's key: its values' type
            tp = typing.get_args(tp)[1]
        elif dataclasses.is_dataclass(tp):
            tp = typing.get_type_hints(tp)[name]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    return tp


# -- overrides: --set key=value ----------------------------------------------------------------------
def parse_overrides(items: Sequence[str] | None) -> dict[str, Any]:
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


def short_keys_of(cls: type) -> Mapping[str, str]:
    """The ``--set`` short keys a config class declares (``SHORT_KEYS``), each mapped to its dotted path."""
    return cast(Mapping[str, str], getattr(cls, "SHORT_KEYS", {}))


def apply_overrides(cfg: T, overrides: Mapping[str, Any], short_keys: Mapping[str, str] | None = None) -> T:
    """A copy of ``cfg`` with dotted-path (or short-key) overrides applied and validated. A list key given
    a text is split at commas (``pairs=listing:view,shop:view``). ``short_keys``: the class's own when None."""
    data = to_dict(cfg)
    _set_all(data, overrides, short_keys_of(type(cfg)) if short_keys is None else short_keys)
    return from_dict(type(cfg), data)


def _set_all(data: dict[str, Any], overrides: Mapping[str, Any], short: Mapping[str, str]) -> list[str]:
    """Set each override in the nested ``data`` (in place); returns the dotted paths set, in order."""
    paths = []
    for key, value in overrides.items():
        path = short.get(key, key)
        parts = path.split(".")
        node = data
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise ConfigError(
                    f"unknown config key {key!r} (no section {part!r}); short keys: {sorted(short)}"
                )
            node = node[part]
        if parts[-1] not in node:
            raise ConfigError(f"unknown config key {key!r}; short keys: {sorted(short)}")
        if isinstance(node[parts[-1]], list) and isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        node[parts[-1]] = value
        paths.append(path)
    return paths


# -- config files: presets, extends, provenance --------------------------------------------------------
#: The presets shipped inside the package: ``--config NAME`` reads ``adsformer/configs/NAME.yaml``
PRESETS = importlib.resources.files("adsformer") / "configs"
#: Keys of a config file that are not config fields
EXTENDS, KIND = "extends", "kind"
#: Top-level keys that make a file without ``kind`` a run config
_RUN_KEYS = frozenset({"task", "data", "model", "train", "eval"})
#: The section of a config of another kind that holds a config of this kind: (file kind, wanted) -> key
_SECTIONS = {("run", "data"): "data"}
DEFAULT, SET = "default", "--set"


def preset_names() -> list[str]:
    """The names ``--config`` takes besides a file path."""
    return sorted(p.name.removesuffix(".yaml") for p in PRESETS.iterdir() if p.name.endswith(".yaml"))


@dataclass(frozen=True)
class Layer:
    """One config file's own values and where they came from (``preset NAME`` or the file's path)."""

    source: str
    values: dict[str, Any]


@dataclass(frozen=True)
class Resolved(Generic[T]):
    """A config, and for every dotted key where its value came from: ``default``, ``preset NAME``, a
    file's path, ``--set`` or the command-line option that gave it (``--task``)."""

    config: T
    origin: dict[str, str]

    def rows(self) -> list[tuple[str, Any, str]]:
        """(dotted key, value, where it came from) for every leaf of the config, in field order."""
        return [(k, v, self.origin.get(k, DEFAULT)) for k, v in _leaves(to_dict(self.config))]


def read_layers(config: str | Path) -> tuple[list[Layer], str | None]:
    """The files a config names, the one it ``extends`` first (recursively), and its ``kind`` (the first
    declared down the chain; None when no file declares one and none looks like a run config).

    ``config`` is a preset name (``ctr_test``) or a YAML file; ``extends`` names a preset or a file
    relative to the extending one."""
    layers: list[Layer] = []
    kind: str | None = None
    seen: list[str] = []
    current: str | Path | None = config
    base = Path.cwd()
    while current is not None:
        source, text, base = _open(current, base)
        if source in seen:
            raise ConfigError(f"{source}: extends itself ({' -> '.join([*seen, source])})")
        seen.append(source)
        values = _parse(source, text)
        parent = values.pop(EXTENDS, None)
        declared = values.pop(KIND, None)
        if parent is not None and not isinstance(parent, str):
            raise ConfigError(f"{source}: extends must be a preset name or a file path, got {parent!r}")
        if declared is not None and not isinstance(declared, str):
            raise ConfigError(f"{source}: kind must be a word such as run or data, got {declared!r}")
        kind = kind or declared
        layers.insert(0, Layer(source, values))
        current = parent
    if kind is None and any(_RUN_KEYS & set(layer.values) for layer in layers):
        kind = "run"
    return layers, kind


def _open(config: str | Path, base: Path) -> tuple[str, str, Path]:
    """(source label, YAML text, folder its relative ``extends`` resolve against) of a preset or file."""
    text_name = str(config)
    is_file = isinstance(config, Path) or text_name.endswith((".yaml", ".yml")) or "/" in text_name
    if not is_file:
        preset = PRESETS / f"{text_name}.yaml"
        if not preset.is_file():
            raise ConfigError(
                f"--config {text_name}: no such preset; expected one of {preset_names()} or a YAML file "
                f"path (NAME.yaml)"
            )
        return f"preset {text_name}", preset.read_text(), base
    path = (base / config).resolve()
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{config}: cannot read the config file ({exc}); expected a YAML text file"
        ) from None
    return str(path), text, path.parent


def _parse(source: str, text: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML ({' '.join(str(exc).split())})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    return data


def resolve_config(
    cls: type[T],
    config: str | Path | None = None,
    overrides: Sequence[str] | None = None,
    options: Mapping[str, Any] | None = None,
) -> Resolved[T]:
    """The one config loader: defaults, then the config file(s) (a preset or a YAML file and what it
    ``extends``), then command-line ``options`` (``{"task": "pccvr"}``, labelled ``--task``), then the
    ``--set`` overrides; validated by :func:`from_dict`, with where every value came from.

    A file of another ``kind`` is refused, except a run config giving a data config (its ``data``
    section). Short keys are the class's ``SHORT_KEYS``."""
    want: str | None = getattr(cls, "KIND", None)
    layers, kind = read_layers(config) if config is not None else ([], None)
    section = _SECTIONS.get((kind, want)) if kind and want else None
    if kind and want and kind != want and section is None:
        raise ConfigError(f"--config {config}: a {kind} config; this command needs a {want} config")
    data = to_dict(cls())
    origin: dict[str, str] = {}
    replaced = cast(frozenset[str], getattr(cls, "REPLACED", frozenset()))
    for layer in layers:
        values = (layer.values.get(section) or {}) if section else layer.values
        if not isinstance(values, dict):
            raise ConfigError(f"{layer.source}: {section} must be a mapping")
        try:
            _merge(data, values, origin, layer.source, "", replaced)
        except ConfigError as exc:
            raise ConfigError(f"{layer.source}: {exc.one_line()}") from None
    short = short_keys_of(cls)
    try:
        cfg = from_dict(cls, data)
    except ConfigError as exc:
        source = origin.get(exc.key or "", layers[-1].source if layers else "")
        raise ConfigError(f"{source}: {exc.one_line()}" if source else str(exc), key=exc.key) from None
    for label, values in [*[(f"--{k}", {k: v}) for k, v in (options or {}).items()], (SET, None)]:
        for path in _set_all(data, parse_overrides(overrides) if values is None else values, short):
            _mark(origin, path, label)
        cfg = from_dict(cls, data)
    return Resolved(cfg, origin)


def load_config(
    cls: type[T],
    config: str | Path | None = None,
    overrides: Sequence[str] | None = None,
    options: Mapping[str, Any] | None = None,
) -> T:
    """:func:`resolve_config` without the provenance."""
    return resolve_config(cls, config, overrides, options).config


def _merge(
    data: dict[str, Any],
    values: Mapping[str, Any],
    origin: dict[str, str],
    source: str,
    at: str,
    replaced: frozenset[str] = frozenset(),
) -> None:
    """Deep-merge a file's ``values`` into ``data`` (lists, scalars and the mappings named in ``replaced``
    replace), recording each leaf's source; a key the config does not have is refused here, with its full
    dotted path."""
    for key, value in values.items():
        path = f"{at}{key}"
        if key not in data:
            known = sorted(data)
            raise ConfigError(f"unknown config key {path!r}; expected one of {known}", key=path)
        if isinstance(data[key], dict) and isinstance(value, dict) and path not in replaced:
            _merge(data[key], value, origin, source, f"{path}.", replaced)
            continue
        data[key] = value
        _mark(origin, path, source)


def _mark(origin: dict[str, str], path: str, source: str) -> None:
    """``path`` (and everything under it) now comes from ``source``."""
    for leaf in [k for k in origin if k.startswith(f"{path}.")]:
        del origin[leaf]
    origin[path] = source


def _leaves(data: Mapping[str, Any], at: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out += _leaves(value, f"{at}{key}.")
        else:
            out.append((f"{at}{key}", value))
    return out
