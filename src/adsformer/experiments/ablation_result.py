"""What ``adsformer ablate`` (and ``ablate-merge``) produces, as typed objects: an :class:`AblationResult` of
:class:`AblationRow` s, each summarizing one model over the seeds (:func:`summarize`), and its markdown table.

``ablation.json`` is a public contract: :meth:`AblationResult.to_dict` writes the fields ``task``,
``dataset``, ``suite``, ``skipped``, ``config``, ``seeds``, ``seed_values``, ``rows`` (and ``auto_tables``,
``peers`` where they apply) in that order; a row the fields ``name``, ``model``, every metric of
:data:`METRICS`, ``roc_auc_lift``, ``roc_auc_lift_ci``, ``pr_auc_lift``, ``pr_auc_lift_ci``, ``ece``,
``train_examples_per_s``, ``n_test`` and ``runs`` (each seed's test metrics, as ``metrics.json`` holds them).
A summary over seeds is ``{"mean": ..., "std": ...}`` (:data:`MeanStd`); a lift is in percent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from adsformer.experiments.runs import mean_std, mean_std_present

METRICS = ("roc_auc", "pr_auc", "log_loss", "gauc", "ndcg_at_10", "mrr", "roc_auc_logged")
#: metrics a run may lack (null: no request ids, no position tower, older runs): their mean/std is null
OPTIONAL_METRICS = frozenset({"gauc", "ndcg_at_10", "mrr", "roc_auc_logged"})
#: the metrics whose lift against the baseline of the same seed is reported
LIFT_METRICS = ("roc_auc", "pr_auc")

#: ``{"mean": ..., "std": ...}`` of a value over the seeds
MeanStd = dict[str, float]
#: one seed's test metrics of a row (``metrics.json``'s fields)
RunMetrics = Mapping[str, Any]

#: two-sided 97.5% Student-t quantiles by degrees of freedom (1..10); more seeds use 1.96
T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


@dataclass(frozen=True)
class SkippedRow:
    """A row of the suite that could not run here, and why."""

    name: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "reason": self.reason}


@dataclass(frozen=True)
class Lift:
    """The lift of a metric against the baseline of the same seed: mean ± std over the seeds (percent) and
    the 95% Student-t interval of the mean (None with one seed); both None without a baseline."""

    mean_std: MeanStd | None = None
    interval: list[float] | None = None


@dataclass(frozen=True)
class AblationRow:
    """One model of the suite over the seeds (see the module docstring)."""

    name: str
    model: str  # the user module
    metrics: Mapping[str, MeanStd | None]  # every metric of METRICS: mean ± std over the seeds
    lifts: Mapping[str, Lift]  # every metric of LIFT_METRICS
    ece: MeanStd
    train_examples_per_s: MeanStd | None  # None for the rules, which never train
    n_test: int
    runs: tuple[RunMetrics, ...]  # each seed's test metrics, in the result's seed order

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "model": self.model}
        out.update({m: self.metrics.get(m) for m in METRICS})
        for m in LIFT_METRICS:
            lift = self.lifts.get(m, Lift())
            out[f"{m}_lift"], out[f"{m}_lift_ci"] = lift.mean_std, lift.interval
        out.update(
            ece=self.ece,
            train_examples_per_s=self.train_examples_per_s,
            n_test=self.n_test,
            runs=[dict(r) for r in self.runs],
        )
        return out

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> AblationRow:
        """A row of an ``ablation.json`` (rows of older files may lack metrics and runs: None / empty)."""
        return cls(
            name=str(obj["name"]),
            model=str(obj["model"]),
            metrics={m: obj.get(m) for m in METRICS},
            lifts={m: Lift(obj.get(f"{m}_lift"), obj.get(f"{m}_lift_ci")) for m in LIFT_METRICS},
            ece=obj.get("ece") or {},
            train_examples_per_s=obj.get("train_examples_per_s"),
            n_test=int(obj.get("n_test", 0)),
            runs=tuple(obj.get("runs", ())),
        )


@dataclass(frozen=True)
class AblationResult:
    """``ablation.json``: the suite's rows over the seeds (see the module docstring)."""

    task: str
    dataset: str
    suite: str
    skipped: tuple[SkippedRow, ...]
    config: Mapping[str, Any]  # the experiment config the rows were derived from
    seed_values: tuple[int, ...]
    rows: tuple[AblationRow, ...]
    auto_tables: tuple[str, ...] | None = None  # the table learned for ``tables=auto``
    peers: Mapping[str, Any] | None = None  # the peers' package and sequence, when they ran

    @property
    def seeds(self) -> int:
        return len(self.seed_values)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "task": self.task,
            "dataset": self.dataset,
            "suite": self.suite,
            "skipped": [s.to_dict() for s in self.skipped],
            "config": self.config,
            "seeds": self.seeds,
            "seed_values": list(self.seed_values),
            "rows": [r.to_dict() for r in self.rows],
        }
        if self.auto_tables is not None:
            out["auto_tables"] = list(self.auto_tables)
        if self.peers is not None:
            out["peers"] = dict(self.peers)
        return out

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> AblationResult:
        """The result of an ``ablation.json`` (KeyError on a missing field)."""
        auto = obj.get("auto_tables")
        return cls(
            task=str(obj["task"]),
            dataset=str(obj["dataset"]),
            suite=str(obj["suite"]),
            skipped=tuple(SkippedRow(str(s["name"]), str(s["reason"])) for s in obj["skipped"]),
            config=obj["config"],
            seed_values=tuple(int(s) for s in obj["seed_values"]),
            rows=tuple(AblationRow.from_dict(r) for r in obj["rows"]),
            auto_tables=tuple(auto) if auto is not None else None,
            peers=obj.get("peers"),
        )


