"""``adsformer tune``: hyperparameter search with Optuna over the search space a config declares.

The space is the config's ``tune.space`` (dotted config keys to ranges or choices; :class:`ParamSpec`), or
a default one (:meth:`TuneConfig.space_for`). Each trial is the config with the trial's values, trained by
:func:`adsformer.experiments.runs.fit` on the training split and scored on the validation split only: its
value is the restored (best) epoch's validation ``tune.metric`` (ROC-AUC, maximized, or log loss,
minimized; the trial monitors that metric). After each epoch the trial reports its validation metric to
Optuna, whose median pruner stops a trial trailing the median of earlier trials at the same epoch. The test
split is read only with ``final``: then the best trial's run (the best config, trained) and the first one
(the config itself) are evaluated on test.

The study lives in the output directory (``study.db``, SQLite), so the same command run again continues it:
``tune.trials`` is how many finished (complete or pruned) trials the study holds when the command ends, and
a trial cut short by a killed run is run again. One process per output directory. Besides the study, the
directory holds (each written atomically, after every trial):

* ``trials/trial-NNNN/``: the run directory of each complete trial (``evaluate``, ``predict`` take it);
* ``trials.csv`` and ``tune.json``: every trial's parameters, value, state, duration and epochs;
* ``best_config.yaml``: the best trial's config, as what it changes from the defaults (``--config`` takes it);
* ``trials.png``: the value of each trial and the best so far; ``tune.md``: the summary.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import optuna
import yaml
from optuna.trial import FrozenTrial, Trial, TrialState

from adsformer.config import ConfigError, apply_overrides, to_dict
from adsformer.console import log, recording, stage
from adsformer.data.features import FeatureSet, build_features
from adsformer.data.schema import Dataset
from adsformer.data.stream import is_store
from adsformer.data.validate import read_dataset
from adsformer.experiments import tracking
from adsformer.experiments.runs import OnEpoch, check_task, evaluate_run, fit, write_run
from adsformer.io import atomic_file, claim, growing_dir, write_json
from adsformer.run.config import ExperimentConfig, Monitor, ParamSpec
from adsformer.training.records import EpochRecord

STUDY_FILE, STUDY_NAME, TRIALS_DIR = "study.db", "adsformer-tune", "trials"
#: Files SQLite may leave beside the study (its rollback journal): adsformer's too
STUDY_JOURNAL = f"{STUDY_FILE}-journal"
#: Keys a search space may not hold: what the search itself decides or reads
FIXED_KEYS = ("task", "train.monitor")
#: Test metrics ``final`` keeps in tune.json and tune.md
FINAL_METRICS = ("roc_auc", "pr_auc", "log_loss", "ece", "gauc", "ndcg_at_10")
#: A finished trial, counted towards ``tune.trials``
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


# -- the search space ------------------------------------------------------------------------------------
def canonical_space(cfg: ExperimentConfig) -> dict[str, ParamSpec]:
    """The search space of ``cfg`` by dotted path (short keys expanded), each dimension checked: a key the
    config has and may be searched, a range only over a number, and every bound or choice a valid value."""
    space: dict[str, ParamSpec] = {}
    for key, spec in cfg.tune.space_for(cfg.model.user).items():
        path = ExperimentConfig.SHORT_KEYS.get(key, key)
        if path in FIXED_KEYS or path.startswith("tune."):
            raise ConfigError(f"tune.space.{key}: not searchable (the search sets it); remove it")
        base = base_value(cfg, path, key)
        if spec.is_range and not (base is None or _is_number(base)):
            raise ConfigError(
                f"tune.space.{key}: a range needs a numeric key, {path} is {base!r}; give choices"
            )
        if spec.is_range and isinstance(base, int) and not _integral(spec):
            raise ConfigError(f"tune.space.{key}: {path} is an integer; give integer low, high and step")
        for value in _extremes(spec, integer=isinstance(base, int)):
            try:
                apply_overrides(cfg, {path: value})
            except ConfigError as exc:
                raise ConfigError(
                    f"tune.space.{key}: the value {value!r} is not valid ({exc.one_line()})"
                ) from None
        space[path] = spec
    return space


def base_value(cfg: ExperimentConfig, path: str, key: str | None = None) -> Any:
    """The value of dotted ``path`` in ``cfg``; a :class:`ConfigError` naming ``key`` when there is none."""
    node: Any = to_dict(cfg)
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"tune.space.{key or path}: unknown config key {path!r}")
        node = node[part]
    return node


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _integral(spec: ParamSpec) -> bool:
    return all(v is None or float(v).is_integer() for v in (spec.low, spec.high, spec.step))


def _extremes(spec: ParamSpec, *, integer: bool) -> list[Any]:
    """The values a dimension can reach at its ends: its bounds, or each choice."""
    if spec.choices is not None:
        return list(spec.choices)
    bounds = [spec.low, spec.high]
    return [int(v) for v in bounds if v is not None] if integer else bounds


def encode(value: Any) -> Any:
    """A choice as Optuna stores it: a list as its JSON text (Optuna's choices are scalars)."""
    return json.dumps(list(value)) if isinstance(value, list | tuple) else value


def decode(spec: ParamSpec, value: Any) -> Any:
    """A stored value of dimension ``spec`` as the config takes it (:func:`encode` undone)."""
    lists = spec.choices is not None and any(isinstance(c, list | tuple) for c in spec.choices)
    return json.loads(value) if lists and isinstance(value, str) else value


def params_of(trial: FrozenTrial, space: Mapping[str, ParamSpec]) -> dict[str, Any]:
    """A trial's value of each dimension it drew, as the config takes it."""
    return {k: decode(space[k], v) if k in space else v for k, v in trial.params.items()}


def suggest(trial: Trial, space: Mapping[str, ParamSpec], cfg: ExperimentConfig) -> dict[str, Any]:
    """The trial's value of every dimension (Optuna's sampler picks them; an enqueued trial has them)."""
    params: dict[str, Any] = {}
    for path, spec in space.items():
        if spec.choices is not None:
            picked = trial.suggest_categorical(path, [encode(c) for c in spec.choices])
            params[path] = decode(spec, picked)
        elif isinstance(base_value(cfg, path), int):
            low, high = int(spec.low or 0), int(spec.high or 0)
            params[path] = trial.suggest_int(path, low, high, step=int(spec.step or 1), log=spec.log)
        else:
            low_f, high_f = float(spec.low or 0.0), float(spec.high or 0.0)
            params[path] = trial.suggest_float(path, low_f, high_f, step=spec.step, log=spec.log)
    return params


def trial_config(cfg: ExperimentConfig, params: Mapping[str, Any]) -> ExperimentConfig:
    """``cfg`` with a trial's values, monitoring the tuned metric (its best epoch is the trial's value)."""
    out = apply_overrides(cfg, dict(params))
    return dataclasses.replace(out, train=dataclasses.replace(out.train, monitor=cfg.tune.metric))


def base_params(cfg: ExperimentConfig, space: Mapping[str, ParamSpec]) -> dict[str, Any]:
    """The config's own value of each dimension (the first trial's, as Optuna stores it: :func:`encode`),
    where the space holds it; a key unset by default (``train.weight_decay``) counts as its effective
    value."""
    params: dict[str, Any] = {}
    for path, spec in space.items():
        value = base_value(cfg, path)
        if path == "train.weight_decay" and value is None:
            value = cfg.train.weight_decay_for(cfg.task)
        if spec.choices is not None:
            same = [
                c for c in spec.choices if _same(c, value) and isinstance(c, bool) == isinstance(value, bool)
            ]
            if same:
                params[path] = encode(same[0])
        elif _is_number(value) and float(spec.low or 0) <= value <= float(spec.high or 0):
            params[path] = value
    return params


def _same(choice: Any, value: Any) -> bool:
    """A choice equals a config value (a list choice equals the list it holds)."""
    if isinstance(choice, list | tuple) or isinstance(value, list | tuple):
        return (
            isinstance(choice, list | tuple)
            and isinstance(value, list | tuple)
            and list(choice) == list(value)
        )
    return bool(choice == value)


# -- the study ---------------------------------------------------------------------------------------------
def setup_of(cfg: ExperimentConfig, data_dir: Path) -> dict[str, Any]:
    """What makes a study the same study: the data and the config (but the number of trials)."""
    body = to_dict(cfg)
    body["tune"].pop("trials", None)
    return {"data_dir": str(Path(data_dir).resolve()), "config": body}


def open_study(
    out: Path, cfg: ExperimentConfig, data_dir: Path, pruner: optuna.pruners.BasePruner | None = None
) -> optuna.Study:
    """The study in ``out`` (created, or loaded to continue it); refuses a study of other data or another
    config. Trials a killed run left running are marked failed and queued to run again."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    claim(out, STUDY_FILE)
    claim(out, STUDY_JOURNAL)
    t = cfg.tune
    if pruner is None:
        pruner = (
            optuna.pruners.MedianPruner(n_startup_trials=t.startup_trials, n_warmup_steps=t.warmup_epochs)
            if t.prune
            else optuna.pruners.NopPruner()
        )
    study = optuna.create_study(
        storage=f"sqlite:///{(out / STUDY_FILE).resolve()}",
        study_name=STUDY_NAME,
        load_if_exists=True,
        direction=t.direction,
        pruner=pruner,
    )
    # seeded by the trials so far too: a continued study draws new points, not the first run's again
    study.sampler = optuna.samplers.TPESampler(
        seed=t.seed + len(study.trials), n_startup_trials=t.startup_trials
    )
    setup = setup_of(cfg, data_dir)
    fingerprint = hashlib.sha256(json.dumps(setup, sort_keys=True).encode()).hexdigest()
    known = study.user_attrs.get("fingerprint")
    if known is None:
        study.set_user_attr("fingerprint", fingerprint)
        study.set_user_attr("setup", setup)
    elif known != fingerprint:
        raise ConfigError(
            f"{out}: holds a study of other settings ({_differences(study.user_attrs.get('setup', {}), setup)}); "
            f"rerun with the same --data, --config and --set to continue it, or choose another --out"
        )
    _requeue_stale(study)
    return study


def _differences(before: Mapping[str, Any], now: Mapping[str, Any]) -> str:
    """The dotted keys whose values differ between two setups (at most five named)."""

    def leaves(node: Any, at: str = "") -> dict[str, Any]:
        if isinstance(node, dict) and node:
            return {k: v for key, sub in node.items() for k, v in leaves(sub, f"{at}{key}.").items()}
        return {at.rstrip("."): node}

    a, b = leaves(dict(before)), leaves(dict(now))
    keys = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    return ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "") or "unknown"


def _requeue_stale(study: optuna.Study) -> None:
    """Trials left RUNNING (their process was killed) become FAIL, their parameters queued again."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        study.enqueue_trial(dict(trial.params), user_attrs=_queued_attrs(trial))
        log(f"trial {trial.number} was cut short by an earlier run: marked failed, its parameters run again")


def _queued_attrs(trial: FrozenTrial) -> dict[str, Any]:
    return {"base": True} if trial.user_attrs.get("base") else {}


def finished(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=FINISHED)


# -- one trial ---------------------------------------------------------------------------------------------
class FeatureCache:
    """The features of the last data config a trial asked for (built again only when a trial changes
    ``data.*``)."""

    def __init__(self, ds: Dataset) -> None:
        self.ds = ds
        self.key: str | None = None
        self.fs: FeatureSet | None = None

    def get(self, cfg: ExperimentConfig) -> FeatureSet:
        key = json.dumps(to_dict(cfg.data), sort_keys=True)
        if self.fs is None or key != self.key:
            self.fs = None  # free the old ones first
            with stage("build features (split, vocabularies, sequences)"):
                self.fs = build_features(self.ds, cfg.data)
            self.key = key
        return self.fs


class EpochReport:
    """The ``on_epoch`` hook of a trial: reports the epoch's validation metric to Optuna and prunes the
    trial (raises :class:`optuna.TrialPruned`) when the pruner says so, never after the last epoch."""

    def __init__(self, trial: Trial, metric: Monitor, epochs: int) -> None:
        self.trial, self.metric, self.epochs = trial, metric, epochs

    def __call__(self, record: EpochRecord) -> None:
        epoch, value = record.epoch, float(record.val(self.metric))
        if not math.isfinite(value):
            return
        self.trial.report(value, epoch)
        if epoch + 1 < self.epochs and self.trial.should_prune():
            self.trial.set_user_attr("pruned_at_epoch", epoch)
            self.trial.set_user_attr("epochs_run", epoch + 1)
            raise optuna.TrialPruned(f"val {self.metric} {value:.4f} after epoch {epoch + 1}")


def hooks(*fns: OnEpoch | None) -> OnEpoch:
    """One ``on_epoch`` hook calling each of ``fns`` in order."""

    def call(record: EpochRecord) -> None:
        for fn in fns:
            if fn is not None:
                fn(record)

    return call


@dataclasses.dataclass(frozen=True)
class Objective:
    """Optuna's objective: train one trial's config, keep its run, return its validation metric."""

    cfg: ExperimentConfig
    space: Mapping[str, ParamSpec]
    features: FeatureCache
    out: Path
    data_dir: Path
    total: int
    log_to: tracking.Backend | None = None

    def __call__(self, trial: Trial) -> float:
        params = suggest(trial, self.space, self.cfg)
        cfg = trial_config(self.cfg, params)
        shown = ", ".join(f"{short_name(k, self.space)}={_show(v)}" for k, v in params.items())
        base = " (the config itself)" if trial.user_attrs.get("base") else ""
        log(f"trial {trial.number} ({len(finished(trial.study)) + 1} of {self.total}){base}: {shown}")
        fs = self.features.get(cfg)
        tracker = (
            tracking.start(self.log_to, f"{self.out.name}-trial-{trial.number:04d}") if self.log_to else None
        )
        try:
            if tracker is not None:
                tracker.params(tracking.flat_params(cfg))
            return self._train(trial, cfg, fs, tracker)
        finally:
            if tracker is not None:
                tracker.close()

    def _train(
        self, trial: Trial, cfg: ExperimentConfig, fs: FeatureSet, tracker: tracking.Tracker | None
    ) -> float:
        start = time.perf_counter()
        report = EpochReport(trial, cfg.tune.metric, cfg.train.epochs)
        with recording() as lines:
            try:
                model, result = fit(cfg, fs, on_epoch=hooks(tracker.epoch if tracker else None, report))
            except optuna.TrialPruned:
                trial.set_user_attr("seconds", time.perf_counter() - start)
                log(f"trial {trial.number} pruned after epoch {trial.user_attrs['epochs_run']}")
                raise
            run = self.out / TRIALS_DIR / f"trial-{trial.number:04d}"
            write_run(
                run,
                cfg,
                fs,
                model,
                result,
                dataset=self.features.ds.meta.name,
                log_lines=lines,
                data_dir=str(self.data_dir.resolve()),
            )
            if tracker is not None:
                tracking.save_record(run, tracker)
        value = float(result.best.val(cfg.tune.metric)) if result.best is not None else float("nan")
        for key, attr in (
            ("run", f"{TRIALS_DIR}/{run.name}"),
            ("epochs_run", result.epochs_run),
            ("best_epoch", result.best_epoch),
            ("seconds", time.perf_counter() - start),
        ):
            trial.set_user_attr(key, attr)
        return value


def short_name(path: str, space: Mapping[str, Any]) -> str:
    """The shortest dotted suffix of ``path`` no other key of ``space`` ends with (``train.lr`` -> ``lr``)."""
    parts = path.split(".")
    for i in range(len(parts) - 1, -1, -1):
        name = ".".join(parts[i:])
        if not any(other != path and (other == name or other.endswith(f".{name}")) for other in space):
            return name
    return path


def _show(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# -- the command -------------------------------------------------------------------------------------------
def run_tune(
    data_dir: Path,
    cfg: ExperimentConfig,
    out: Path,
    *,
    final: bool = False,
    log_to: tracking.Backend | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
) -> dict[str, Any]:
    """Run (or continue) the study of ``cfg.tune`` on ``data_dir`` in ``out``; write its files; with
    ``final``, evaluate the best trial's run (and the first trial's, the config itself) on test. Returns
    what ``tune.json`` holds. ``pruner`` replaces the median pruner (tests)."""
    data_dir = Path(data_dir)
    if is_store(data_dir):
        raise ConfigError(
            f"{data_dir}: a feature store; adsformer tune reads a canonical dataset directory (--data)"
        )
    space = canonical_space(cfg)
    growing_dir(out)
    study = open_study(out, cfg, data_dir, pruner)
    todo = cfg.tune.trials - len(finished(study))
    with stage("read the dataset"):
        ds = read_dataset(data_dir)
        check_task(ds, cfg.task)
    if not study.trials and cfg.tune.base_trial:
        study.enqueue_trial(base_params(cfg, space), user_attrs={"base": True})
    log(
        f"tune {cfg.task} {cfg.model.user} on {data_dir}: {len(finished(study))} trials done, {max(todo, 0)} to "
        f"run (tune.trials {cfg.tune.trials}), val {cfg.tune.metric} ({cfg.tune.direction}d), "
        f"{len(space)} dimensions: {', '.join(space)}"
    )
    objective = Objective(cfg, space, FeatureCache(ds), out, data_dir, cfg.tune.trials, log_to)

    def after(study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.state == TrialState.COMPLETE:
            best = study.best_trial
            log(
                f"trial {trial.number}: val {cfg.tune.metric} {trial.value:.4f} (best so far: trial "
                f"{best.number}, {best.value:.4f})"
            )
        write_outputs(out, study, cfg, space, data_dir)

    if todo > 0:
        study.optimize(objective, n_trials=todo, callbacks=[after])
    else:
        log(f"the study holds {len(finished(study))} finished trials already: raise --trials to add more")
    summary = write_outputs(out, study, cfg, space, data_dir)
    if final:
        summary["final"] = evaluate_final(out, study, log_to)
        summary = write_outputs(out, study, cfg, space, data_dir, final=summary["final"])
    return summary


def evaluate_final(out: Path, study: optuna.Study, log_to: tracking.Backend | None) -> dict[str, Any]:
    """Test metrics of the best trial's run and of the first trial's (the config itself), when complete."""
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not completed:
        raise ConfigError(f"{out}: no complete trial to evaluate on test; run more trials")
    picks = {"best": study.best_trial}
    base = next((t for t in completed if t.user_attrs.get("base")), None)
    if base is not None:
        picks["base"] = base
    result: dict[str, Any] = {}
    scored: dict[int, dict[str, Any]] = {}
    for role, trial in picks.items():
        if trial.number not in scored:
            run = out / str(trial.user_attrs["run"])
            log(f"evaluate the {role} trial ({trial.number}) on test: {run}")
            scored[trial.number] = _test_metrics(run, log_to)
        result[role] = {"trial": trial.number, "run": str(trial.user_attrs["run"]), **scored[trial.number]}
    return result


def _test_metrics(run: Path, log_to: tracking.Backend | None) -> dict[str, Any]:
    """Evaluate a trial's run on its data's test split (metrics.json in the run); the metrics tune keeps."""
    metrics = tracking.evaluate_tracked(run, None, log_to) if log_to else evaluate_run(run)
    return {m: metrics.get(m) for m in FINAL_METRICS}


# -- the files ---------------------------------------------------------------------------------------------
def trial_rows(study: optuna.Study, space: Mapping[str, ParamSpec]) -> list[dict[str, Any]]:
    """One record per trial (number order): state, value, duration, epochs, run and parameters."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        attrs = t.user_attrs
        seconds = attrs.get("seconds")
        if seconds is None and t.datetime_start and t.datetime_complete:
            seconds = (t.datetime_complete - t.datetime_start).total_seconds()
        last = t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None
        rows.append(
            {
                "number": t.number,
                "state": t.state.name.lower(),
                "value": t.value
                if t.state == TrialState.COMPLETE
                else None,  # Optuna gives pruned ones their last
                "last_epoch_value": last,
                "duration_s": seconds,
                "epochs_run": attrs.get("epochs_run"),
                "best_epoch": attrs.get("best_epoch"),
                "base": bool(attrs.get("base", False)),
                "run": attrs.get("run"),
                "params": {k: params_of(t, space).get(k) for k in space},
                "intermediate": {int(k): v for k, v in sorted(t.intermediate_values.items())},
            }
        )
    return rows


def overlay(cfg: ExperimentConfig) -> dict[str, Any]:
    """What ``cfg`` changes from the defaults (its ``tune`` section left out), nested as a config file."""

    def diff(node: Any, default: Any) -> Any:
        if isinstance(node, dict) and isinstance(default, dict):
            out = {k: diff(v, default.get(k)) for k, v in node.items() if v != default.get(k)}
            return {k: v for k, v in out.items() if v != {}}
        return node

    changed = diff(to_dict(cfg), to_dict(ExperimentConfig()))
    changed.pop("tune", None)
    return dict(changed)


def write_outputs(
    out: Path,
    study: optuna.Study,
    cfg: ExperimentConfig,
    space: Mapping[str, ParamSpec],
    data_dir: Path,
    *,
    final: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write trials.csv, tune.json, best_config.yaml, trials.png and tune.md (each atomically); returns
    what tune.json holds."""
    rows = trial_rows(study, space)
    summary = tune_summary(study, cfg, space, data_dir, rows, final)
    write_json(out / "tune.json", summary)
    _write_csv(out / "trials.csv", rows, space)
    if summary["best"] is not None:
        best_cfg = trial_config(cfg, summary["best"]["params"])
        with atomic_file(out / "best_config.yaml") as tmp:
            tmp.write_text(best_config_text(best_cfg, summary, data_dir))
    plot_trials(out / "trials.png", rows, cfg.tune.metric, cfg.tune.direction)
    with atomic_file(out / "tune.md") as tmp:
        tmp.write_text(tune_markdown(summary, space))
    return summary


def tune_summary(
    study: optuna.Study,
    cfg: ExperimentConfig,
    space: Mapping[str, ParamSpec],
    data_dir: Path,
    rows: Sequence[Mapping[str, Any]],
    final: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """What tune.json holds: the setup, every trial, the best one (and its lift over the config itself)."""
    complete = [r for r in rows if r["state"] == "complete"]
    best = None
    if complete:
        b = study.best_trial
        base = next((r for r in complete if r["base"]), None)
        best = {
            "number": b.number,
            "value": b.value,
            "params": params_of(b, space),
            "run": b.user_attrs.get("run"),
            "base_number": None if base is None else base["number"],
            "base_value": None if base is None else base["value"],
        }
    return {
        "study": STUDY_FILE,
        "data_dir": str(Path(data_dir).resolve()),
        "task": cfg.task,
        "model": cfg.model.user,
        "metric": f"val_{cfg.tune.metric}",
        "direction": cfg.tune.direction,
        "trials_wanted": cfg.tune.trials,
        "states": {s: sum(r["state"] == s for r in rows) for s in ("complete", "pruned", "fail", "running")},
        "space": {
            k: {f: v for f, v in dataclasses.asdict(s).items() if v is not None and v is not False}
            for k, s in space.items()
        },
        "config": to_dict(cfg),
        "trials": list(rows),
        "best": best,
        "final": dict(final) if final else None,
    }


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]], space: Mapping[str, ParamSpec]) -> None:
    fields = [
        "number",
        "state",
        "value",
        "last_epoch_value",
        "duration_s",
        "epochs_run",
        "best_epoch",
        "base",
        "run",
    ]
    with atomic_file(path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*fields, *space])
        for r in rows:
            writer.writerow(
                [*("" if r[k] is None else r[k] for k in fields), *(r["params"][k] for k in space)]
            )


