"""Score impressions with a trained run: ``adsformer predict RUN_DIR --data DIR --out FILE.parquet``.

A :class:`Predictor` holds a run's model, vocabularies and dense statistics (everything is read from the run
directory, which is self-contained: frozen pretrained tables live inside ``model.pt``). It scores canonical
impressions exactly as evaluation does:

* ids are encoded with the run's vocabularies, so a listing, shop, taxonomy, query or ``c_*`` value never
  seen in training maps to an OOV bucket; user ids are only grouping keys for the sequences, so a new user
  simply gets the sequences of its own events (none: empty sequences);
* numeric features are standardized with the training statistics (a missing feature is 0);
* sequences are rebuilt from the given events with the run's pairs, window and maximum length;
* probabilities go through the run's :class:`~adsformer.run.calibration.Calibrator`, as evaluation
  does: CTR is mapped back to the natural click rate (the training split's negatives were down-sampled),
  then Platt scaling fit on the validation split; PCCVR (P(purchase | click)) gets Platt scaling only.

Scoring uses :func:`adsformer.data.features.build_features` in its ``score_all`` mode: no time split (every
row is scored, so a frame holding a single request works) and no down-sampling. With the run's
vocabularies and statistics the split has no other effect on the features, so scoring and evaluation agree
exactly on the same rows (tested).

Letters: N impressions scored, M max sequence length.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from adsformer.config import Task
from adsformer.data.features import FeatureSet, build_features
from adsformer.data.schema import EVENTS, IMPRESSIONS, LISTINGS, Dataset, DatasetMeta, column_spec
from adsformer.data.splits import CODE_NAMES, SplitError, split_at, time_split
from adsformer.data.validate import MAX_ROWS_SHOWN, DatasetError, Problem, ValidationReport, read_dataset
from adsformer.io import atomic_file
from adsformer.run.artifact import RunArtifact, load_artifact
from adsformer.run.scoring import predict_logits

#: Columns scoring needs in each table (labels and request ids are optional: they are not model inputs).
SCORING_REQUIRED: dict[str, tuple[str, ...]] = {
    IMPRESSIONS: ("user_id", "ts", "listing_id"),
    EVENTS: ("user_id", "ts", "action"),
    LISTINGS: ("listing_id",),
}
#: Contract columns no model reads; dropped before type checks so they can never fail a prediction.
_UNUSED = {"title", "tags", "image_path", "budget"}
#: Impression columns copied to the output of :func:`predict_run`, when present.
ID_COLUMNS = ("request_id", "user_id", "ts", "listing_id", "position")
#: Label columns copied to the output of :func:`predict_run` (after the probability), when present.
LABEL_COLUMNS = ("clicked", "purchased")
_RUN_FILES = ("model.pt", "features.json", "vocab/vocab.json")


class Predictor:
    """A trained run ready to score impressions. Build with :meth:`load`."""

    def __init__(self, artifact: RunArtifact, run_dir: Path | None = None) -> None:
        self.artifact = artifact
        self.run_dir = run_dir
        self.model = artifact.model.eval()
        self.config = artifact.config
        self.task: Task = artifact.config.task
        self.pairs: list[str] = list(artifact.features["pairs"])
        self.dense_stats = artifact.dense_stats
        self.neg_keep_rate = float(artifact.features["neg_keep_rate"])
        self.calibrator = artifact.calibrator  # down-sampling correction + Platt scaling
        self.batch_size = int(artifact.config.train.eval_batch_size)
        if self.pairs != list(artifact.spec.pairs):
            raise ValueError(
                f"{run_dir}: features.json pairs {self.pairs} differ from the model's {artifact.spec.pairs}"
            )
        if len(self.dense_stats) != artifact.spec.n_dense:
            raise ValueError(
                f"{run_dir}: features.json has {len(self.dense_stats)} dense statistics, the model expects "
                f"{artifact.spec.n_dense} dense features"
            )

    @classmethod
    def load(cls, run_dir: str | Path) -> Predictor:
        """Load a run directory written by ``adsformer train`` (the training data is not needed)."""
        run_dir = Path(run_dir)
        if not run_dir.exists():
            raise FileNotFoundError(f"{run_dir}: run directory does not exist")
        if not run_dir.is_dir():
            raise NotADirectoryError(f"{run_dir}: not a run directory (a file, not a directory)")
        if (run_dir / "model.pt").exists():
            missing = [name for name in _RUN_FILES if not (run_dir / name).exists()]
            if missing:
                raise FileNotFoundError(f"{run_dir}: incomplete run directory, missing {', '.join(missing)}")
        return cls(load_artifact(run_dir), run_dir)  # no model.pt: load_artifact says how to make one

    # -- features --------------------------------------------------------------------------------------
    def features(self, ds: Dataset, rows: np.ndarray | None = None) -> FeatureSet:
        """Model inputs for impressions ``rows`` of ``ds`` (all when None), in that order; never splits.

        The returned :class:`FeatureSet` marks every row as test and is not down-sampled; its labels are the
        dataset's (zeros where the impressions carry none).
        """
        imps, events, listings = _canonical_tables(ds.impressions, ds.events, ds.listings)
        if rows is not None:
            imps = imps[_check_rows(rows, imps.height)]
        return self._features(imps, events, listings)

    def _features(self, imps: pl.DataFrame, events: pl.DataFrame, listings: pl.DataFrame) -> FeatureSet:
        if "purchased" not in imps.columns:  # scoring needs no labels: a PCCVR run scores unlabelled rows too
            imps = imps.with_columns(pl.lit(0, pl.Int8).alias("purchased"))
        ds = Dataset(
            listings, events, imps, DatasetMeta(name="scoring", source="predictor", has_conversions=True)
        )
        fs = build_features(ds, self.config.data, self.artifact.vocabs, self.dense_stats, score_all=True)
        fs.info = replace(fs.info, neg_keep_rate=self.neg_keep_rate)
        return fs

    # -- scoring ---------------------------------------------------------------------------------------
    def predict_features(self, fs: FeatureSet, rows: np.ndarray | None = None) -> np.ndarray:
        """Probabilities (float64) for ``rows`` of a feature set built with this run's vocabularies."""
        rows = np.arange(fs.n) if rows is None else _check_rows(rows, fs.n)
        z = predict_logits(self.model, fs, rows, task=self.task, batch_size=self.batch_size)
        return self.calibrator(z)

    def predict_dataset(self, ds: Dataset, rows: np.ndarray | None = None) -> np.ndarray:
        """Probabilities (N,) float64 for impressions ``rows`` of ``ds`` (all when None), in that order.

        CTR: P(click) at the natural rate; PCCVR: P(purchase | click). Request-relative features
        (``rank(X)``, :mod:`adsformer.data.ranks`) rank among the given rows of each request, as the service
        ranks the candidates it is given.
        """
        fs = self.features(ds, rows)
        if fs.n == 0:
            return np.zeros(0, np.float64)
        return self.predict_features(fs)

    def predict_frame(
        self,
        impressions: pl.DataFrame,
        events: pl.DataFrame | None = None,
        listings: pl.DataFrame | None = None,
    ) -> np.ndarray:
        """Score impression rows held in memory (e.g. one ad request), in their order.

        ``impressions`` needs ``user_id``, ``ts``, ``listing_id`` (labels and ``request_id`` are optional);
        ``events`` the users' recent actions (``user_id``, ``ts``, ``action`` and entity columns; None = no
        history); ``listings`` the listings' attributes (None = unknown: shop, taxonomy and features empty).
        """
        ds = Dataset(
            listings=_empty(LISTINGS) if listings is None else listings,
            events=_empty(EVENTS) if events is None else events,
            impressions=impressions,
            meta=DatasetMeta(name="<frame>", source="predict_frame"),
        )
        return self.predict_dataset(ds)


