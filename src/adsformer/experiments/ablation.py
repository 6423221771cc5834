"""``adsformer ablate --suite paper|pretrained``: the rows of the paper's tables 2 and 3 (``paper``) or of its
table 4 (``pretrained``: ADPM-3 with each subset of the given pretrained tables in component 2) on your
data, over seeds.

Every row is the same ranker and the same features; only the user module (and ADPM's components) change.
The features are built once; each seed re-initializes and re-shuffles every model. Lifts are relative to
the non-personalized baseline of the same seed, in percent, then averaged over seeds.

Every suite also has the established peers ``DIN`` and ``TransAct`` (FuxiCTR's, trained on the same
features and split by :mod:`adsformer.experiments.peers`; skipped with the install command when the
optional package fuxictr is not installed). ``tables=auto`` (``adsformer ablate --tables auto``) first learns
a skip-gram listing table from the sessions before the test period into ``OUT/tables/skipgram``
(:func:`learn_auto_tables`), so the rows with pretrained tables run on any dataset.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from adsformer.adpm.config import ADPMConfig, LearnedPooling, Pooling
from adsformer.config import ConfigError, to_dict
from adsformer.console import log as progress_line
from adsformer.console import stage
from adsformer.data.features import FeatureSet, build_features
from adsformer.data.validate import read_dataset
from adsformer.experiments.ablation_result import (
    AblationResult,
    RunMetrics,
    SkippedRow,
    ablation_markdown,
    summarize,
)
from adsformer.experiments.peers import FUXICTR_VERSION, PEERS, peer_logits, peer_pair, peers_unavailable
from adsformer.experiments.rules import RULES, rule_scores
from adsformer.experiments.runs import _calibrated_metrics, check_task, fit, test_metrics
from adsformer.io import atomic_dir
from adsformer.models.config import is_user_name
from adsformer.representations.skipgram import SkipGramConfig, train_skipgram
from adsformer.run.calibration import Calibrator
from adsformer.run.config import ExperimentConfig

#: ``tables=auto``: learn a skip-gram table into OUT/AUTO_TABLE before the rows run
AUTO = "auto"
AUTO_TABLE = Path("tables") / "skipgram"


@dataclass(frozen=True)
class Row:
    name: str
    user: str
    # ADPM components 1, 2, 3; None = as configured (the default adSformer: component 2 when tables are set)
    components: tuple[bool, bool, bool] | None = (True, True, True)
    pooling: Pooling = "max"
    tables: tuple[int, ...] | None = None  # which of the configured pretrained tables (None: all)
    touch: bool = False  # ADPM component 4, the target-aware touch signals (beyond the paper)
    comp3_pooling: LearnedPooling = "mean"  # component 3: "mean" (the paper), "target" (DIN-style)
    # the paper's encoder (its sequence attends to the target) for the paper's rows; False: as configured
    paper_encoder: bool = False

    @property
    def needs_tables(self) -> bool:
        return self.user == "adsformer" and self.components is not None and self.components[1]

    @property
    def is_rule(self) -> bool:
        """A no-learning rule (:mod:`adsformer.experiments.rules`): scored, not trained."""
        return self.user in RULES

    @property
    def is_peer(self) -> bool:
        """An established peer from FuxiCTR (:mod:`adsformer.experiments.peers`): trained by its own code."""
        return self.user in PEERS

    def apply(self, cfg: ExperimentConfig) -> ExperimentConfig:
        adpm: ADPMConfig = cfg.model.adpm
        c1, c2, c3 = self.components or (adpm.encoder.enabled, True, adpm.learned.enabled)
        adpm = dataclasses.replace(
            adpm,
            encoder=dataclasses.replace(
                adpm.encoder,
                enabled=c1,
                pooling=self.pooling,
                sequence_sees_target=self.paper_encoder or adpm.encoder.sequence_sees_target,
            ),
            pretrained=dataclasses.replace(
                adpm.pretrained, tables=self._tables(adpm.pretrained.tables) if c2 else ()
            ),
            learned=dataclasses.replace(adpm.learned, enabled=c3, pooling=self.comp3_pooling),
            touch=dataclasses.replace(adpm.touch, enabled=self.touch),
        )
        # rules and peers are not user modules of ours: the config keeps its own (their rows read only the
        # data and training settings)
        user = self.user if is_user_name(self.user) else cfg.model.user
        return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, user=user, adpm=adpm))

    def _tables(self, tables: tuple[str, ...]) -> tuple[str, ...]:
        return tables if self.tables is None else tuple(tables[i] for i in self.tables)


#: The paper's tables 2 and 3 (CTR and PCCVR ablations), in its order, with the paper's encoder (every
#: position attends to the target; the library's default encoder keeps its sequence from the target).
PAPER_SUITE: tuple[Row, ...] = (
    Row("baseline", "baseline"),
    Row("ADPM-3[MaxPool]", "adsformer", paper_encoder=True),
    Row("ADPM-3[AvgPool]", "adsformer", pooling="mean", paper_encoder=True),
    Row("[Comp1,Comp2]", "adsformer", (True, True, False), paper_encoder=True),
    Row("[Comp1,Comp3]", "adsformer", (True, False, True), paper_encoder=True),
    Row("[Comp2,Comp3]", "adsformer", (False, True, True), paper_encoder=True),
    Row("[Comp1]", "adsformer", (True, False, False), paper_encoder=True),
    Row("[Comp2]", "adsformer", (False, True, False), paper_encoder=True),
    Row("[Comp3]", "adsformer", (False, False, True), paper_encoder=True),
    Row("BST-k=20-8heads", "bst"),
    Row("Ebay-k=5", "lastk"),
)

#: Beyond the paper, in every table: the default adSformer (ADPM as configured -- component 2 when tables
#: are set -- plus the target-aware touch signals), the touch signals alone, and the no-learning rules a
#: user would compare against.
COMPARISON_ROWS: tuple[Row, ...] = (
    Row("adSformer", "adsformer", None, touch=True),
    Row("adSformer[TargetAttn]", "adsformer", None, touch=True, comp3_pooling="target"),
    Row("[Touch]", "adsformer", (False, False, False), touch=True),
    Row("rule-touch", "rule-touch"),
    Row("rule-touch+position", "rule-touch+position"),
)


#: In every table: established peers, FuxiCTR's DIN and TransAct on the ``listing:view`` sequence (rows
#: skipped, with the install command, where the optional package fuxictr is not installed).
PEER_ROWS: tuple[Row, ...] = (Row("DIN", "din"), Row("TransAct", "transact"))


def pretrained_suite(tables: tuple[str, ...]) -> tuple[Row, ...]:
    """The paper's table 4 for the given tables: ADPM-3 with every non-empty subset of them in component 2
    (labelled by the tables' names, e.g. ``skipgram/visual``), ADPM-3 without pretrained tables, and the
    baseline the lifts are taken against; then the rules and the peers."""
    if not tables:
        raise ConfigError("suite 'pretrained' needs tables: --set tables=[DIR,DIR,...]")
    names = [_table_name(t) for t in tables]
    subsets = [c for k in range(1, len(tables) + 1) for c in itertools.combinations(range(len(tables)), k)]
    return (
        Row("baseline", "baseline"),
        *(Row("/".join(names[i] for i in c), "adsformer", tables=c, paper_encoder=True) for c in subsets),
        Row("No Pretrained Representations", "adsformer", (True, False, True), paper_encoder=True),
        *(r for r in COMPARISON_ROWS if r.is_rule),
        *PEER_ROWS,
    )


def _table_name(directory: str) -> str:
    meta = Path(directory) / "table.json"
    return str(json.loads(meta.read_text()).get("name")) if meta.exists() else Path(directory).name


SUITES: dict[str, Callable[[tuple[str, ...]], tuple[Row, ...]]] = {
    "paper": lambda _tables: PAPER_SUITE + COMPARISON_ROWS + PEER_ROWS,
    "pretrained": pretrained_suite,
}


def run_ablation(
    data_dir: Path,
    cfg: ExperimentConfig,
    suite: str,
    seeds: int,
    out: Path,
    *,
    only: tuple[str, ...] = (),
    log: Callable[[str], None] = progress_line,
) -> AblationResult:
    """Train and test every row (or the rows named in ``only``, plus the baseline) for seeds
    ``train.seed .. train.seed + seeds - 1``; write ``ablation.json`` (with every seed's metrics) and
    ``ablation.md`` atomically. Runs over disjoint seeds can be combined with :func:`merge_ablations`.

    A table ``auto`` in ``model.adpm.pretrained.tables`` is learned first (:func:`learn_auto_tables`) into
    ``out/tables/skipgram``, which the output keeps."""
    auto = AUTO in cfg.model.adpm.pretrained.tables
    if auto:  # the rows are named by the tables: name the one to learn before learning it
        cfg = _with_tables(cfg, out / AUTO_TABLE)
    rows = _suite_rows(suite, cfg, only)
    ds = read_dataset(data_dir)
    check_task(ds, cfg.task)
    fs = build_features(ds, cfg.data)
    if auto:
        learn_auto_tables(ds, cfg, out / AUTO_TABLE, log=log)
    reasons = _skip_reasons(rows, cfg, fs)
    active = [r for r in rows if r.name not in reasons]
    seed_values = tuple(cfg.train.seed + i for i in range(seeds))
    runs: dict[str, list[RunMetrics]] = {r.name: [] for r in active}
    for seed in seed_values:
        for row in active:
            runs[row.name].append(_run_row(row, cfg, fs, seed, log))
    result = AblationResult(
        task=cfg.task,
        dataset=ds.meta.name,
        suite=suite,
        skipped=tuple(SkippedRow(r.name, reasons[r.name]) for r in rows if r.name in reasons),
        config=to_dict(cfg),
        seed_values=seed_values,
        rows=summarize(runs, [r.user for r in active]),
        auto_tables=(str(out / AUTO_TABLE),) if auto else None,
        peers={"package": f"fuxictr {FUXICTR_VERSION}", "sequence": peer_pair(fs)}
        if any(r.is_peer for r in active)
        else None,
    )
    write_ablation(result, out, keep=("tables",) if auto else ())
    return result


def _suite_rows(suite: str, cfg: ExperimentConfig, only: tuple[str, ...]) -> tuple[Row, ...]:
    """The suite's rows (only those named in ``only``, and the baseline, when given)."""
    rows = SUITES[suite](cfg.model.adpm.pretrained.tables)
    unknown = sorted(set(only) - {r.name for r in rows})
    if unknown:
        raise ConfigError(f"unknown rows {unknown} for suite {suite!r}; rows: {[r.name for r in rows]}")
    if only:
        rows = tuple(r for r in rows if r.name in only or r.name == "baseline")
    return rows


def _run_row(
    row: Row, cfg: ExperimentConfig, fs: FeatureSet, seed: int, log: Callable[[str], None]
) -> dict[str, Any]:
    """One row for one seed: the test metrics of the rule, the peer or the trained model (with its
    training examples/s), logged in one line."""
    row_cfg = row.apply(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=seed)))
    if row.is_rule:
        m, seconds = _rule_metrics(row.user, fs, row_cfg), 0.0
    elif row.is_peer:
        m, seconds = _peer_metrics(row.user, fs, row_cfg)
    else:
        with stage(f"seed {seed} {row.name}: train and test"):
            model, result = fit(row_cfg, fs, show_progress=False)
            m = test_metrics(model, fs, row_cfg, result.calibrator)
        m["train_examples_per_s"] = result.examples_per_s
        seconds = result.train_seconds
    log(
        f"seed {seed} {row.name:<20} roc_auc {m['roc_auc']:.4f}  pr_auc {m['pr_auc']:.4f}  "
        f"log_loss {m['log_loss']:.4f}  ({seconds:.1f} s)"
    )
    return m


