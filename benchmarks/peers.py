"""Benchmark: our CTR models against established peers, trained on exactly our split and features.

    python benchmarks/peers.py --data DIR [--epochs 2] [--batch-size 1024] [--seeds 1]
        [--models adsformer,adsformer-view,baseline,din,transact] [--out bench_out/peers] [--set KEY=VALUE ...]

``DIR`` is a canonical dataset directory (``adsformer prepare simulate --scale demo --out DIR`` or
``adsformer prepare taobao-userbehavior UserBehavior.csv --out DIR``). Writes ``OUT.json`` and ``OUT.md``
(atomically) and prints the Markdown table.

Models
------
Ours (``adsformer``; the DCN ranker with a user module):

* ``adsformer`` -- ADPM over every (entity, action) sequence the data has (the default configuration);
* ``adsformer-view`` -- ADPM restricted to the ``listing:view`` sequence (encoder, learned component and
  touch signals), i.e. exactly the behaviour input the peers get;
* ``baseline`` -- the ranker without a user module;
* ``bst`` -- our Behavior Sequence Transformer user module on ``listing:view`` (not in the default list).

Peers, from FuxiCTR (``pip`` package ``fuxictr``, Apache-2.0):

* ``din`` -- ``model_zoo.LongCTR.DIN`` (Zhou et al. 2018, Deep Interest Network);
* ``transact`` -- ``model_zoo.LongCTR.TransAct`` (Xia et al. 2023, Pinterest's TransAct).

The peers, their adapter from our :class:`FeatureSet` to fuxictr's inputs and their training loop live in
:mod:`adsformer.experiments.peers` (the ``DIN`` / ``TransAct`` rows of ``adsformer ablate`` use the same
code); this script adds our models, several seeds and the report.

Installing the peers (optional; never a dependency of adsformer, and torch stays as it is)
------------------------------------------------------------------------------------------
::

    .venv/bin/pip install --no-deps fuxictr==2.3.10
    .venv/bin/pip install -e ".[peers]"          # fuxictr's light imports: scikit-learn h5py tqdm pandas
    .venv/bin/python -c "import torch; print(torch.__version__)"   # still 2.13.0+cpu

Without fuxictr the script still imports and runs our models (``--models adsformer,baseline``) and says
how to install the peers when they are asked for.

Protocol (identical for every model)
------------------------------------
* One :class:`FeatureSet` (``build_features`` with the experiment's data config): the same time split,
  vocabularies (fit on training data only) and negative down-sampling of the training split.
* Training on ``fs.rows("train")``: the same rows, the same epochs and batch size, the same shuffling order
  per epoch (``seed * 1000 + epoch``), the same learning rate and cosine decay; after each epoch the
  validation ROC-AUC (natural rate) is computed and the best epoch's weights are kept. Optimizers are each
  side's own: ours is ``adsformer.training.loop.train`` (Adam, plus lazy Adam for the id tables while
  ``train.sparse_embeddings`` is on, its default); the peers step through their own ``train_step``: one
  dense Adam over every parameter (fuxictr's ``compile``) with gradient-norm clipping at 10 (sparse
  gradients cannot go through fuxictr's clipping). ``--set train.sparse_embeddings=false`` gives ours
  dense Adam too.
* Test on ``fs.rows("test")`` at the natural click rate; every model's predicted CTR goes through
  :func:`~adsformer.run.calibration.correct_downsampling` with the training keep rate, then
  :func:`~adsformer.training.metrics.all_metrics`.
* Training examples/s = training rows processed / wall time of the training epochs (batch building,
  forward, backward and optimizer steps; validation excluded), as ``adsformer.training.loop.train`` does.
* Parameters = every parameter of the model (embedding tables included).

Matched inputs and sizes: the peers see the target listing as the query item (FuxiCTR ``source: item``,
embedding 32 like ours), the ``listing:view`` sequence with the same max length (chronological, left
padded, as fuxictr expects), the target's shop (16) and taxonomy (8), the query (16) and ``c_*`` (8)
embeddings of our ranker, and each standardized dense feature as a fuxictr ``numeric`` field (8). Their
deep towers are sized like ours (``model.ranker.deep``: 256, 128; TransAct's DCNv2 with
``model.ranker.cross_layers``: 2, like our ranker; dropout ``model.ranker.dropout``: 0.1). Ours also learns
a position bias in training (dropped when scoring); the peers get no position.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from adsformer.experiments.peers import (
    FUXICTR_VERSION,
    INSTALL_HINT,
    PEER_PAIR,
    FuxiAdapter,
    PeersUnavailableError,
    build_peer,
    peer_predict,
    train_peer,
)
from adsformer.experiments.peers import import_fuxictr as _import_fuxictr

__all__ = ["INSTALL_HINT", "MODELS", "FuxiAdapter", "build_peer", "import_fuxictr", "main"]

DEFAULT_MODELS = ("adsformer", "adsformer-view", "baseline", "din", "transact")


@dataclass(frozen=True)
class ModelEntry:
    name: str
    kind: str  # "ours" | "peer"
    user: str = ""  # ours: model.user
    overrides: tuple[str, ...] = ()  # ours: extra --set overrides
    peer: str = ""  # peer: class name in model_zoo.LongCTR
    description: str = ""


MODELS: dict[str, ModelEntry] = {
    "adsformer": ModelEntry(
        "adsformer", "ours", "adsformer", description="adsformer: DCN ranker + ADPM over all sequences"
    ),
    "adsformer-view": ModelEntry(
        "adsformer-view",
        "ours",
        "adsformer",
        (
            f"model.adpm.encoder.pair={PEER_PAIR}",
            f"model.adpm.learned.pairs=[{PEER_PAIR}]",
            f"model.adpm.touch.pairs=[{PEER_PAIR}]",  # touch signals of the peers' sequence alone
        ),
        description=f"adsformer: DCN ranker + ADPM over {PEER_PAIR} only",
    ),
    "baseline": ModelEntry(
        "baseline", "ours", "baseline", description="adsformer: DCN ranker, no user module"
    ),
    "bst": ModelEntry("bst", "ours", "bst", description=f"adsformer: DCN ranker + BST over {PEER_PAIR}"),
    "din": ModelEntry("din", "peer", peer="DIN", description=f"fuxictr {FUXICTR_VERSION} DIN"),
    "transact": ModelEntry(
        "transact", "peer", peer="TransAct", description=f"fuxictr {FUXICTR_VERSION} TransAct"
    ),
}


# --------------------------------------------------------------------------- fuxictr and the peers


def import_fuxictr() -> dict[str, Any]:
    """:func:`adsformer.experiments.peers.import_fuxictr`; SystemExit with the install command if missing."""
    try:
        return _import_fuxictr()
    except PeersUnavailableError as err:
        raise SystemExit(f"{err}. To run only our models: --models adsformer,baseline") from err


# --------------------------------------------------------------------------- scoring


def score(fs: Any, p_raw: np.ndarray, ece_bins: int) -> dict[str, Any]:
    """Test metrics at the natural rate: every model's CTR goes through the same correction."""
    from adsformer.run.calibration import correct_downsampling
    from adsformer.training.metrics import all_metrics

    rows = fs.rows("test", "ctr")
    p = correct_downsampling(p_raw, fs.info.neg_keep_rate)
    return {"n_test": int(rows.size), **all_metrics(fs.labels("ctr")[rows], p, ece_bins)}


