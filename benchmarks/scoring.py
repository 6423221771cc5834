"""Benchmark: the cost of scoring one user's candidates, per scoring option, with the accuracy each keeps.

    python benchmarks/scoring.py --run RUN_DIR --data DATA_DIR [--candidates 600] [--history 50]
        [--repeats 100] [--threads 1] [--options plain,...] [--no-auc] [--out bench_out/scoring]
    python benchmarks/scoring.py --run RUN_DIR --data DATA_DIR --curves [--out bench_out/scoring_curves]

``RUN_DIR`` is a trained run (``adsformer train``) and ``DATA_DIR`` the dataset it was trained on: its
listings are the catalog, its test split gives the AUC. One request: ``--candidates`` catalog listings for
one user whose window holds ``--history`` events in every sequence (capped by the run's ``max_len``; 50 =
the full window), built by the serving code (:class:`adsformer.serving.scoring.ServingModel`).

Options (each scores the same request; timed in turns, so machine load hits all alike):

* ``plain``: the plain batched forward, the user's sequences repeated for every candidate, under
  ``torch.no_grad`` (how evaluation scores) -- the reference;
* ``plain-inference``: the same under ``torch.inference_mode``;
* ``plain-int8``: the same with every ``nn.Linear`` dynamically quantized to int8
  (``torch.ao.quantization.quantize_dynamic``; weights int8, activations quantized per call);
* ``onnxruntime``: the run exported as ONNX (the :mod:`adsformer.run.export` scoring module: plain forward,
  full-width blocks) in ONNX Runtime, one thread, all graph optimizations (the ``onnx`` extra:
  ``pip install -e ".[onnx]"``);
* ``fast``: :class:`adsformer.models.fast.FastScorer`, exact (the serving path): shared user work once;
* ``fast-cached``: the same with ``mode="cached-sequence"`` (the sequence encoded once: the same as
  ``fast`` for the default encoder, an approximation for the paper's, ``sequence_sees_target: true``).

Columns: ms per request (median and p99 of ``--repeats``), the speed ratio of medians against ``plain``,
max |delta p| of the request's calibrated probabilities against ``plain`` (float32), and delta AUC on the
test split (every test row scored by the option -- the fast options one request at a time, rows of a
request sharing the user's sequences -- minus the float32 plain forward's AUC).

``--curves``: the fast path against the plain forward for 100 / 300 / 600 / 1,000 candidates at the full
window, and for windows of 0 / 10 / 25 / 50 events at 600 candidates (``--options`` to choose rows).
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import nn

from adsformer.data.batching import iterate_batches
from adsformer.data.features import FeatureSet, build_features
from adsformer.data.inputs import ModelInputs
from adsformer.data.validate import read_dataset
from adsformer.io import atomic_file, write_json
from adsformer.models.fast import FastScorer
from adsformer.run.export import INPUT_NAMES, ScoringModule, example_inputs, stack_inputs
from adsformer.serving.catalog import Catalog
from adsformer.serving.online_features import RequestFeatures
from adsformer.serving.scoring import ServingModel
from adsformer.serving.store import UserState
from adsformer.training.metrics import roc_auc

OPTIONS = ("plain", "plain-inference", "plain-int8", "onnxruntime", "fast", "fast-cached")
CURVE_OPTIONS = ("plain", "fast", "fast-cached")


# ------------------------------------------------------------------------------------------- the request
def request(model: ServingModel, catalog: Catalog, n_cand: int, history: int, seed: int) -> RequestFeatures:
    """``n_cand`` catalog listings for a user with ``history`` events in every sequence (newest 1 s ago)."""
    rng = random.Random(seed)
    now = 2_000_000_000
    ids = rng.sample(catalog.ids, min(n_cand, len(catalog)))
    bids = catalog.bids[[catalog.row[i] for i in ids]]
    sequences: dict[str, list[tuple[int, str]]] = {}
    for pair in model.pairs:
        entity, action = pair.split(":", 1)
        column = {"listing": "listing_id", "shop": "shop_id", "taxonomy": "taxonomy_id"}.get(entity, entity)
        if column in catalog.listings.columns:
            values = catalog.listings[column].drop_nulls().cast(pl.String).to_list()
        else:  # queries
            values = [f"query {i}" for i in range(max(history, 1))]
        if action == "any":  # the merged listing sequence stores "ACTION LISTING"
            values = [f"view {v}" for v in values]
        sequences[pair] = [(now - 1 - i, rng.choice(values)) for i in range(history)]
    return model.features(ids, query="handmade gift", state=UserState(1, sequences), now=now, bids=bids)


# ---------------------------------------------------------------------------------------------- options
class PlainOption:
    """The plain batched forward: the user's sequences repeated for every candidate."""

    def __init__(self, model: nn.Module, grad_mode: Callable[[], Any] = torch.no_grad) -> None:
        self.model, self.grad_mode = model, grad_mode

    def __call__(self, f: RequestFeatures) -> torch.Tensor:
        with self.grad_mode():
            return self.model(f.repeated())

    def rows(self, fs: FeatureSet, rows: np.ndarray) -> np.ndarray:
        out = []
        for b in iterate_batches(fs, rows, 4096):
            with self.grad_mode():
                out.append(self.model(b.without_position()))
        return torch.cat(out).double().numpy()