def _with_tables(cfg: ExperimentConfig, learned: Path) -> ExperimentConfig:
    """``cfg`` with the table ``auto`` replaced by the directory ``learned``."""
    pre = cfg.model.adpm.pretrained
    tables = tuple(str(learned) if t == AUTO else t for t in pre.tables)
    adpm = dataclasses.replace(cfg.model.adpm, pretrained=dataclasses.replace(pre, tables=tables))
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, adpm=adpm))


def learn_auto_tables(
    ds: Any, cfg: ExperimentConfig, out: Path, *, log: Callable[[str], None] = progress_line
) -> Path:
    """``tables=auto``: a skip-gram listing table (:mod:`adsformer.representations.skipgram`, its default
    settings) from the sessions before the test period of ``cfg``'s split, written to ``out`` atomically."""
    from adsformer.representations.quality import save_with_report

    table = train_skipgram(ds, SkipGramConfig(until="test", split=cfg.data.split))
    save_with_report(table, ds.listings, out)
    s = table.settings
    log(
        f"tables=auto: skip-gram table of {len(table.ids):,} listings (d={s['dim']}) from "
        f"{s['sessions']:,} sessions before ts {s['cutoff_ts']} -> {out}"
    )
    return out


def _skip_reasons(rows: tuple[Row, ...], cfg: ExperimentConfig, fs: Any) -> dict[str, str]:
    """Row name -> why it cannot run here (no pretrained tables; the peers without fuxictr or without
    their sequence)."""
    reasons: dict[str, str] = {}
    has_tables = bool(cfg.model.adpm.pretrained.tables)
    peers_missing = peers_unavailable() if any(r.is_peer for r in rows) else None
    for r in rows:
        if r.needs_tables and not has_tables:
            reasons[r.name] = (
                "needs pretrained tables (ADPM component 2): set model.adpm.pretrained.tables, "
                "or --tables auto"
            )
        elif r.is_peer and peers_missing:
            reasons[r.name] = peers_missing
        elif r.is_peer and peer_pair(fs) is None:
            reasons[r.name] = (
                f"the peers need a listing sequence, none built for this dataset "
                f"(data.sequences.pairs; have {sorted(fs.sequences)})"
            )
    return reasons


