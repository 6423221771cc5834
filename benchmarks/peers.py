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
* ``adsformer-view`` -- ADPM restricted to the ``listing:view`` sequence (encoder and learned component),
  i.e. exactly the behaviour input the peers get;
* ``baseline`` -- the ranker without a user module;
* ``bst`` -- our Behavior Sequence Transformer user module on ``listing:view`` (not in the default list).

Peers, from FuxiCTR (``pip`` package ``fuxictr``, Apache-2.0):

* ``din`` -- ``model_zoo.LongCTR.DIN`` (Zhou et al. 2018, Deep Interest Network);
* ``transact`` -- ``model_zoo.LongCTR.TransAct`` (Xia et al. 2023, Pinterest's TransAct).

The fuxictr wheel ships its model zoo beside the core library, as the top-level package ``model_zoo``
(``model_zoo/LongCTR/{DIN,TransAct,DIEN,SIM,ETA,...}``); it has no BST. The peers' classes are used as
they are: their ``__init__`` / ``forward`` / ``train_step`` (their loss, their gradient clipping at 10).
Only fuxictr's data pipeline (``FeatureProcessor``, parquet files, ``LongCTRDataLoader``) is replaced: an
adapter (:class:`FuxiAdapter`) builds the ``FeatureMap`` and the ``(batch_dict, item_dict, mask)``
batches that ``LongCTRDataLoader`` would produce, straight from our :class:`FeatureSet`.

Installing the peers (optional; never a dependency of adsformer, and torch stays as it is)
------------------------------------------------------------------------------------------
::

    .venv/bin/pip install --no-deps fuxictr==2.3.10
    .venv/bin/pip install scikit-learn h5py          # fuxictr's light imports; neither pulls torch
    .venv/bin/python -c "import torch; print(torch.__version__)"   # still 2.13.0+cpu

fuxictr declares no torch requirement; ``--no-deps`` keeps out its ``ray[data]`` requirement (~80 MB, plus
a dozen packages), which only fuxictr's own preprocessing pipeline uses. When ``ray`` is absent, importing
the model zoo gets an import-only stand-in for it (see :func:`import_fuxictr`), removed right after; with
``ray`` installed nothing is stubbed. Without fuxictr the script still imports and runs our models
(``--models adsformer,baseline``) and says how to install the peers when they are asked for.

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
  :func:`~adsformer.training.calibration.correct_downsampling` with the training keep rate, then
  :func:`~adsformer.training.metrics.all_metrics`.
* Training examples/s = training rows processed / wall time of the training epochs (batch building,
  forward, backward and optimizer steps; validation excluded), as ``adsformer.training.loop.train`` does.
* Parameters = every parameter of the model (embedding tables included).

Matched inputs and sizes: the peers see the target listing as the query item (FuxiCTR ``source: item``,
embedding 32 like ours), the ``listing:view`` sequence with the same max length (chronological, left
padded, as fuxictr expects), the target's shop (16) and taxonomy (8), the query (16) and ``c_*`` (8)
embeddings of our ranker, and each standardized dense feature as a fuxictr ``numeric`` field (8). Their
deep towers are sized like ours (256, 128; TransAct's DCNv2 with 2 cross layers like our ranker; dropout
0.1). Ours also learns a position bias in training (dropped when scoring); the peers get no position.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import math
import os
import platform
import sys
import time
import types
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FUXICTR_VERSION = "2.3.10"
INSTALL_HINT = (
    f"pip install --no-deps fuxictr=={FUXICTR_VERSION} && pip install scikit-learn h5py "
    "(then check that `python -c 'import torch; print(torch.__version__)'` is unchanged)"
)
PEER_PAIR = "listing:view"
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
        (f"model.adpm.encoder.pair={PEER_PAIR}", f"model.adpm.learned.pairs=[{PEER_PAIR}]"),
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


# --------------------------------------------------------------------------- fuxictr import and adapter


@contextlib.contextmanager
def _ray_stand_in() -> Iterator[None]:
    """An import-only ``ray`` while fuxictr's package imports, when ray is not installed.

    ``fuxictr.preprocess.build_dataset`` imports ray at module level (fuxictr's parquet pipeline); the
    model zoo reaches it through ``fuxictr.pytorch.layers``. We never call that pipeline, so the names it
    imports only need to exist. The stand-in modules are removed from ``sys.modules`` afterwards.
    """
    if importlib.util.find_spec("ray") is not None:
        yield
        return
    ray = types.ModuleType("ray")
    data = types.ModuleType("ray.data")
    datasource = types.ModuleType("ray.data.datasource")
    provider = types.ModuleType("ray.data.datasource.filename_provider")

    class FilenameProvider:  # base class of fuxictr's SimpleFilenameProvider
        pass

    provider.FilenameProvider = FilenameProvider  # type: ignore[attr-defined]
    data.SaveMode = None  # type: ignore[attr-defined]
    data.TaskPoolStrategy = None  # type: ignore[attr-defined]
    datasource.filename_provider = provider  # type: ignore[attr-defined]
    data.datasource = datasource  # type: ignore[attr-defined]
    ray.data = data  # type: ignore[attr-defined]
    stubs = {m.__name__: m for m in (ray, data, datasource, provider)}
    sys.modules.update(stubs)
    try:
        yield
    finally:
        for name in stubs:
            sys.modules.pop(name, None)


def import_fuxictr() -> dict[str, Any]:
    """``{"version", "FeatureMap", "DIN", "TransAct"}``; SystemExit with the install command if missing."""
    if importlib.util.find_spec("fuxictr") is None or importlib.util.find_spec("model_zoo") is None:
        raise SystemExit(
            "the peer models need the optional package fuxictr (its wheel ships model_zoo/LongCTR): "
            f"{INSTALL_HINT}. To run only our models: --models adsformer,baseline"
        )
    try:
        with _ray_stand_in():
            import fuxictr
            from fuxictr.features import FeatureMap
            from model_zoo.LongCTR.DIN.DIN import DIN
            from model_zoo.LongCTR.TransAct.TransAct import TransAct
    except ImportError as err:
        raise SystemExit(
            f"fuxictr is installed but does not import ({err}); install: {INSTALL_HINT}"
        ) from err
    return {"version": fuxictr.__version__, "FeatureMap": FeatureMap, "DIN": DIN, "TransAct": TransAct}


class FuxiAdapter:
    """Our :class:`FeatureSet` as fuxictr LongCTR inputs: a ``FeatureMap`` and ``(batch_dict, item_dict,
    mask)`` batches, laid out as ``model_zoo/LongCTR/longctr_dataloader.py`` builds them.

    * ``batch_dict``: the label ``clicked`` and the context fields: ``shop`` / ``taxonomy`` of the target
      listing, ``query`` and ``c_*`` (categorical), one ``numeric`` field per dense feature;
    * ``item_dict``: ``{"listing": (B * (L + 1),)}``: per row the behaviour sequence (chronological,
      left padded with 0) followed by the target listing (fuxictr takes the last item as the target);
    * ``mask``: ``(B, L)`` float, 1 for real events.
    """

    LABEL = "clicked"
    ITEM = "listing"

    def __init__(self, fs: Any, ranker_cfg: Any, pair: str = PEER_PAIR) -> None:
        if pair not in fs.sequences:
            raise ValueError(
                f"sequence pair {pair!r} is not built for this dataset; have {list(fs.sequences)}"
            )
        self.fs, self.pair = fs, pair
        rc = ranker_cfg
        spec: OrderedDict[str, dict[str, Any]] = OrderedDict()
        for entity in ("shop", "taxonomy"):
            spec[entity] = self._cat(fs.vocabs[entity].size, rc.target_dim(entity))
        for name in fs.categorical:
            dim = rc.query_dim if name == "query" else rc.categorical_dim
            spec[name] = self._cat(fs.vocabs[name].size, dim)
        self.dense_fields = [f"dense_{name}" for name in fs.dense_names]
        for field in self.dense_fields:
            spec[field] = {"type": "numeric", "source": "context", "embedding_dim": rc.categorical_dim}
        spec[self.ITEM] = self._cat(fs.vocabs["listing"].size, rc.listing_dim, source="item")
        self.spec = spec
        self.listing_dim = rc.listing_dim

    @staticmethod
    def _cat(vocab_size: int, dim: int, source: str = "context") -> dict[str, Any]:
        return {
            "type": "categorical",
            "source": source,
            "vocab_size": int(vocab_size),
            "embedding_dim": int(dim),
            "padding_idx": 0,
        }

    def feature_map(self, FeatureMap: type) -> Any:
        fm = FeatureMap("adsformer_peers", data_dir="")
        fm.labels = [self.LABEL]
        fm.default_emb_dim = self.listing_dim
        fm.features = OrderedDict((k, dict(v)) for k, v in self.spec.items())
        fm.num_fields = fm.get_num_fields()
        fm.total_features = sum(v.get("vocab_size", 1) for v in fm.features.values())
        fm.set_column_index()
        return fm

    def batch(self, rows: np.ndarray) -> tuple[dict[str, Any], dict[str, Any], Any]:
        import torch

        fs = self.fs
        rows = np.asarray(rows, dtype=np.int64)
        batch_dict: dict[str, torch.Tensor] = {
            self.LABEL: torch.from_numpy(fs.clicked[rows].astype(np.float32))
        }
        for entity in ("shop", "taxonomy"):
            batch_dict[entity] = torch.from_numpy(fs.target[entity][rows].astype(np.int64))
        for name, values in fs.categorical.items():
            batch_dict[name] = torch.from_numpy(values[rows].astype(np.int64))
        if self.dense_fields:
            dense = fs.dense[rows]
            for j, field in enumerate(self.dense_fields):
                batch_dict[field] = torch.from_numpy(np.ascontiguousarray(dense[:, j]))
        ids, lengths = fs.sequences[self.pair].padded(rows, trim=True)  # newest first, right padded; L >= 1
        seq = ids[:, ::-1]  # chronological (oldest .. newest), left padded: fuxictr's padding="pre"
        width = seq.shape[1]
        mask = (np.arange(width)[None, :] >= width - lengths[:, None]).astype(np.float32)
        items = np.concatenate([seq, fs.target["listing"][rows, None]], axis=1).astype(np.int64).reshape(-1)
        return batch_dict, {self.ITEM: torch.from_numpy(items)}, torch.from_numpy(mask)


def build_peer(name: str, fuxi: dict[str, Any], adapter: FuxiAdapter, lr: float, seed: int) -> Any:
    """The peer model, dimensioned like our ranker (see the module docstring)."""
    import torch

    torch.manual_seed(seed)
    common = {
        "feature_map": adapter.feature_map(fuxi["FeatureMap"]),
        "gpu": -1,
        "learning_rate": lr,
        "embedding_dim": adapter.listing_dim,
        "net_dropout": 0.1,
        # BaseModel's bookkeeping keywords (no checkpoint is written: fit() is not used)
        "optimizer": "adam",
        "loss": "binary_crossentropy",
        "metrics": ["AUC", "logloss"],
        "verbose": 0,
        "model_root": "unused",
    }
    with warnings.catch_warnings():
        # torch notes that its nested-tensor fast path is off for an odd head count (TransAct's 1 head)
        warnings.filterwarnings("ignore", message="enable_nested_tensor is True")
        model = _construct(name, fuxi, common)
    model._max_gradient_norm = 10.0  # fuxictr's fit() default, read by train_step
    return model


def _construct(name: str, fuxi: dict[str, Any], common: dict[str, Any]) -> Any:
    if name == "din":
        return fuxi["DIN"](
            dnn_hidden_units=[256, 128],
            attention_hidden_units=[64],
            attention_hidden_activations="Dice",
            din_use_softmax=False,
            **common,
        )
    if name == "transact":
        return fuxi["TransAct"](
            dcn_cross_layers=2,
            dcn_hidden_units=[256, 128],
            mlp_hidden_units=[],
            num_heads=1,
            transformer_layers=1,
            dim_feedforward=256,
            first_k_cols=1,
            concat_max_pool=True,
            **common,
        )
    raise ValueError(f"unknown peer {name!r}")


# --------------------------------------------------------------------------- training and scoring


def _peer_predict(model: Any, adapter: FuxiAdapter, rows: np.ndarray, batch_size: int) -> np.ndarray:
    import torch

    was_training = model.training
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, rows.size, batch_size):
            y = model.forward(adapter.batch(rows[start : start + batch_size]))["y_pred"]
            out.append(y.reshape(-1).numpy().astype(np.float64))
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros(0)