class FastOption:
    """:class:`FastScorer` in one mode; over test rows, one request at a time."""

    def __init__(self, model: nn.Module, mode: str) -> None:
        self.scorer = FastScorer(model, mode=mode)  # type: ignore[arg-type]

    def __call__(self, f: RequestFeatures) -> torch.Tensor:
        return self.scorer.logits(f)

    def rows(self, fs: FeatureSet, rows: np.ndarray) -> np.ndarray:
        """Rows with the same request code share the user and time, hence the sequences (checked: a
        request whose rows differ is scored row by row)."""
        codes = fs.request[rows] if fs.request is not None else np.arange(rows.size)
        order = np.argsort(codes, kind="stable")
        out = np.zeros(rows.size, np.float64)
        for group in np.split(order, np.flatnonzero(np.diff(codes[order])) + 1):
            batch = next(iterate_batches(fs, rows[group], group.size))
            same = all(bool((v == v[:1]).all()) for v in [*batch.seq_len.values(), *batch.seq_ids.values()])
            for part in [np.arange(group.size)] if same else [np.array([i]) for i in range(group.size)]:
                t = torch.from_numpy(part)
                out[group[part]] = (
                    self.scorer.logits(
                        ModelInputs(
                            target={k: v[t] for k, v in batch.target.items()},
                            categorical={k: v[t] for k, v in batch.categorical.items()},
                            dense=batch.dense[t],
                            seq_ids={k: v[t[:1]] for k, v in batch.seq_ids.items()},
                            seq_len={k: v[t[:1]] for k, v in batch.seq_len.items()},
                            touch=None if batch.touch is None else batch.touch[t],
                        )
                    )
                    .double()
                    .numpy()
                )
        return out


def int8(model: nn.Module) -> nn.Module:
    quantized = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {nn.Linear}, dtype=torch.qint8)
    return quantized.eval()


class OnnxOption:
    """The run's plain scoring module exported to ONNX and run in ONNX Runtime; returns logits (the module
    returns calibrated probabilities: they are mapped back through the same calibration)."""

    def __init__(self, sm: ServingModel, tmp: Path) -> None:
        import onnxruntime as ort

        pred = sm.predictor
        spec = pred.artifact.spec
        self.max_len = int(pred.config.data.sequences.max_len)
        self.pairs = list(spec.pairs)
        self.wrapper = ScoringModule(copy.deepcopy(pred.model).eval(), self.pairs, self.max_len)
        self.categorical = self.wrapper.categorical
        example = example_inputs(spec, self.pairs, self.categorical, self.max_len, 8)
        path = tmp / "model.onnx"
        dynamic = {name: {0: "B"} for name in INPUT_NAMES if name not in ("seq_ids", "seq_len")}
        dynamic |= {"seq_ids": {1: "B"}, "seq_len": {1: "B"}}
        with torch.no_grad():
            torch.onnx.export(
                self.wrapper, example, str(path), input_names=list(INPUT_NAMES), output_names=["p"],
                dynamic_axes=dynamic, dynamo=False, opset_version=17,
            )  # fmt: skip
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def inputs(self, f: RequestFeatures) -> dict[str, np.ndarray]:
        B, M = len(f.listing_ids), self.max_len
        ids = torch.zeros((len(self.pairs), B, M), dtype=torch.int64)
        lens = torch.zeros((len(self.pairs), B), dtype=torch.int64)
        for i, p in enumerate(self.pairs):
            w = min(M, f.seq_ids[p].shape[1])
            ids[i, :, :w] = f.seq_ids[p][0, :w]
            lens[i] = f.seq_len[p][0]
        cats = [f.categorical[c] for c in self.categorical]
        arrays = (
            f.target["listing"], f.target["shop"], f.target["taxonomy"],
            torch.stack(cats, 1) if cats else torch.zeros((B, 0), dtype=torch.int64),
            f.dense, ids, lens, f.touch,
        )  # fmt: skip
        return {n: a.numpy() for n, a in zip(INPUT_NAMES, arrays, strict=True)}

    def __call__(self, f: RequestFeatures) -> torch.Tensor:
        (p,) = self.session.run(None, self.inputs(f))
        return torch.logit(torch.from_numpy(p).double().clamp(1e-12, 1 - 1e-12)).float()  # (B,) logits

    def rows(self, fs: FeatureSet, rows: np.ndarray) -> np.ndarray:
        out = []
        for batch in iterate_batches(fs, rows, 4096, trim=False):
            inputs = stack_inputs(batch, self.pairs, self.categorical)
            (p,) = self.session.run(None, {n: a.numpy() for n, a in zip(INPUT_NAMES, inputs, strict=True)})
            out.append(p)
        p = np.concatenate(out).astype(np.float64)
        return np.log(p / (1 - p))  # calibrated logits: monotone in the model's, the AUC is the same