def _rule_metrics(name: str, fs: Any, cfg: ExperimentConfig) -> dict[str, Any]:
    """The test metrics of a no-learning rule, in the fields a trained row reports (``roc_auc_logged`` is
    its ``roc_auc`` when the rule reads the logged position; it never trains: no examples/s)."""
    r = rule_scores(name, fs, cfg.task)
    m = _calibrated_metrics(
        r["y"],
        r["p"],
        r["p"],
        cfg,
        Calibrator(),
        groups=r["groups"],
        p_logged=r["p"] if r["positional"] else None,
    )
    m["train_examples_per_s"] = None
    return m


def _peer_metrics(name: str, fs: Any, cfg: ExperimentConfig) -> tuple[dict[str, Any], float]:
    """Train the peer ``name`` as ``cfg`` says (same rows, epochs, batch, lr, seed, early stopping; Platt
    fit on validation) and return its test metrics in the fields a trained row reports (no position
    tower: no ``roc_auc_logged``) and its training seconds."""
    from adsformer.experiments.peers import fit_peer

    model, result, adapter = fit_peer(name, cfg, fs)
    rows = fs.rows("test", cfg.task)
    if rows.size == 0:
        raise ValueError(f"no test rows for task {cfg.task!r}")
    z = peer_logits(model, adapter, rows, cfg.train.eval_batch_size)
    cal = result.calibrator
    groups = None if fs.request is None else np.asarray(fs.request)[rows].astype(np.int64)
    m = _calibrated_metrics(fs.labels(cfg.task)[rows], cal.uncalibrated(z), cal(z), cfg, cal, groups=groups)
    m["train_examples_per_s"] = result.examples_per_s
    return m, result.train_seconds