def train_peer(model: Any, adapter: FuxiAdapter, train_cfg: Any, seed: int) -> dict[str, Any]:
    """The peer's own ``train_step`` driven by the same protocol as ``adsformer.training.loop.train``."""
    import torch

    from adsformer.training.calibration import correct_downsampling
    from adsformer.training.loop import cosine_lr, resolve_batch_size
    from adsformer.training.metrics import log_loss, roc_auc

    fs = adapter.fs
    if train_cfg.threads:
        torch.set_num_threads(train_cfg.threads)
    torch.manual_seed(seed)
    train_rows, val_rows = fs.rows("train", "ctr"), fs.rows("val", "ctr")
    batch_size = resolve_batch_size(train_cfg.batch_size, train_rows.size)
    total = math.ceil(train_rows.size / batch_size) * train_cfg.epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(
        model.optimizer, lambda s: cosine_lr(s, total, train_cfg.min_lr_ratio)
    )
    keep_rate = float(fs.info["neg_keep_rate"])
    val_labels = fs.labels("ctr")[val_rows]
    eval_bs = min(train_cfg.eval_batch_size, 8192)
    examples, seconds, best, best_epoch, best_state, epochs = 0, 0.0, -math.inf, 0, None, []
    for epoch in range(train_cfg.epochs):
        model.train()
        start, running, seen = time.perf_counter(), 0.0, 0
        order = train_rows[np.random.default_rng(seed * 1000 + epoch).permutation(train_rows.size)]
        for index, lo in enumerate(range(0, order.size, batch_size)):
            batch = adapter.batch(order[lo : lo + batch_size])
            model._batch_index = index
            loss = model.train_step(batch)
            schedule.step()
            n = int(batch[2].shape[0])
            running += float(loss.detach()) * n
            seen += n
        seconds += time.perf_counter() - start
        examples += seen
        val_pred = correct_downsampling(_peer_predict(model, adapter, val_rows, eval_bs), keep_rate)
        record = {
            "epoch": epoch,
            "train_loss": running / max(seen, 1),
            "val_log_loss": log_loss(val_labels, val_pred),
            "val_roc_auc": roc_auc(val_labels, val_pred),
        }
        epochs.append(record)
        score = record["val_roc_auc"] if np.isfinite(record["val_roc_auc"]) else -record["val_log_loss"]
        if score > best:
            best, best_epoch, best_state = score, epoch, copy.deepcopy(model.state_dict())
    if best_state is not None:
        model.load_state_dict(best_state)
    return {"train_examples": examples, "train_seconds": seconds, "best_epoch": best_epoch, "epochs": epochs}