def t_interval(values: list[float]) -> list[float] | None:
    """95% Student-t interval ``[lo, hi]`` of the mean of ``values`` (None for fewer than two)."""
    n = len(values)
    if n < 2:
        return None
    mean = sum(values) / n
    sd = (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5
    half = (T_975[n - 2] if n - 2 < len(T_975) else 1.96) * sd / n**0.5
    return [mean - half, mean + half]


def summarize(runs: Mapping[str, Sequence[RunMetrics]], users: Sequence[str]) -> tuple[AblationRow, ...]:
    """One row per name of ``runs``: mean ± std of every metric over the seeds, and the lift against the
    baseline of the same seed (percent, then averaged). ``runs[name][i]`` holds the metrics of the i-th
    seed; ``users[j]`` is the user module of the j-th name."""
    base = runs.get("baseline")
    return tuple(
        _row(name, user, row_runs, base) for (name, row_runs), user in zip(runs.items(), users, strict=True)
    )


def _row(
    name: str, user: str, row_runs: Sequence[RunMetrics], base: Sequence[RunMetrics] | None
) -> AblationRow:
    metrics = {
        m: mean_std_present([r.get(m) for r in row_runs])
        if m in OPTIONAL_METRICS
        else mean_std([r[m] for r in row_runs])
        for m in METRICS
    }
    return AblationRow(
        name=name,
        model=user,
        metrics=metrics,
        lifts={m: _lift(m, row_runs, base) for m in LIFT_METRICS},
        ece=mean_std([r["ece"] for r in row_runs]),
        train_examples_per_s=mean_std_present([r.get("train_examples_per_s") for r in row_runs]),
        n_test=row_runs[0]["n_test"],
        runs=tuple(row_runs),
    )


def _lift(metric: str, row_runs: Sequence[RunMetrics], base: Sequence[RunMetrics] | None) -> Lift:
    if not base:
        return Lift()
    lifts = [100.0 * (r[metric] - b[metric]) / b[metric] for r, b in zip(row_runs, base, strict=True)]
    return Lift(mean_std(lifts), t_interval(lifts))


def ablation_markdown(result: AblationResult) -> str:
    """``ablation.md``: one table row per model, then how to read the intervals, the peers and the skipped
    rows."""

    def cell(v: MeanStd | None, pct: bool = False) -> str:
        if v is None:
            return "n/a"
        return f"{v['mean']:+.2f}% ± {v['std']:.2f}" if pct else f"{v['mean']:.4f} ± {v['std']:.4f}"

    def interval(ci: list[float] | None) -> str:
        if not ci:
            return "n/a"
        mark = "" if ci[0] > 0 or ci[1] < 0 else " (n.s.)"
        return f"[{ci[0]:+.2f}%, {ci[1]:+.2f}%]{mark}"

    lines = [
        f"# Ablation: {result.task.upper()} on {result.dataset} "
        f"({result.seeds} seed{'s' if result.seeds != 1 else ''}, mean ± std)",
        "",
        "| model | ROC-AUC | PR-AUC | log loss | GAUC | ROC-AUC logged | ROC-AUC lift | 95% interval "
        "| PR-AUC lift |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result.rows:
        m, auc, pr = r.metrics, r.lifts.get("roc_auc", Lift()), r.lifts.get("pr_auc", Lift())
        lines.append(
            f"| {r.name} | {cell(m['roc_auc'])} | {cell(m['pr_auc'])} | {cell(m['log_loss'])} | "
            f"{cell(m.get('gauc'))} | {cell(m.get('roc_auc_logged'))} | {cell(auc.mean_std, True)} | "
            f"{'—' if r.name == 'baseline' else interval(auc.interval)} | {cell(pr.mean_std, True)} |"
        )
    lines += [
        "",
        "Lift intervals: Student-t 95% over seeds (lift against the same seed's baseline); (n.s.) = the "
        "interval crosses zero, not significant; n/a with one seed. Rules do not learn: their spread is 0.",
    ]
    if result.peers:
        peers = result.peers
        lines.append(
            f"\nDIN, TransAct: {peers['package']} (model_zoo.LongCTR) on the {peers['sequence']} sequence, "
            "trained on the same rows, split and features; no position tower (no ROC-AUC logged)."
        )
    for s in result.skipped:
        lines.append(f"\n- skipped {s.name}: {s.reason}")
    return "\n".join(lines) + "\n"
