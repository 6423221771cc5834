"""What a report reads: evaluated runs, ablations and demo data summaries found under the given paths.

A run is a directory with ``model.pt`` and the test metrics and predictions ``adsformer evaluate`` wrote; an
ablation a directory with ``ablation.json``; a demo's data summary its ``summary.json``. Anything unreadable
is a :class:`ReportError` naming the file.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from adsformer.errors import UserError

MAX_DEPTH = 3


class ReportError(UserError):
    """Nothing to report, or an input that is not a run, ablation or directory of them."""


@dataclass
class RunInfo:
    path: Path
    metrics: dict[str, Any]
    labels: np.ndarray
    probs: np.ndarray  # served (calibrated) probabilities on the test split
    probs_uncalibrated: np.ndarray
    history: list[dict[str, float]] = field(default_factory=list)
    epochs: list[dict[str, float]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)  # train_summary.json ({} when absent)

    @property
    def best_epoch(self) -> int | None:
        """Index into ``epochs`` of the restored (best) epoch; None when unknown."""
        best = self.summary.get("best_epoch")
        return best if isinstance(best, int) and 0 <= best < len(self.epochs) else None

    @property
    def positives(self) -> int:
        """Positive labels in the test split."""
        return int(np.asarray(self.labels).sum())

    @property
    def task(self) -> str:
        return str(self.metrics["task"])

    @property
    def label(self) -> str:
        return str(self.metrics.get("model", self.path.name))


def _read_csv(path: Path) -> list[dict[str, float]]:
    if not path.exists():
        return []
    with path.open() as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


def load_run(path: Path) -> RunInfo:
    metrics_path, preds_path = path / "metrics.json", path / "test_predictions.parquet"
    if not metrics_path.exists() or not preds_path.exists():
        raise ReportError(f"{path}: a run without test metrics; run `adsformer evaluate {path} --data DIR`")
    try:
        preds = pl.read_parquet(preds_path)
        return RunInfo(
            path,
            _read_json(metrics_path),
            preds["label"].to_numpy(),
            preds["p"].to_numpy(),
            preds["p_uncalibrated"].to_numpy(),
            _read_csv(path / "history.csv"),
            _read_csv(path / "epochs.csv"),
            _read_json(path / "train_summary.json") if (path / "train_summary.json").exists() else {},
        )
    except ReportError:
        raise
    except (OSError, ValueError, KeyError, TypeError, pl.exceptions.PolarsError) as exc:
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
        raise ReportError(
            f"{path}: cannot read its test metrics, predictions or curves ({detail}); rerun "
            f"`adsformer evaluate {path} --data DIR`"
        ) from exc


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object file, or :class:`ReportError` naming it."""
    try:
        obj = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"{path}: not valid JSON ({' '.join(str(exc).split())})") from exc
    if not isinstance(obj, dict):
        raise ReportError(f"{path}: expected a JSON object, found {type(obj).__name__}")
    return obj


@dataclass
class Found:
    """What a report shows: evaluated runs, ablations and data summaries (``summary.json`` of a demo,
    with ``path`` the directory of its figures)."""

    runs: list[RunInfo]
    ablations: list[dict[str, Any]]
    data: list[dict[str, Any]] = field(default_factory=list)


def _is_data_summary(path: Path) -> bool:
    return path.is_file() and "splits" in _read_json(path)


def discover(paths: list[Path]) -> tuple[list[RunInfo], list[dict[str, Any]]]:
    """Runs (directories with ``model.pt``) and ablations (``ablation.json``) under ``paths``."""
    found = find_all(paths)
    return found.runs, found.ablations


def find_all(paths: list[Path]) -> Found:
    """Runs (directories with ``model.pt``), ablations (``ablation.json``) and data summaries (a demo's
    ``summary.json``) under ``paths``."""
    runs: list[RunInfo] = []
    ablations: list[dict[str, Any]] = []
    data: list[dict[str, Any]] = []

    def visit(d: Path, depth: int) -> None:
        if (d / "model.pt").exists():
            if (d / "metrics.json").exists():
                runs.append(load_run(d))
            return
        if (d / "ablation.json").exists():
            ablations.append({"path": str(d), **_read_json(d / "ablation.json")})
        if _is_data_summary(d / "summary.json"):
            data.append({"path": str(d), **_read_json(d / "summary.json")})
        if depth < MAX_DEPTH:
            for child in sorted(p for p in d.iterdir() if p.is_dir()):
                visit(child, depth + 1)

    for p in paths:
        if not p.exists():
            raise ReportError(f"{p}: does not exist")
        if not p.is_dir():
            raise ReportError(f"{p}: not a directory (give a run, ablation or demo directory)")
        visit(p, 0)
    runs.sort(key=lambda r: (r.task, r.metrics.get("model") != "baseline", r.label, str(r.path)))
    if not runs and not ablations:
        raise ReportError(
            f"no evaluated run (model.pt + metrics.json) or ablation (ablation.json) under "
            f"{', '.join(map(str, paths))}"
        )
    return Found(runs, ablations, data)