def merge_ablations(parts: list[dict[str, Any]]) -> AblationResult:
    """Combine ablation results (``ablation.json`` objects) run over disjoint seeds (e.g. one process per
    seed) into one, as if a single run had trained them all. Rows present in only some parts are dropped
    with a reason in ``skipped``, since their lift would average over different seeds than the others'."""
    results = _merge_parts(parts)
    first = results[0]
    seed_values = [seed for p in results for seed in p.seed_values]
    if len(set(seed_values)) != len(seed_values):
        raise ConfigError(f"cannot merge ablations sharing seeds: {sorted(seed_values)}")
    names = [r.name for r in first.rows]
    for p in results[1:]:
        names += [r.name for r in p.rows if r.name not in names]
    common = [n for n in names if all(n in {r.name for r in p.rows} for p in results)]
    order = sorted(range(len(seed_values)), key=seed_values.__getitem__)
    runs: dict[str, list[RunMetrics]] = {}
    users: list[str] = []
    for name in common:
        per_part = [next(r for r in p.rows if r.name == name) for p in results]
        flat = [run for rec in per_part for run in rec.runs]
        runs[name] = [flat[i] for i in order]
        users.append(per_part[0].model)
    skipped = [s for p in results for s in p.skipped]
    skipped += [SkippedRow(n, "not run for every merged seed") for n in names if n not in common]
    return dataclasses.replace(
        first,
        skipped=tuple({s.name: s for s in skipped}.values()),
        seed_values=tuple(sorted(seed_values)),
        rows=summarize(runs, users),
    )