def run_ours(entry: ModelEntry, fs: Any, base: list[str], seed: int) -> dict[str, Any]:
    from adsformer.experiments.runs import fit
    from adsformer.run.config import load_experiment
    from adsformer.run.scoring import predict

    cfg = load_experiment(
        None, [*base, *entry.overrides, f"seed={seed}"], extra={"task": "ctr", "model": entry.user}
    )
    model, result = fit(cfg, fs, show_progress=False)
    rows = fs.rows("test", "ctr")
    p = predict(model, fs, rows, task="ctr", batch_size=cfg.train.eval_batch_size)
    return {
        **score(fs, p, cfg.eval.ece_bins),
        "parameters": int(sum(q.numel() for q in model.parameters())),
        "train_examples": result.train_examples,
        "train_seconds": result.train_seconds,
        "train_examples_per_s": result.examples_per_s,
        "best_epoch": result.best_epoch,
        "epochs": [{k: v for k, v in e.to_dict().items() if k != "step"} for e in result.epochs],
    }


def run_peer(
    entry: ModelEntry, fs: Any, fuxi: dict[str, Any], cfg: Any, seed: int, adapter: FuxiAdapter
) -> dict[str, Any]:
    model = build_peer(entry.name, fuxi, adapter, cfg.train.lr, seed)
    result = train_peer(model, adapter, dataclasses.replace(cfg.train, seed=seed))
    rows = fs.rows("test", "ctr")
    p = peer_predict(model, adapter, rows, cfg.train.eval_batch_size)
    return {
        **score(fs, p, cfg.eval.ece_bins),
        "parameters": int(sum(q.numel() for q in model.parameters())),
        "train_examples": result.train_examples,
        "train_seconds": result.train_seconds,
        "train_examples_per_s": result.examples_per_s,
        "best_epoch": result.best_epoch,
        "epochs": [{k: v for k, v in e.to_dict().items() if k != "step"} for e in result.epochs],
    }