def predict_run(
    run_dir: str | Path, data_dir: str | Path, out: str | Path, *, batch_size: int | None = None
) -> dict[str, Any]:
    """``adsformer predict RUN_DIR --data DIR --out FILE.parquet``: score every impression of a dataset.

    Writes (atomically) the impressions' id columns (request_id, user_id, ts, listing_id, position, where
    present), ``p_ctr`` or ``p_pccvr``, the labels (``clicked``, ``purchased``, where present) and ``split``
    (:func:`split_names`), in the dataset's row order; returns a summary.
    """
    predictor = Predictor.load(run_dir)
    if batch_size is not None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        predictor.batch_size = int(batch_size)
    ds = read_dataset(data_dir)
    p = predictor.predict_dataset(ds)
    column = f"p_{predictor.task}"
    ids = [c for c in ID_COLUMNS if c in ds.impressions.columns]
    labels = [c for c in LABEL_COLUMNS if c in ds.impressions.columns]
    frame = ds.impressions.select(ids).with_columns(pl.Series(column, p, dtype=pl.Float64))
    frame = frame.with_columns(
        *(ds.impressions[c] for c in labels),
        pl.Series("split", split_names(predictor, ds.impressions["ts"].to_numpy()), dtype=pl.Utf8),
    )
    out = Path(out)
    with atomic_file(out) as tmp:
        frame.write_parquet(tmp)
    return {
        "task": predictor.task,
        "model": predictor.config.model.user,
        "dataset": ds.meta.name,
        "rows": int(p.size),
        "column": column,
        "mean_p": float(p.mean()) if p.size else float("nan"),
        "out": str(out),
    }


