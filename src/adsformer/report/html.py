"""Render what a report finds (:mod:`adsformer.report.inputs`) as one self-contained HTML page.

``adsformer report PATH [PATH ...] --out report.html``: each PATH is a run directory (``adsformer train``
then ``evaluate``), an ablation directory (``adsformer ablate``), or any directory holding them (a demo
output). Images are embedded as PNG data URIs, so the file can be mailed or attached to a review as is.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
from pathlib import Path
from typing import Any

from adsformer.io import atomic_file
from adsformer.report import checks, plots
from adsformer.report.inputs import RunInfo, find_all

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
.ci{color:#666;font-size:.85em;white-space:nowrap}
.warnings{border:1px solid #d4a72c;background:#fff8c5;padding:.4em 1em;margin:1em 0}
.warnings h2{border:none;margin:.3em 0;font-size:1.15em}
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
    if isinstance(v, dict):
        return ", ".join(f"{html.escape(str(k))}={_fmt(x, digits)}" for k, x in v.items())
    return html.escape(str(v))


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _td(v: Any, cls: str = "") -> str:
    return f'<td class="{cls}">{_fmt(v)}</td>' if cls else f"<td>{_fmt(v)}</td>"


def _ci_td(value: Any, interval: Any) -> str:
    """A metric's cell with its 95% bootstrap interval ``[lo, hi]`` below it (when there is one)."""
    if not (isinstance(interval, list | tuple) and len(interval) == 2 and None not in interval):
        return _td(value)
    lo, hi = (float(x) for x in interval)
    return f'<td>{_fmt(value)}<br><span class="ci">[{lo:.4f}, {hi:.4f}]</span></td>'


def calibration_label(metrics: dict[str, Any]) -> str:
    """How the served probabilities were calibrated: Platt scaling, or why not."""
    cal = metrics.get("calibration") or {}
    if cal.get("method") == "platt":
        return "Platt"
    if cal.get("decision") == "skipped":
        return "none (Platt hurt val ECE)"
    return "none"


def _metric_rows(runs: list[RunInfo]) -> list[list[str]]:
    """One row of the test-metrics table per run, lifts relative to the baseline of the same task."""
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
                    _td(r.positives),
                    _ci_td(m.get("roc_auc"), m.get("roc_auc_ci")),
                    _td(
                        f"{lift:+.2f}%" if lift is not None else None,
                        "" if lift is None else ("pos" if lift > 0 else "neg"),
                    ),
                    _ci_td(m.get("pr_auc"), m.get("pr_auc_ci")),
                    _ci_td(m.get("gauc"), m.get("gauc_ci")),
                    _td(m.get("log_loss")),
                    _td(calibration_label(m)),
                    _td(before.get("ece")),
                    _td(m.get("ece")),
                    _td(m.get("nce")),
                    _td(f"{m['train_examples_per_s']:,.0f}" if m.get("train_examples_per_s") else None),
                ]
            )
    return rows


METRIC_HEADER = [
    "task",
    "model",
    "test rows",
    "test positives",
    "ROC-AUC [95% CI]",
    "lift",
    "PR-AUC [95% CI]",
    "GAUC [95% CI]",
    "log loss",
    "calibration",
    "ECE before",
    "ECE",
    "NCE",
    "train ex/s",
]


def _runs_section(runs: list[RunInfo]) -> list[str]:
    out = ["<h2>Test metrics</h2>"]
    out.append(
        '<p class="note">Test split = the last period in time at the natural rate. Intervals: 95% percentile '
        "bootstrap over test requests. ECE and NCE of the served probabilities (after Platt scaling where "
        "it improved validation ECE; 'ECE before' without it); lifts relative to the baseline of the same "
        "task.</p>"
    )
    out.append(_table(METRIC_HEADER, _metric_rows(runs)))
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
            out.append('<p class="note">The star marks each run\'s best epoch (the state it restored).</p>')
            out.append(_img(plots.training_figure(group), f"{task} training curves"))
    return out