def best_config_text(best_cfg: ExperimentConfig, summary: Mapping[str, Any], data_dir: Path) -> str:
    """best_config.yaml: a comment saying which trial it is, then what the config changes from the defaults."""
    best = summary["best"]
    base = (
        ""
        if best["base_value"] is None
        else f" (trial {best['base_number']}, the config itself: {best['base_value']:.4f})"
    )
    head = (
        f"# adsformer tune: the best trial ({best['number']}) of the study beside this file, "
        f"{summary['metric']} {best['value']:.4f}{base}.\n"
        f"# Train it: adsformer train --data {data_dir} --out runs/best --config best_config.yaml\n"
    )
    return head + yaml.safe_dump(overlay(best_cfg), sort_keys=False)


def plot_trials(path: Path, rows: Sequence[Mapping[str, Any]], metric: str, direction: str) -> None:
    """trials.png: each complete trial's value, each pruned one's last reported value, and the best so far."""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    done = [r for r in rows if r["state"] == "complete"]
    pruned = [r for r in rows if r["state"] == "pruned" and r["last_epoch_value"] is not None]
    ax.plot([r["number"] for r in done], [r["value"] for r in done], "o", color="C0", label="complete trial")
    if pruned:
        ax.plot(
            [r["number"] for r in pruned],
            [r["last_epoch_value"] for r in pruned],
            "x",
            color="0.55",
            label="pruned (last epoch reported)",
        )
    best: list[float] = []
    pick = max if direction == "maximize" else min
    for r in done:
        best.append(r["value"] if not best else pick(best[-1], r["value"]))
    if done:
        ax.step([r["number"] for r in done], best, where="post", color="C3", label="best so far")
    for r in done:
        if r["base"]:
            ax.axhline(r["value"], color="0.4", linestyle=":", linewidth=1, label="the config itself")
    ax.set(
        xlabel="trial", ylabel=f"validation {metric}", title=f"adsformer tune: validation {metric} per trial"
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def tune_markdown(summary: Mapping[str, Any], space: Mapping[str, ParamSpec]) -> str:
    """tune.md: the setup, the best trial against the config itself, the trials, the test metrics."""
    metric, best = summary["metric"], summary["best"]
    lines = [
        "# adsformer tune",
        "",
        f"{summary['task']} {summary['model']} on `{summary['data_dir']}`: {summary['direction']} {metric} "
        f"(the validation split; the test split is read only by `--final`). Trials: "
        + ", ".join(f"{n} {s}" for s, n in summary["states"].items() if n)
        + f" (tune.trials {summary['trials_wanted']}).",
        "",
        "| key | searched over |",
        "| --- | --- |",
        *(f"| `{k}` | {_describe(s)} |" for k, s in space.items()),
        "",
    ]
    if best is not None:
        lines += [f"**Best: trial {best['number']}**, {metric} {best['value']:.4f}"]
        if best["base_value"] is not None:
            lift = best["value"] - best["base_value"]
            lines[-1] += (
                f"; the config itself (trial {best['base_number']}): {best['base_value']:.4f} ({lift:+.4f})"
            )
        lines += ["", *(f"- `{k}` = {_show(v)}" for k, v in best["params"].items()), ""]
        lines += ["`best_config.yaml` holds its config: `adsformer train --config best_config.yaml ...`.", ""]
    lines += trials_markdown(summary["trials"], space)
    final = summary.get("final")
    if final:
        lines += ["", "## Test split (one seed each)", "", "| trial | " + " | ".join(FINAL_METRICS) + " |"]
        lines += ["| --- |" + " --- |" * len(FINAL_METRICS)]
        for role, rec in final.items():
            cells = " | ".join("n/a" if rec.get(m) is None else f"{rec[m]:.4f}" for m in FINAL_METRICS)
            lines.append(f"| {role} ({rec['trial']}) | {cells} |")
    return "\n".join(lines) + "\n"


def trials_markdown(rows: Sequence[Mapping[str, Any]], space: Mapping[str, ParamSpec]) -> list[str]:
    """The trials as a markdown table (number order)."""
    names = [short_name(k, space) for k in space]
    out = [
        "| trial | state | value | epochs | seconds | " + " | ".join(names) + " |",
        "| ---: | --- | ---: | ---: | ---: |" + " ---: |" * len(names),
    ]
    for r in rows:
        value = "" if r["value"] is None else f"{r['value']:.4f}"
        seconds = "" if r["duration_s"] is None else f"{r['duration_s']:.0f}"
        params = " | ".join(_show(r["params"][k]) for k in space)
        label = f"{r['number']}{' (config)' if r['base'] else ''}"
        out.append(f"| {label} | {r['state']} | {value} | {r['epochs_run'] or ''} | {seconds} | {params} |")
    return out


def _describe(spec: ParamSpec) -> str:
    if spec.choices is not None:
        return "one of " + ", ".join(_show(c) for c in spec.choices)
    scale = ", log scale" if spec.log else (f", step {_show(spec.step)}" if spec.step else "")
    return f"[{_show(spec.low)}, {_show(spec.high)}]{scale}"