def split_names(predictor: Predictor, ts: np.ndarray) -> list[str | None]:
    """The split of each impression at times ``ts`` (N,) as the run split its data: ``train``, ``val``,
    ``test`` or ``unused``, cut at the instants the run recorded (``train_summary.json``); for a run that
    recorded none, the run's split settings applied to ``ts``, and None where they cannot cut them."""
    recorded = _recorded_split(predictor.run_dir)
    if recorded is not None:
        codes = split_at(
            ts,
            recorded["val_start"],
            recorded["test_start"],
            recorded.get("end"),
            recorded.get("train_start"),
        )
    else:
        try:
            codes = time_split(ts, predictor.config.data.split).split
        except SplitError:
            return [None] * int(np.asarray(ts).size)
    return [CODE_NAMES[c] for c in codes.tolist()]


def _recorded_split(run_dir: Path | None) -> dict[str, Any] | None:
    """The ``split`` record of a run's ``train_summary.json`` (None: no run directory, or none recorded)."""
    if run_dir is None:
        return None
    try:
        split = json.loads((run_dir / "train_summary.json").read_text()).get("split")
    except (OSError, ValueError, AttributeError):
        return None
    return split if isinstance(split, dict) and "val_start" in split and "test_start" in split else None


# -- input checks ----------------------------------------------------------------------------------------
def _check_rows(rows: np.ndarray, n: int) -> np.ndarray:
    rows = np.asarray(rows)
    if rows.dtype == bool:
        if rows.shape != (n,):
            raise ValueError(f"a boolean row mask must have shape ({n},), got {rows.shape}")
        return np.flatnonzero(rows)
    if rows.ndim != 1 or (rows.size and not np.issubdtype(rows.dtype, np.integer)):
        raise ValueError(f"rows must be a 1-D array of integer row indices, got {rows.dtype} {rows.shape}")
    rows = rows.astype(np.int64)
    bad = (rows < 0) | (rows >= n)
    if bad.any():
        raise ValueError(f"row indices out of range [0, {n}): e.g. {rows[bad][:MAX_ROWS_SHOWN].tolist()}")
    return rows


def _canonical_tables(
    impressions: pl.DataFrame, events: pl.DataFrame, listings: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """The three tables cast to the data contract's types; every problem is reported at once as a
    :class:`~adsformer.data.validate.DatasetError` (as ``adsformer validate`` words them)."""
    report = ValidationReport(Path("<frames>"))
    out = [
        _canonical(table, df, report.problems)
        for table, df in ((IMPRESSIONS, impressions), (EVENTS, events), (LISTINGS, listings))
    ]
    if out[2] is not None and "listing_id" in out[2].columns:
        dup = out[2]["listing_id"].is_duplicated().to_numpy()
        if dup.any():  # a duplicated listing would duplicate its impressions in the join
            _problem(report.problems, LISTINGS, "listing_id is not unique", "listing_id", dup)
    if report.errors:
        raise DatasetError(report)
    imps, evs, lst = out
    assert imps is not None and evs is not None and lst is not None
    return imps, evs, lst


def _canonical(table: str, df: Any, problems: list[Problem]) -> pl.DataFrame | None:
    file = f"{table} frame"
    if not isinstance(df, pl.DataFrame):
        problems.append(Problem(file, f"expected a polars DataFrame, got {type(df).__name__}"))
        return None
    for name in SCORING_REQUIRED[table]:
        if name not in df.columns:
            spec = column_spec(table, name)
            problems.append(
                Problem(file, f"required column is missing (expected {spec.type if spec else '?'})", name)
            )
    arrays, names = [], []
    for name in df.columns:
        spec = column_spec(table, name)
        if spec is None or name in _UNUSED:
            continue  # not part of the contract (validate warns and ignores them too)
        try:
            arr = df[name].to_arrow().cast(spec.type, safe=True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            problems.append(Problem(file, f"expected type {spec.type}, found {df[name].dtype} ({exc})", name))
            continue
        if name in SCORING_REQUIRED[table] and arr.null_count:
            mask = df[name].is_null().to_numpy()
            _problem(problems, table, "null value in a required id/time column", name, mask)
        arrays.append(arr)
        names.append(name)
    if any(p.file == file for p in problems):
        return None
    return pl.from_arrow(pa.Table.from_arrays(arrays, names=names), rechunk=True)  # type: ignore[return-value]


def _problem(problems: list[Problem], table: str, message: str, column: str, mask: np.ndarray) -> None:
    rows = np.flatnonzero(mask)
    problems.append(
        Problem(f"{table} frame", message, column, tuple(rows[:MAX_ROWS_SHOWN].tolist()), int(rows.size))
    )


def _empty(table: str) -> pl.DataFrame:
    cols = SCORING_REQUIRED[table]
    return pl.from_arrow(
        pa.table({c: pa.array([], column_spec(table, c).type) for c in cols})  # type: ignore[union-attr]
    )  # type: ignore[return-value]