def _merge_parts(parts: list[dict[str, Any]]) -> list[AblationResult]:
    """The parts as results, once each has per-seed runs and all share task, dataset, suite and settings
    (all but the seed and the thread count)."""
    if not parts:
        raise ConfigError("nothing to merge")
    for i, p in enumerate(parts):
        missing = sorted({"task", "dataset", "suite", "rows", "skipped", "config", "seed_values"} - set(p))
        if missing or any("runs" not in r for r in p["rows"]):
            raise ConfigError(
                f"cannot merge part {i + 1}: its ablation.json lacks {missing or ['per-seed runs']} "
                "(written by an older adsformer? re-run ablate)"
            )
    results = [AblationResult.from_dict(p) for p in parts]
    for key in ("task", "dataset", "suite"):
        values = {getattr(p, key) for p in results}
        if len(values) > 1:
            raise ConfigError(f"cannot merge ablations with different {key}: {sorted(map(str, values))}")
    base_cfg = _comparable(_auto_as_auto(results[0]))
    for i, part in enumerate(results[1:], start=2):
        other = _comparable(_auto_as_auto(part))
        diff = sorted(k for k in base_cfg.keys() | other.keys() if base_cfg.get(k) != other.get(k))
        if diff:
            raise ConfigError(
                f"cannot merge: part {i} ran with other settings than part 1 ({', '.join(diff)})"
            )
    return results


def _auto_as_auto(part: AblationResult) -> dict[str, Any]:
    """A part's config with the tables it learned for ``tables=auto`` written back as ``auto``: runs over
    other seeds learn the same table (same data, split and settings) into their own output folders."""
    learned = set(part.auto_tables or ())
    config = dict(part.config)
    try:
        tables = config["model"]["adpm"]["pretrained"]["tables"]
    except (KeyError, TypeError):
        return config
    if not learned or not isinstance(tables, list):
        return config
    config = copy.deepcopy(config)
    config["model"]["adpm"]["pretrained"]["tables"] = [AUTO if t in learned else t for t in tables]
    return config


def _comparable(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The config flattened to dotted keys, without what merged runs may differ in: ``train.seed`` (their
    point) and ``train.threads`` (speed only)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(_comparable(value, f"{prefix}{key}."))
        elif f"{prefix}{key}" not in ("train.seed", "train.threads"):
            flat[f"{prefix}{key}"] = value
    return flat


def write_ablation(result: AblationResult, out: Path, *, keep: tuple[str, ...] = ()) -> None:
    """Write ``ablation.json`` and ``ablation.md`` into ``out`` atomically; the entries named in ``keep``
    (e.g. ``tables``, learned for ``tables=auto``) that ``out`` already holds are carried into the new
    ``out`` (hard links where the file system allows: no copy of big tables)."""
    with atomic_dir(out) as tmp:
        for name in keep:
            if (out / name).is_dir():
                shutil.copytree(out / name, tmp / name, copy_function=_link_or_copy)
        (tmp / "ablation.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
        (tmp / "ablation.md").write_text(ablation_markdown(result))


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