def report_warnings(runs: list[RunInfo]) -> list[str]:
    """Every figure of ``runs`` that cannot be trusted as it stands (:mod:`adsformer.report.checks`)."""
    found = []
    for r in runs:
        found += checks.run_warnings(f"{r.task.upper()} {r.label}", r.metrics, r.positives)
    return found


def _warnings_section(warnings: list[str]) -> list[str]:
    if not warnings:
        return []
    items = "".join(f"<li>{html.escape(w)}</li>" for w in warnings)
    return [f'<div class="warnings"><h2>Warnings</h2><ul>{items}</ul></div>']


def _records_table(records: list[dict[str, Any]]) -> str:
    if not records:
        return '<p class="note">(none)</p>'
    keys = list(records[0])
    return _table(keys, [[_td(rec.get(k)) for k in keys] for rec in records])


def _png_file(path: Path, alt: str) -> list[str]:
    return [_img(path.read_bytes(), alt)] if path.is_file() else []


def _data_section(data: dict[str, Any]) -> list[str]:
    """The dataset a demo trained on: splits, sequence lengths, CTR by position, vocabularies, the quality
    of the pretrained listing table and the stage timings (the demo's ``summary.json`` and figures)."""
    directory = Path(data["path"])
    ds = data.get("dataset") or {}
    info = data.get("info") or {}
    out = ["<h2>Data</h2>"]
    if ds:
        out.append(_table(["dataset", "value"], [[_td(k), _td(v)] for k, v in ds.items()]))
    out.append("<h3>Splits (CTR training rows are down-sampled)</h3>")
    out.append(_records_table(data.get("splits") or []))
    window, max_len = info.get("window_s"), info.get("max_len")
    out.append(f"<h3>Sequences (window {_fmt(window)} s, newest first, M = {_fmt(max_len)})</h3>")
    out.append(_records_table(data.get("sequences") or []))
    out += _png_file(directory / "sequence_lengths.png", "sequence lengths")
    out.append("<h3>Clicks by position</h3>")
    out += _png_file(directory / "ctr_by_position.png", "CTR by position")
    vocab = data.get("vocab_sizes") or {}
    if vocab:
        out.append("<h3>Vocabularies (fit on the training split; 0 = padding, 1 = OOV)</h3>")
        out.append(_table(["vocabulary", "size"], [[_td(k), _td(v)] for k, v in vocab.items()]))
    quality = data.get("skipgram") or {}
    if quality:
        out.append("<h3>Pretrained listing table (skip-gram) quality</h3>")
        rows = [[_td(k), _td(v)] for k, v in quality.items() if not isinstance(v, dict | list)]
        out.append(_table(["measure", "value"], rows))
    timings = data.get("timings") or {}
    if timings:
        out.append("<h3>Timings</h3>")
        out.append(_table(["stage", "value"], [[_td(k), _td(v)] for k, v in timings.items()]))
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
    """The report's HTML for the runs, ablations and data summaries found under ``paths``."""
    found = find_all([Path(p) for p in paths])
    runs, ablations = found.runs, found.ablations
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    datasets = sorted({str(r.metrics.get("dataset")) for r in runs} | {str(a["dataset"]) for a in ablations})
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="meta">{now} · datasets: {html.escape(", ".join(datasets))} · {len(runs)} run(s), '
        f"{len(ablations)} ablation(s)</p>",
    ]
    parts += _warnings_section(report_warnings(runs))
    if runs:
        parts += _runs_section(runs)
    for ab in ablations:
        parts += _ablation_section(ab)
    for data in found.data:
        parts += _data_section(data)
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(paths: list[Path], out: Path, title: str = "adsformer report") -> Path:
    """Render and write the report atomically; returns ``out``."""
    page = build_report(paths, title)
    with atomic_file(out) as tmp:
        tmp.write_text(page)
    return out