def build_options(sm: ServingModel, names: list[str], tmp: Path) -> dict[str, Any]:
    """name -> option (callable on a request, ``rows`` over test rows), or the reason it failed to build."""
    model = sm.predictor.model
    makers: dict[str, Callable[[], Any]] = {
        "plain": lambda: PlainOption(model),
        "plain-inference": lambda: PlainOption(model, torch.inference_mode),
        "plain-int8": lambda: PlainOption(int8(model)),
        "onnxruntime": lambda: OnnxOption(sm, tmp),
        "fast": lambda: FastOption(model, "exact"),
        "fast-cached": lambda: FastOption(model, "cached-sequence"),
    }
    made: dict[str, Any] = {}
    for name in names:
        try:
            made[name] = makers[name]()
        except Exception as exc:  # an option that cannot be built is reported, not fatal
            made[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
    return made


# ------------------------------------------------------------------------------------------ measurement
def time_options(options: dict[str, Any], feats: RequestFeatures, repeats: int) -> dict[str, list[float]]:
    """Wall ms of each option on the same request, in turns (warm-up excluded)."""
    for fn in options.values():
        for _ in range(3):
            fn(feats)
    times: dict[str, list[float]] = {n: [] for n in options}
    for _ in range(repeats):
        for name, fn in options.items():
            start = time.perf_counter()
            fn(feats)
            times[name].append((time.perf_counter() - start) * 1e3)
    return times


def test_features(sm: ServingModel, data: Path) -> FeatureSet:
    """The dataset's features with the run's split, vocabularies and dense statistics (as evaluation)."""
    art = sm.predictor.artifact
    return build_features(read_dataset(data), art.config.data, vocabs=art.vocabs, dense_stats=art.dense_stats)


def summary(ms: list[float]) -> dict[str, float]:
    return {"p50_ms": statistics.median(ms), "p99_ms": float(np.percentile(ms, 99)), "n": len(ms)}


def probabilities(sm: ServingModel, z: torch.Tensor) -> np.ndarray:
    return np.asarray(sm.predictor.calibrator(z.double().numpy()), np.float64)


# ---------------------------------------------------------------------------------------------- reports
def table(sm: ServingModel, options: dict[str, Any], feats: RequestFeatures, args: argparse.Namespace,
          fs: FeatureSet | None) -> tuple[list[str], dict[str, Any]]:  # fmt: skip
    runnable = {n: o for n, o in options.items() if not isinstance(o, str)}
    times = time_options(runnable, feats, args.repeats)
    ref_p = probabilities(sm, runnable["plain"](feats))
    auc_ref, rows, labels = None, None, None
    if fs is not None:
        rows = fs.rows("test", sm.task)
        labels = fs.labels(sm.task)[rows]
    lines = [
        "| option | ms per request (median) | p99 | speed vs plain | max abs delta p | delta AUC (test) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    results: dict[str, Any] = {}
    plain_p50 = statistics.median(times["plain"])
    for name, option in options.items():
        if isinstance(option, str):
            lines.append(f"| {name} | failed: {option} | | | | |")
            results[name] = {"error": option}
            continue
        s = summary(times[name])
        dp = float(np.abs(probabilities(sm, option(feats)) - ref_p).max())
        entry = s | {"speed_vs_plain": plain_p50 / s["p50_ms"], "max_abs_delta_p": dp}
        auc_text = "-"
        if fs is not None and rows is not None and labels is not None:
            if auc_ref is None:
                auc_ref = roc_auc(labels, runnable["plain"].rows(fs, rows))
            auc = roc_auc(labels, option.rows(fs, rows))
            entry |= {"auc": auc, "delta_auc": auc - auc_ref}
            auc_text = f"{auc - auc_ref:+.5f}"
        results[name] = entry
        lines.append(
            f"| {name} | {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | {plain_p50 / s['p50_ms']:.2f}x | "
            f"{dp:.1e} | {auc_text} |"
        )
    return lines, results


def curves(sm: ServingModel, catalog: Catalog, options: dict[str, Any], args: argparse.Namespace) -> tuple:
    runnable = {n: o for n, o in options.items() if not isinstance(o, str)}
    lines, results = [], {"candidates": [], "history": []}
    max_len = sm.online.max_len
    lines += [
        f"Latency vs candidates (window of {max_len} events per sequence), ms median / p99:",
        "",
        "| candidates | " + " | ".join(runnable) + " | fast speed-up |",
        "| ---: |" + " ---: |" * (len(runnable) + 1),
    ]
    for n in (100, 300, 600, 1000):
        t = time_options(runnable, request(sm, catalog, n, max_len, args.seed), args.repeats)
        row = {k: summary(v) for k, v in t.items()}
        results["candidates"].append({"candidates": n, **row})
        lines.append(_curve_row(str(n), row))
    lines += [
        "",
        f"Latency vs history (events in every sequence, {args.candidates} candidates), ms median / p99:",
        "",
        "| events | " + " | ".join(runnable) + " | fast speed-up |",
        "| ---: |" + " ---: |" * (len(runnable) + 1),
    ]
    for h in sorted({0, 10, 25, max_len}):
        t = time_options(runnable, request(sm, catalog, args.candidates, h, args.seed), args.repeats)
        row = {k: summary(v) for k, v in t.items()}
        results["history"].append({"history": h, **row})
        lines.append(_curve_row(str(h), row))
    return lines, results


def _curve_row(label: str, row: dict[str, dict[str, float]]) -> str:
    cells = " | ".join(f"{r['p50_ms']:.1f} / {r['p99_ms']:.1f}" for r in row.values())
    speed = (
        row["plain"]["p50_ms"] / row["fast"]["p50_ms"] if "plain" in row and "fast" in row else float("nan")
    )
    return f"| {label} | {cells} | {speed:.1f}x |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--candidates", type=int, default=600)
    ap.add_argument("--history", type=int, default=50, help="events in every sequence (capped by max_len)")
    ap.add_argument("--repeats", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--options", default=None, help=f"comma-separated, of {','.join(OPTIONS)}")
    ap.add_argument("--no-auc", action="store_true", help="skip the test-split AUC (faster)")
    ap.add_argument("--curves", action="store_true", help="latency vs candidates and vs history instead")
    ap.add_argument("--out", type=Path, default=Path("bench_out/scoring"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    default = CURVE_OPTIONS if args.curves else OPTIONS
    names = [o.strip() for o in (args.options or ",".join(default)).split(",") if o.strip()]
    if "plain" not in names or any(n not in OPTIONS for n in names):
        raise SystemExit(f"--options: some of {','.join(OPTIONS)}, plain included")
    catalog = Catalog.load(args.data)
    sm = ServingModel.load(args.run, catalog)
    history = min(args.history, sm.online.max_len)
    header = {
        "run": args.run.name,
        "candidates": args.candidates,
        "history": history,
        "repeats": args.repeats,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_avg_1m": os.getloadavg()[0],
    }
    with tempfile.TemporaryDirectory() as tmp:
        options = build_options(sm, names, Path(tmp))
        if args.curves:
            lines, results = curves(sm, catalog, options, args)
            title = f"# Scoring cost curves: {args.run.name}, {header['threads']} thread(s)"
        else:
            feats = request(sm, catalog, args.candidates, history, args.seed)
            fs = None if args.no_auc else test_features(sm, args.data)
            lines, results = table(sm, options, feats, args, fs)
            title = (
                f"# Scoring {len(feats.listing_ids)} candidates, {history} events per sequence: "
                f"{args.run.name}, {header['threads']} thread(s), {args.repeats} repeats in turns"
            )
    md = "\n".join([title, "", *lines, "", f"load average at start {header['load_avg_1m']:.2f}"]) + "\n"
    write_json(args.out.with_suffix(".json"), {"setup": header, "results": results})
    with atomic_file(args.out.with_suffix(".md")) as tmp_md:
        tmp_md.write_text(md)
    print(md)


if __name__ == "__main__":
    main()