def score(fs: Any, p_raw: np.ndarray, ece_bins: int) -> dict[str, Any]:
    """Test metrics at the natural rate: every model's CTR goes through the same correction."""
    from adsformer.training.calibration import correct_downsampling
    from adsformer.training.metrics import all_metrics

    rows = fs.rows("test", "ctr")
    p = correct_downsampling(p_raw, float(fs.info["neg_keep_rate"]))
    return {"n_test": int(rows.size), **all_metrics(fs.labels("ctr")[rows], p, ece_bins)}


def run_ours(entry: ModelEntry, fs: Any, base: list[str], seed: int) -> dict[str, Any]:
    from adsformer.experiments.config import load_experiment
    from adsformer.experiments.runs import fit
    from adsformer.training.loop import predict

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
        "epochs": [{k: v for k, v in e.items() if k != "step"} for e in result.epochs],
    }


def run_peer(
    entry: ModelEntry, fs: Any, fuxi: dict[str, Any], cfg: Any, seed: int, adapter: FuxiAdapter
) -> dict[str, Any]:
    model = build_peer(entry.name, fuxi, adapter, cfg.train.lr, seed)
    result = train_peer(model, adapter, cfg.train, seed)
    rows = fs.rows("test", "ctr")
    p = _peer_predict(model, adapter, rows, min(cfg.train.eval_batch_size, 8192))
    return {
        **score(fs, p, cfg.eval.ece_bins),
        "parameters": int(sum(q.numel() for q in model.parameters())),
        **result,
        "train_examples_per_s": result["train_examples"] / result["train_seconds"]
        if result["train_seconds"]
        else 0.0,
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
    from adsformer.data.schema import read_dataset
    from adsformer.experiments.config import load_experiment
    from adsformer.io import atomic_file, write_json

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
        "neg_keep_rate": float(fs.info["neg_keep_rate"]),
        "pairs": fs.info["pairs"],
        "peer_pair": PEER_PAIR,
        "max_len": int(fs.info["max_len"]),
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
