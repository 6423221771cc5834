"""Collect runs and ablations from directories and render them as one self-contained HTML page.

``adsformer report PATH [PATH ...] --out report.html``: each PATH is a run directory (``adsformer train``
then ``evaluate``), an ablation directory (``adsformer ablate``), or any directory holding them (a demo
output). Images are embedded as PNG data URIs, so the file can be mailed or attached to a review as is.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from adsformer.errors import UserError
from adsformer.io import atomic_file
from adsformer.report import plots

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


def discover(paths: list[Path]) -> tuple[list[RunInfo], list[dict[str, Any]]]:
    """Runs (directories with ``model.pt``) and ablations (``ablation.json``) under ``paths``."""
    runs, ablations = [], []

    def visit(d: Path, depth: int) -> None:
        if (d / "model.pt").exists():
            if (d / "metrics.json").exists():
                runs.append(load_run(d))
            return
        if (d / "ablation.json").exists():
            ablations.append({"path": str(d), **_read_json(d / "ablation.json")})
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
    return runs, ablations


CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
color:#222;line-height:1.45;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
.meta{color:#666;font-size:.9em}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em}
th,td{border:1px solid #ddd;padding:.35em .7em;text-align:right}
th{background:#f5f5f5}td:first-child,th:first-child{text-align:left}
td.pos{color:#1a7f37;font-weight:600}td.neg{color:#cf222e}
img{max-width:100%;border:1px solid #eee;margin:.5em 0}
.note{color:#555;font-size:.9em}
"""


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return html.escape(str(v))


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _td(v: Any, cls: str = "") -> str:
    return f'<td class="{cls}">{_fmt(v)}</td>' if cls else f"<td>{_fmt(v)}</td>"


def _runs_section(runs: list[RunInfo]) -> list[str]:
    out = ["<h2>Test metrics</h2>"]
    out.append(
        '<p class="note">Test split = the last period in time at the natural rate. ECE and NCE after Platt '
        "scaling (fit on the validation split); lifts relative to the baseline of the same task.</p>"
    )
    rows = []
    for task in sorted({r.task for r in runs}):
        group = [r for r in runs if r.task == task]
        base = next((r for r in group if r.metrics.get("model") == "baseline"), None)
        for r in group:
            m = r.metrics
            lift = None
            if base is not None and r is not base:
                lift = 100 * (m["roc_auc"] - base.metrics["roc_auc"]) / base.metrics["roc_auc"]
            before = m.get("before_calibration") or {}
            rows.append(
                [
                    _td(task.upper()),
                    _td(r.label),
                    _td(m.get("n_test")),
                    _td(m.get("roc_auc")),
                    _td(
                        f"{lift:+.2f}%" if lift is not None else None,
                        "" if lift is None else ("pos" if lift > 0 else "neg"),
                    ),
                    _td(m.get("pr_auc")),
                    _td(m.get("log_loss")),
                    _td(before.get("ece")),
                    _td(m.get("ece")),
                    _td(m.get("nce")),
                    _td(f"{m['train_examples_per_s']:,.0f}" if m.get("train_examples_per_s") else None),
                ]
            )
    out.append(
        _table(
            [
                "task",
                "model",
                "test rows",
                "ROC-AUC",
                "lift",
                "PR-AUC",
                "log loss",
                "ECE before",
                "ECE",
                "NCE",
                "train ex/s",
            ],
            rows,
        )
    )
    for task in sorted({r.task for r in runs}):
        group = [r for r in runs if r.task == task]
        out.append(f"<h2>{task.upper()}: ranking</h2>")
        out.append(_img(plots.roc_pr_figure(group), f"{task} ROC and PR curves"))
        out.append(f"<h2>{task.upper()}: calibration</h2>")
        out.append(
            '<p class="note">Reliability diagrams on equal-mass bins of the predicted probability; the dotted '
            "diagonal is perfect calibration. ECE in the titles uses equal-width bins.</p>"
        )
        for r in group:
            out.append(_img(plots.reliability_figure(r, int(r.metrics.get("ece_bins", 15))), f"{r.label}"))
        if any(r.history or r.epochs for r in group):
            out.append(f"<h2>{task.upper()}: training</h2>")
            out.append(_img(plots.training_figure(group), f"{task} training curves"))
    return out


def _ablation_section(ab: dict[str, Any]) -> list[str]:
    def ms(v: dict[str, float] | None, pct: bool = False) -> str:
        if not v:
            return "—"
        return f"{v['mean']:+.2f}% ± {v['std']:.2f}" if pct else f"{v['mean']:.4f} ± {v['std']:.4f}"

    out = [
        f"<h2>Ablation: {ab['task'].upper()} on {html.escape(str(ab['dataset']))} ({ab['seeds']} seeds)</h2>"
    ]
    rows = []
    for r in ab["rows"]:
        lift = r.get("roc_auc_lift")
        cls = "" if not lift or r["name"] == "baseline" else ("pos" if lift["mean"] > 0 else "neg")
        rows.append(
            [
                _td(r["name"]),
                _td(ms(r["roc_auc"])),
                _td(ms(r["pr_auc"])),
                _td(ms(r["log_loss"])),
                _td(ms(r.get("ece"))),
                _td(ms(lift, True), cls),
                _td(ms(r.get("pr_auc_lift"), True)),
            ]
        )
    out.append(_table(["row", "ROC-AUC", "PR-AUC", "log loss", "ECE", "ROC-AUC lift", "PR-AUC lift"], rows))
    for s in ab.get("skipped", []):
        out.append(f'<p class="note">skipped {html.escape(s["name"])}: {html.escape(s["reason"])}</p>')
    if len(ab["rows"]) > 1:
        out.append(_img(plots.ablation_figure(ab), "ablation lifts"))
    return out


def build_report(paths: list[Path], title: str = "adsformer report") -> str:
    """The report's HTML for the runs and ablations found under ``paths``."""
    runs, ablations = discover([Path(p) for p in paths])
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    datasets = sorted({str(r.metrics.get("dataset")) for r in runs} | {str(a["dataset"]) for a in ablations})
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="meta">{now} · datasets: {html.escape(", ".join(datasets))} · {len(runs)} run(s), '
        f"{len(ablations)} ablation(s)</p>",
    ]
    if runs:
        parts += _runs_section(runs)
    for ab in ablations:
        parts += _ablation_section(ab)
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(paths: list[Path], out: Path, title: str = "adsformer report") -> Path:
    """Render and write the report atomically; returns ``out``."""
    page = build_report(paths, title)
    with atomic_file(out) as tmp:
        tmp.write_text(page)
    return out