# --------------------------------------------------------------------------- report

METRICS = ("roc_auc", "pr_auc", "log_loss", "train_examples_per_s", "parameters")


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    out = {}
    for key in (*METRICS, "ece", "nce"):
        arr = np.asarray([r[key] for r in runs], dtype=np.float64)
        out[key] = {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if arr.size > 1 else 0.0}
    return out


def _cell(stat: dict[str, float], digits: int, seeds: int) -> str:
    text = f"{stat['mean']:.{digits}f}"
    return f"{text} ± {stat['std']:.{digits}f}" if seeds > 1 else text


def markdown(report: dict[str, Any]) -> str:
    s = report["setup"]
    seeds = s["seeds"]
    lines = [
        f"# Peers benchmark: {s['dataset']}",
        "",
        f"CTR; train {s['n_train']:,} rows (negatives kept at rate {s['neg_keep_rate']}), test {s['n_test']:,} "
        f"rows at the natural rate (base CTR {s['test_base_rate']:.4f}); {s['epochs']} epoch(s), batch "
        f"{s['batch_size']}, lr {s['lr']}, {seeds} seed(s){' (mean ± std)' if seeds > 1 else ''}; peers' "
        f"sequence {s['peer_pair']} (max length {s['max_len']}); torch {s['torch']} on {s['threads']} "
        f"thread(s) ({s['cpu_count']} cores); fuxictr {s['fuxictr'] or 'not used'}.",
        "",
        "| model | code | ROC-AUC | PR-AUC | log loss | train examples/s | parameters |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    loads = [x for row in report["models"].values() for r in row["runs"] for x in r["load_avg_1m"]]
    for name, row in report["models"].items():
        m = row["summary"]
        lines.append(
            f"| {name} | {row['description']} | {_cell(m['roc_auc'], 4, seeds)} | "
            f"{_cell(m['pr_auc'], 4, seeds)} | {_cell(m['log_loss'], 4, seeds)} | "
            f"{m['train_examples_per_s']['mean']:,.0f} | {int(m['parameters']['mean']):,} |"
        )
    if loads and max(loads) > (s["cpu_count"] or 1) + 1:  # this run itself keeps ~threads busy
        lines += [
            "",
            f"Note: other processes shared the machine (1-minute load average up to {max(loads):.1f} on "
            f"{s['cpu_count']} cores), so the examples/s are lower than on an idle machine and noisier "
            "between models; see `load_avg_1m` per run in the JSON.",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="canonical dataset directory")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--seeds", type=int, default=1, help="train each model with seeds 0 .. N-1")
    ap.add_argument("--models", default=",".join(DEFAULT_MODELS), help=f"comma list of {sorted(MODELS)}")
    ap.add_argument("--out", type=Path, default=Path("bench_out/peers"), help="writes OUT.json and OUT.md")
    ap.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="experiment config override for every model and the features (e.g. max_len=20)",
    )  # fmt: skip
    args = ap.parse_args(argv)

    names = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in names if m not in MODELS]
    if unknown or not names:
        raise SystemExit(f"unknown model(s) {unknown}; expected some of {sorted(MODELS)}")
    entries = [MODELS[m] for m in names]
    fuxi = import_fuxictr() if any(e.kind == "peer" for e in entries) else None

    import torch

    from adsformer.data.features import build_features
    from adsformer.data.validate import read_dataset
    from adsformer.io import atomic_file, write_json
    from adsformer.run.config import load_experiment

    # every epoch, as the peers run them: no early stopping (patience = epochs)
    base = [
        f"epochs={args.epochs}",
        f"patience={args.epochs}",
        f"batch_size={args.batch_size}",
        *args.overrides,
    ]
    cfg = load_experiment(None, base, extra={"task": "ctr", "model": "adsformer"})
    started = time.perf_counter()
    ds = read_dataset(args.data)
    t = time.perf_counter()
    fs = build_features(ds, cfg.data)
    features_s = time.perf_counter() - t
    adapter = FuxiAdapter(fs, cfg.model.ranker) if fuxi else None
    test_rows = fs.rows("test", "ctr")
    setup = {
        "dataset": ds.meta.name,
        "data_dir": str(args.data),
        "n_train": int(fs.rows("train", "ctr").size),
        "n_val": int(fs.rows("val", "ctr").size),
        "n_test": int(test_rows.size),
        "test_base_rate": float(fs.clicked[test_rows].mean()),
        "neg_keep_rate": fs.info.neg_keep_rate,
        "pairs": list(fs.info.pairs),
        "peer_pair": PEER_PAIR,
        "max_len": fs.info.max_len,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": cfg.train.lr,
        "optimizer_ours": "Adam + SparseAdam (id tables)"
        if getattr(cfg.train, "sparse_embeddings", False)
        else "Adam",
        "optimizer_peers": "Adam (fuxictr compile), grad-norm clip 10",
        "seeds": args.seeds,
        "overrides": args.overrides,
        "features_seconds": features_s,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "fuxictr": fuxi["version"] if fuxi else None,
        "python": platform.python_version(),
    }
    print(
        f"{setup['dataset']}: {setup['n_train']:,} train / {setup['n_val']:,} val / {setup['n_test']:,} test "
        f"rows; features in {features_s:.1f} s",
        flush=True,
    )
    models: dict[str, Any] = {}
    for entry in entries:
        runs = []
        for seed in range(args.seeds):
            t, load_before = time.perf_counter(), os.getloadavg()[0]
            if entry.kind == "ours":
                run = run_ours(entry, fs, base, seed)
            else:
                assert fuxi is not None and adapter is not None
                run = run_peer(entry, fs, fuxi, cfg, seed, adapter)
            run["seed"] = seed
            run["wall_seconds"] = time.perf_counter() - t
            # other processes on the machine slow the training epochs: the 1-minute load average around
            # each run says how much (compare it with the core count)
            run["load_avg_1m"] = [load_before, os.getloadavg()[0]]
            runs.append(run)
            print(
                f"  {entry.name:15s} seed {seed}: ROC-AUC {run['roc_auc']:.4f}  PR-AUC {run['pr_auc']:.4f}  "
                f"log loss {run['log_loss']:.4f}  {run['train_examples_per_s']:,.0f} ex/s  "
                f"{run['parameters']:,} params  (best epoch {run['best_epoch']}, {time.perf_counter() - t:.0f} s)",
                flush=True,
            )
        models[entry.name] = {
            "description": entry.description,
            "kind": entry.kind,
            "summary": summarize(runs),
            "runs": runs,
        }
    setup["wall_seconds"] = time.perf_counter() - started
    report = {"setup": setup, "models": models}
    md = markdown(report)
    out = args.out
    json_path, md_path = out.with_suffix(".json"), out.with_suffix(".md")
    write_json(json_path, report)
    with atomic_file(md_path) as tmp:
        tmp.write_text(md)
    print()
    print(md)
    print(f"wrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
