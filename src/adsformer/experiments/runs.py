"""``adsformer train`` and ``adsformer evaluate``: a run from a dataset directory to an artifact and metrics.

Evaluation is honest by construction: the test split is the last period in time, at the natural click
rate (only the training split is down-sampled, and CTR predictions are mapped back to the natural rate);
PCCVR is evaluated on clicked test impressions only.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import polars as pl

from adsformer.adpm.config import ENCODER_MIN_POSITIVES, EncoderConfig
from adsformer.config import ConfigError, to_dict
from adsformer.console import RUN_LOG, log, log_text, recording, save_log, stage
from adsformer.data.batching import iterate_batches
from adsformer.data.features import FeatureSet, build_features
from adsformer.data.schema import Dataset
from adsformer.data.stream import FeatureStore, StreamSource, is_store
from adsformer.data.validate import read_dataset
from adsformer.experiments.train_summary import TrainSummary
from adsformer.io import atomic_dir, atomic_file, write_json
from adsformer.run.artifact import RunArtifact, load_artifact, save_artifact
from adsformer.run.calibration import Calibrator
from adsformer.run.config import ExperimentConfig
from adsformer.run.model import seeded_model, spec_from_features
from adsformer.run.scoring import forward, predict_logits
from adsformer.training import distributed
from adsformer.training.loop import TrainResult, train
from adsformer.training.metrics import (
    all_metrics,
    bootstrap_intervals,
    gauc,
    mrr,
    ndcg_at_k,
    pr_auc,
    roc_auc,
    rowwise,
)
from adsformer.training.records import EpochRecord, StepRecord

#: Rows above which the bootstrap draws fewer requests per resample (m-out-of-n, rescaled): bounds its cost
BOOTSTRAP_MAX_ROWS = 100_000


def check_task(ds: Dataset, task: str) -> None:
    if ds.meta.protocol.get("catalog_only"):
        raise ConfigError(
            f"dataset {ds.meta.name!r} is a catalog (listings only, no impressions): it feeds "
            f"`adsformer represent text|visual|air`, not training or evaluation"
        )
    if task == "pccvr" and (not ds.meta.has_conversions or "purchased" not in ds.impressions.columns):
        raise ConfigError(
            f"dataset {ds.meta.name!r} has no conversions (purchased): PCCVR cannot be trained or "
            f"evaluated on it"
        )


def resolved(cfg: ExperimentConfig, fs: FeatureSet) -> ExperimentConfig:
    """The config with the sequence pairs the data actually produced, so evaluation rebuilds the same,
    and what ``auto`` means for this data decided (:func:`resolve_for_data`)."""
    seq = dataclasses.replace(cfg.data.sequences, pairs=fs.info.pairs)
    return resolve_for_data(dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, sequences=seq)), fs)


def train_positives(fs: FeatureSet, task: str) -> int:
    """Positive labels in the training split (clicks for CTR, purchases of clicked impressions for PCCVR)."""
    return int(fs.labels(task)[fs.rows("train", task)].sum())


def resolve_for_data(
    cfg: ExperimentConfig, fs: FeatureSet, *, positives: int | None = None, say: bool = False
) -> ExperimentConfig:
    """The model's ``auto`` settings made concrete for this data (said on the console with ``say``): the
    cross layers' rank (by task), the encoder's, BST's and last-k's ``auto`` pair (``listing:view`` when
    the data has it, else the listing sequence with the most events) and ``encoder.enabled: auto`` (on from
    :data:`~adsformer.adpm.config.ENCODER_MIN_POSITIVES` positives in the training split; ``positives``
    overrides the count read from ``fs``, for a feature store whose ``fs`` holds no rows)."""
    cfg = dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, ranker=cfg.model.ranker.for_task(cfg.task))
    )
    encoder = cfg.model.adpm.encoder
    if encoder.enabled == "auto":
        n = train_positives(fs, cfg.task) if positives is None else positives
        encoder = encoder.for_positives(n)
        if say and cfg.model.user == "adsformer" and not encoder.enabled:
            log(
                f"note: the training split has {n:,} positive labels, fewer than "
                f"{ENCODER_MIN_POSITIVES:,}: the sequence encoder is left out (too few to learn it reliably; "
                f"--set model.adpm.encoder.enabled=true keeps it)"
            )
    cfg = _with_encoder(cfg, encoder)
    m = cfg.model
    if "auto" not in (m.adpm.encoder.pair, m.bst.pair, m.lastk.pair):
        return cfg
    pair = fs.listing_pair("auto")
    if say and pair != "listing:view":
        log(f"note: the data has no listing:view sequence; the encoder reads {pair} (the most frequent)")

    def fix(p: str) -> str:
        return pair if p == "auto" else p

    cfg = _with_encoder(cfg, dataclasses.replace(m.adpm.encoder, pair=fix(m.adpm.encoder.pair)))
    model = dataclasses.replace(
        cfg.model,
        bst=dataclasses.replace(m.bst, pair=fix(m.bst.pair)),
        lastk=dataclasses.replace(m.lastk, pair=fix(m.lastk.pair)),
    )
    return dataclasses.replace(cfg, model=model)


def _with_encoder(cfg: ExperimentConfig, encoder: EncoderConfig) -> ExperimentConfig:
    adpm = dataclasses.replace(cfg.model.adpm, encoder=encoder)
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, adpm=adpm))


#: Called with each epoch's record (``epochs.csv`` row: train loss, validation log loss and ROC-AUC)
OnEpoch = Callable[[EpochRecord], None]


def fit(
    cfg: ExperimentConfig,
    fs: FeatureSet,
    *,
    show_progress: bool = True,
    on_epoch: OnEpoch | None = None,
    store: FeatureStore | None = None,
) -> tuple[Any, TrainResult]:
    """Build the configured model for ``fs`` and train it; returns (model, result). ``on_epoch`` sees
    every epoch's record as it ends (tracking, pruning). With a ``store``, training streams its row groups
    (``fs`` is then its zero-row schema; the ``auto`` settings are decided on the store's counts)."""
    positives = store.train_positives(cfg.task) if store is not None else None
    cfg = resolve_for_data(cfg, fs, positives=positives, say=show_progress)
    model = seeded_model(cfg, fs)
    if store is None:
        model.set_base_rate(float(fs.labels(cfg.task)[fs.rows("train", cfg.task)].mean()))
        data: FeatureSet | StreamSource = fs
    else:
        model.set_base_rate(store.base_rate(cfg.task))
        data = StreamSource(store, cfg.task, cfg.train.stream_buffer_rows)
    return model, train(
        model,
        data,
        cfg.task,
        cfg.train,
        show_progress=show_progress,
        on_epoch=on_epoch,
        ece_bins=cfg.eval.ece_bins,
    )


def score_test_split(
    model, fs: FeatureSet, cfg: ExperimentConfig, calibrator: Calibrator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Test-split labels, probabilities before Platt scaling (natural rate) and calibrated probabilities."""
    rows = fs.rows("test", cfg.task)
    if rows.size == 0:
        raise ConfigError(
            f"no test rows for task {cfg.task!r} in this data's test split"
            + ("; PCCVR tests on clicked impressions only" if cfg.task == "pccvr" else "")
        )
    z = predict_logits(model, fs, rows, task=cfg.task, batch_size=cfg.train.eval_batch_size)
    return fs.labels(cfg.task)[rows], calibrator.uncalibrated(z), calibrator(z)


def test_metrics(
    model, fs: FeatureSet, cfg: ExperimentConfig, calibrator: Calibrator | None = None
) -> dict[str, Any]:
    """Metrics of the served (calibrated) probabilities on the test split at the natural rate; the same
    before Platt scaling under ``before_calibration``; per-request ranking metrics, bootstrap intervals
    and the logged-position AUCs (see :func:`_calibrated_metrics`). Without a calibrator: the
    down-sampling correction."""
    if calibrator is None:
        calibrator = Calibrator(fs.info.neg_keep_rate if cfg.task == "ctr" else 1.0)
    y, p_raw, p_cal = score_test_split(model, fs, cfg, calibrator)
    groups, p_logged = ranking_context(model, fs, cfg, calibrator)
    return _calibrated_metrics(y, p_raw, p_cal, cfg, calibrator, groups=groups, p_logged=p_logged)


def ranking_context(
    model: Any, fs: FeatureSet, cfg: ExperimentConfig, calibrator: Calibrator
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """What the ranking metrics need beyond the served scores, for the test rows (in order): their request
    codes (R,) int64 (None when ``fs.request`` is unknown, e.g. a feature store) and the calibrated
    probabilities (R,) WITH the model's position tower at the logged positions (None unless every test row
    logs a position > 0 and the model has a position tower)."""
    rows = fs.rows("test", cfg.task)
    groups = None if fs.request is None else np.asarray(fs.request)[rows].astype(np.int64)
    p_logged = None
    if (
        getattr(model, "position_tower", None) is not None
        and rows.size
        and bool((fs.position[rows] > 0).all())
    ):
        p_logged = calibrator(_logged_position_logits(model, fs, rows, cfg))
    return groups, p_logged


def _logged_position_logits(
    model: Any, fs: FeatureSet, rows: np.ndarray, cfg: ExperimentConfig
) -> np.ndarray:
    """Logits (R,) of ``rows`` with the position tower applied to each row's logged position."""
    import torch

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for b in iterate_batches(fs, rows, cfg.train.eval_batch_size, task=cfg.task):
            batch = b if device.type == "cpu" else b.to(device)
            out.append(forward(model, batch, with_position=True).cpu().numpy())
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def _calibrated_metrics(
    y: np.ndarray,
    p_raw: np.ndarray,
    p_cal: np.ndarray,
    cfg: ExperimentConfig,
    calibrator: Calibrator,
    *,
    groups: np.ndarray | None = None,
    p_logged: np.ndarray | None = None,
) -> dict[str, Any]:
    """The metrics of the test rows: ``y``, ``p_raw`` (before Platt scaling), ``p_cal`` (served), their
    request codes ``groups`` and the position-aware ``p_logged``, all (R,).

    Beyond the calibration metrics: ``gauc``, ``ndcg_at_10`` and ``mrr`` per request (null without
    ``groups``); ``roc_auc_ci``, ``pr_auc_ci`` and ``gauc_ci``, 95% percentile bootstrap intervals
    ``[lo, hi]`` over resampled requests (rows without ``groups``; ``eval.bootstrap`` resamples, null when
    0); ``roc_auc_logged`` / ``pr_auc_logged`` of ``p_logged`` (null without). A NaN (e.g. no request with
    both labels) is written as null. The served ``roc_auc`` is position-free."""
    before = all_metrics(y, p_raw, cfg.eval.ece_bins)
    grouped = groups is not None
    ranking: dict[str, Any] = {
        "gauc": _finite(gauc(y, p_cal, groups)) if grouped else None,
        "ndcg_at_10": _finite(ndcg_at_k(y, p_cal, groups, 10)) if grouped else None,
        "mrr": _finite(mrr(y, p_cal, groups)) if grouped else None,
    }
    fns = {"roc_auc": rowwise(roc_auc), "pr_auc": rowwise(pr_auc)} | ({"gauc": gauc} if grouped else {})
    intervals = bootstrap_intervals(
        fns, y, p_cal, groups, n_boot=cfg.eval.bootstrap, seed=cfg.train.seed, max_rows=BOOTSTRAP_MAX_ROWS
    )
    for name in ("roc_auc", "pr_auc", "gauc"):
        lo, hi = intervals.get(name, (float("nan"), float("nan")))
        ranking[f"{name}_ci"] = [lo, hi] if np.isfinite(lo) and np.isfinite(hi) else None
    ranking["roc_auc_logged"] = _finite(roc_auc(y, p_logged)) if p_logged is not None else None
    ranking["pr_auc_logged"] = _finite(pr_auc(y, p_logged)) if p_logged is not None else None
    return {
        "n_test": int(y.size),
        **all_metrics(y, p_cal, cfg.eval.ece_bins),
        "calibrated": calibrator.method == "platt",
        # applied | skipped (Platt scaling did not lower the validation ECE) | not_fit | unknown (older run)
        "calibration_decision": calibrator.decision,
        "before_calibration": {k: before[k] for k in ("log_loss", "ece", "nce")},
        **ranking,
    }


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def train_run(
    data_dir: Path,
    cfg: ExperimentConfig,
    out: Path,
    *,
    show_progress: bool = True,
    on_epoch: OnEpoch | None = None,
) -> TrainSummary:
    """Train on ``data_dir`` and write the run directory ``out`` atomically; returns the training summary.

    ``data_dir`` is a canonical dataset, or a feature store (``adsformer features``), which is streamed with
    bounded memory; the run then takes the store's data settings. The progress lines are kept in the run
    directory as ``run.log``; the summary records where the data was (``data_dir``, for ``evaluate``)."""
    with recording() as lines:
        log(f"train a {cfg.task} {cfg.model.user} model on {data_dir} into {out}")
        where = str(Path(data_dir).resolve())
        if is_store(data_dir):
            store = FeatureStore.open(data_dir)
            return _train_streamed(
                store,
                cfg,
                out,
                show_progress=show_progress,
                log_lines=lines,
                on_epoch=on_epoch,
                data_dir=where,
            )
        with stage("read the dataset"):
            ds = read_dataset(data_dir)
            check_task(ds, cfg.task)
        start = time.perf_counter()
        with stage("build features (split, vocabularies, sequences)"):
            fs = build_features(ds, cfg.data)
        features_s = time.perf_counter() - start
        model, result = fit(cfg, fs, show_progress=show_progress, on_epoch=on_epoch)
        return finish_run(
            out,
            cfg,
            fs,
            model,
            result,
            dataset=ds.meta.name,
            features_s=features_s,
            log_lines=lines,
            data_dir=where,
        )


def _train_streamed(
    store: FeatureStore,
    cfg: ExperimentConfig,
    out: Path,
    *,
    show_progress: bool,
    log_lines: list[str],
    on_epoch: OnEpoch | None,
    data_dir: str,
) -> TrainSummary:
    cfg = dataclasses.replace(cfg, data=store.data_config)
    fs = store.schema()  # zero rows: names, widths and vocabularies for the model
    # decided here (and so again, as no-ops, in fit): the run directory records the decisions
    cfg = resolve_for_data(cfg, fs, positives=store.train_positives(cfg.task), say=show_progress)
    model, result = fit(cfg, fs, show_progress=show_progress, on_epoch=on_epoch, store=store)
    return finish_run(
        out, cfg, fs, model, result, dataset=store.meta["dataset"], log_lines=log_lines, data_dir=data_dir
    )


def finish_run(
    out: Path, cfg: ExperimentConfig, fs: FeatureSet, model: Any, result: TrainResult, **kw: Any
) -> TrainSummary:
    """Write the run directory from rank 0 only (under torchrun), wait for it, leave the process group;
    every rank returns the same training summary."""
    if distributed.is_main_process():
        summary = write_run(out, cfg, fs, model, result, **kw)
    else:  # the run log is rank 0's to write
        summary = TrainSummary.of(cfg, fs, model, result, **{k: v for k, v in kw.items() if k != "log_lines"})
    distributed.shutdown()
    return summary


def write_run(
    out: Path,
    cfg: ExperimentConfig,
    fs: FeatureSet,
    model: Any,
    result: TrainResult,
    *,
    dataset: str,
    features_s: float = 0.0,
    log_lines: Sequence[str] = (),
    data_dir: str | None = None,
) -> TrainSummary:
    """Write a trained model as a self-contained run directory (atomically), with ``log_lines`` (the
    timestamped progress lines of its training) as ``run.log``; returns the training summary."""
    summary = TrainSummary.of(
        cfg, fs, model, result, dataset=dataset, features_s=features_s, data_dir=data_dir
    )
    cfg = resolved(cfg, fs)
    features = {
        "dense_names": fs.dense_names,
        "dense_stats": dict(fs.info.dense_stats),
        "pairs": list(fs.info.pairs),
        "neg_keep_rate": fs.info.neg_keep_rate,
        "categorical": list(fs.categorical),
    }
    art = RunArtifact(cfg, spec_from_features(fs), model, fs.vocabs, features, result.calibrator)
    with atomic_dir(out) as tmp:
        save_artifact(tmp, art)
        (tmp / "train_summary.json").write_text(json.dumps(summary.to_dict(), indent=2) + "\n")
        _write_history(tmp, result)
        log(f"write the run directory {out}")
        (tmp / RUN_LOG).write_text(log_text(log_lines))
    return summary


def recorded_data(run_dir: Path) -> Path:
    """The dataset (or feature store) ``run_dir`` was trained on, as its ``train_summary.json`` records it;
    a :class:`ConfigError` saying to pass ``--data`` when it is not recorded or no longer there."""
    path = Path(run_dir) / "train_summary.json"
    try:
        recorded = json.loads(path.read_text()).get("data_dir")
    except (OSError, ValueError, AttributeError):
        recorded = None
    if not recorded:
        raise ConfigError(
            f"{run_dir}: the run does not record the data it was trained on (trained by an older adsformer, "
            f"or not a run directory); pass --data DIR"
        )
    data = Path(recorded)
    if not data.is_dir():
        raise ConfigError(f"{run_dir}: the run's own data {data} is no longer there; pass --data DIR")
    return data


def evaluate_run(run_dir: Path, data_dir: Path | None = None) -> dict[str, Any]:
    """Score the test split of ``data_dir`` (None: the run's own data, :func:`recorded_data`) with the
    run's model; writes and returns ``metrics.json`` (``data_dir`` says which data it scored). The progress
    lines are appended to the run's ``run.log``."""
    with recording() as lines:
        if data_dir is None:
            data_dir = recorded_data(run_dir)
            log(f"evaluate {run_dir} on the test split of {data_dir} (the run's own data)")
        else:
            log(f"evaluate {run_dir} on the test split of {data_dir}")
        metrics = _evaluate(Path(run_dir), Path(data_dir))
    save_log(run_dir, lines)
    return metrics


def _evaluate(run_dir: Path, data_dir: Path) -> dict[str, Any]:
    with stage("load the run"):
        art = load_artifact(run_dir)
    cfg: ExperimentConfig = art.config
    if is_store(data_dir):  # the test split of a feature store built with the run's vocabularies
        store = FeatureStore.open(data_dir)
        store.count("test", cfg.task)  # a clear error for PCCVR on data without conversions
        for name, vocab in art.vocabs.by_name.items():
            if name not in store.vocabs.by_name or list(store.vocabs[name].ids) != list(vocab.ids):
                raise ConfigError(
                    f"feature store {data_dir} was built with other vocabularies than run {run_dir} "
                    f"({name!r} differs): evaluate on the canonical dataset directory instead"
                )
        with stage("load the test split of the feature store"):
            test = store.load(("test",))
        return write_evaluation(
            run_dir, cfg, test, art.model, art.calibrator, dataset=store.meta["dataset"], data_dir=data_dir
        )
    with stage("read the dataset and build its features with the run's vocabularies"):
        ds = read_dataset(data_dir)
        check_task(ds, cfg.task)
        fs = build_features(ds, cfg.data, vocabs=art.vocabs, dense_stats=art.dense_stats)
    return write_evaluation(
        run_dir, cfg, fs, art.model, art.calibrator, dataset=ds.meta.name, data_dir=data_dir
    )


def write_evaluation(
    run_dir: Path,
    cfg: ExperimentConfig,
    fs: FeatureSet,
    model: Any,
    calibrator: Calibrator,
    *,
    dataset: str,
    data_dir: Path | None = None,
) -> dict[str, Any]:
    """Test-split metrics into ``run_dir/metrics.json`` (with ``data_dir``: where the data scored was)
    and the predictions (label, p before and after Platt scaling) into ``run_dir/test_predictions.parquet``
    (for reports); returns the metrics."""
    with stage(f"score the test split ({cfg.task})"):
        y, p_raw, p_cal = score_test_split(model, fs, cfg, calibrator)
        groups, p_logged = ranking_context(model, fs, cfg, calibrator)
    with stage(f"metrics and bootstrap intervals ({cfg.eval.bootstrap} resamples)"):
        scores = _calibrated_metrics(y, p_raw, p_cal, cfg, calibrator, groups=groups, p_logged=p_logged)
    metrics = {
        "task": cfg.task,
        "model": cfg.model.user,
        "dataset": dataset,
        "data_dir": None if data_dir is None else str(Path(data_dir).resolve()),
        **scores,
        "calibration": calibrator.to_dict(),
        "ece_bins": cfg.eval.ece_bins,
    }
    summary_path = run_dir / "train_summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    metrics["train_examples_per_s"] = summary.get("train_examples_per_s")
    metrics["parameters"] = summary.get("parameters")
    metrics["config"] = to_dict(cfg)
    write_json(run_dir / "metrics.json", metrics)
    preds = pl.DataFrame({"label": y.astype(np.int8), "p_uncalibrated": p_raw, "p": p_cal})
    with atomic_file(run_dir / "test_predictions.parquet") as tmp:
        preds.write_parquet(tmp)
    return metrics


def _write_history(directory: Path, result: TrainResult) -> None:
    _write_rows(directory / "history.csv", StepRecord.COLUMNS, [h.to_dict() for h in result.history])
    _write_rows(directory / "epochs.csv", EpochRecord.COLUMNS, [e.to_dict() for e in result.epochs])
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    if result.history:
        steps = [h.step for h in result.history]
        axes[0].plot(steps, [h.train_loss for h in result.history], label="train (running mean per epoch)")
    if result.epochs:
        ep_steps = [e.step for e in result.epochs]
        axes[0].plot(
            ep_steps, [e.val_log_loss for e in result.epochs], "o-", label="validation (natural rate)"
        )
        axes[1].plot(ep_steps, [e.val_roc_auc for e in result.epochs], "o-", color="C2")
    axes[0].set(xlabel="step", ylabel="log loss", title="Loss")
    axes[0].legend(fontsize=8)
    axes[1].set(xlabel="step", ylabel="ROC-AUC", title="Validation ROC-AUC")
    fig.tight_layout()
    fig.savefig(directory / "curves.png", dpi=110)
    plt.close(fig)


def _write_rows(path: Path, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    """A CSV file of ``rows`` under a header of ``columns``."""
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)


def mean_std(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if arr.size > 1 else 0.0}


def mean_std_present(values: list[float | None]) -> dict[str, float] | None:
    """:func:`mean_std` of the values that are present (not None, not NaN); None when none is (a metric
    the data or the model cannot give, e.g. ``gauc`` without request ids)."""
    present = [float(v) for v in values if v is not None and np.isfinite(v)]
    return mean_std(present) if present else None
