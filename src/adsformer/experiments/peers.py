"""Established peers trained on exactly our split and features: FuxiCTR's DIN and TransAct.

The ablation rows ``DIN`` and ``TransAct`` (every suite) and ``benchmarks/peers.py`` use this module.

Peers, from FuxiCTR (``pip`` package ``fuxictr``, Apache-2.0), optional:

* ``din`` -- ``model_zoo.LongCTR.DIN`` (Zhou et al. 2018, Deep Interest Network);
* ``transact`` -- ``model_zoo.LongCTR.TransAct`` (Xia et al. 2023, Pinterest's TransAct).

The fuxictr wheel ships its model zoo beside the core library, as the top-level package ``model_zoo``
(``model_zoo/LongCTR/{DIN,TransAct,DIEN,SIM,ETA,...}``). The peers' classes are used as they are: their
``__init__`` / ``forward`` / ``train_step`` (their loss, their gradient clipping at 10, their dense Adam).
Only fuxictr's data pipeline (``FeatureProcessor``, parquet files, ``LongCTRDataLoader``) is replaced: an
adapter (:class:`FuxiAdapter`) builds the ``FeatureMap`` and the ``(batch_dict, item_dict, mask)``
batches that ``LongCTRDataLoader`` would produce, straight from our :class:`FeatureSet`.

Installing the peers (never a dependency of adsformer; torch stays as it is)::

    pip install --no-deps fuxictr==2.3.10
    pip install "adsformer[peers]"     # fuxictr's light imports: scikit-learn, h5py, tqdm, pandas

``--no-deps`` keeps out fuxictr's ``ray[data]`` requirement (~80 MB, plus a dozen packages), which only
fuxictr's own preprocessing pipeline uses. When ``ray`` is absent, importing the model zoo gets an
import-only stand-in for it (see :func:`import_fuxictr`), removed right after; with ``ray`` installed
nothing is stubbed. Without fuxictr this module still imports: :func:`peers_unavailable` says why the peers
cannot run, :func:`import_fuxictr` raises :class:`PeersUnavailableError` with the install command.

Protocol (:func:`train_peer`, the same as :func:`adsformer.training.loop.train`): training on the task's
training rows, up to ``train.epochs`` epochs with the same batch size (``batch_size=0``: the same automatic
choice), the same shuffling order per epoch (``seed * 1000 + epoch``), the same learning rate and cosine
decay; after each epoch the validation ``monitor`` (natural rate) is measured, training stops early after
``patience`` epochs without improvement, the best epoch's weights are restored and its validation logits
fit the Platt calibrator. The peers' optimizer is their own (fuxictr's ``compile``: one dense Adam, no
sparse id-table updates); the task's weight decay (``train.weight_decay``, by task when unset) reaches them
as fuxictr's ``net_regularizer``.

Matched inputs and sizes: the peers see the target listing as the query item (FuxiCTR ``source: item``,
embedding ``model.ranker.listing_dim`` like ours), the ``listing:view`` sequence with the same max length
(chronological, left padded, as fuxictr expects), the target's shop and taxonomy, the query and ``c_*``
embeddings of our ranker, and each standardized dense feature as a fuxictr ``numeric`` field. Their deep
towers are sized like our ranker's (``model.ranker.deep``; TransAct's DCNv2 with
``model.ranker.cross_layers``; dropout ``model.ranker.dropout``). They have no position tower.

Letters: B batch rows, L sequence length, R rows scored.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib.util
import math
import sys
import time
import types
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import numpy as np

from adsformer.config import ConfigError
from adsformer.data.features import MERGED_PAIR, FeatureSet, choose_listing_pair

FUXICTR_VERSION = "2.3.10"
INSTALL_HINT = (
    f'pip install --no-deps fuxictr=={FUXICTR_VERSION} && pip install "adsformer[peers]" '
    "(= scikit-learn h5py tqdm pandas; torch stays as it is)"
)
PEER_PAIR = "listing:view"


def peer_pair(fs: FeatureSet) -> str | None:
    """The listing sequence the peers read: ``listing:view``, else (as our ``auto`` encoder pair, but never
    the merged sequence, whose ids pack actions) the listing sequence with the most events; None when the
    data has no listing sequence."""
    counts = {p: c.values.shape[0] for p, c in fs.sequences.items() if p != MERGED_PAIR}
    try:
        return choose_listing_pair("auto", counts)
    except ValueError:
        return None


#: peer name -> its class in ``model_zoo.LongCTR``
PEERS: dict[str, str] = {"din": "DIN", "transact": "TransAct"}
#: scoring batches: B * (L + 1) item ids go through the embedding at once
MAX_EVAL_BATCH = 8192


class PeersUnavailableError(ConfigError):
    """fuxictr (the peers' package) is missing or does not import; the message names the install command."""


# --------------------------------------------------------------------------- fuxictr import


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


@functools.cache
def _import_fuxictr() -> dict[str, Any]:
    if importlib.util.find_spec("fuxictr") is None or importlib.util.find_spec("model_zoo") is None:
        raise PeersUnavailableError(
            f"the peers (DIN, TransAct) need the optional package fuxictr, not installed: {INSTALL_HINT}"
        )
    try:
        with _ray_stand_in():
            import fuxictr
            from fuxictr.features import FeatureMap
            from model_zoo.LongCTR.DIN.DIN import DIN
            from model_zoo.LongCTR.TransAct.TransAct import TransAct
    except ImportError as err:
        raise PeersUnavailableError(
            f"the peers' package fuxictr is installed but does not import ({err}): {INSTALL_HINT}"
        ) from err
    return {"version": fuxictr.__version__, "FeatureMap": FeatureMap, "DIN": DIN, "TransAct": TransAct}


def import_fuxictr() -> dict[str, Any]:
    """``{"version", "FeatureMap", "DIN", "TransAct"}``; :class:`PeersUnavailableError` (one line naming the
    install command) when fuxictr is missing or does not import."""
    return _import_fuxictr()


def peers_unavailable() -> str | None:
    """Why the peers cannot run here (with the install command), or None when fuxictr imports."""
    try:
        import_fuxictr()
    except PeersUnavailableError as err:
        return str(err)
    return None


# --------------------------------------------------------------------------- adapter and models


class FuxiAdapter:
    """Our :class:`FeatureSet` as fuxictr LongCTR inputs: a ``FeatureMap`` and ``(batch_dict, item_dict,
    mask)`` batches, laid out as ``model_zoo/LongCTR/longctr_dataloader.py`` builds them.

    * ``batch_dict``: the label (``task``'s: clicked or purchased) and the context fields: ``shop`` /
      ``taxonomy`` of the target listing, ``query`` and ``c_*`` (categorical), one ``numeric`` field per
      dense feature;
    * ``item_dict``: ``{"listing": (B * (L + 1),)}``: per row the behaviour sequence (chronological,
      left padded with 0) followed by the target listing (fuxictr takes the last item as the target);
    * ``mask``: ``(B, L)`` float, 1 for real events.
    """

    LABEL = "clicked"
    ITEM = "listing"

    def __init__(self, fs: FeatureSet, ranker_cfg: Any, pair: str | None = None, task: str = "ctr") -> None:
        pair = pair or peer_pair(fs) or PEER_PAIR
        if pair not in fs.sequences:
            raise ConfigError(
                f"the peers need the sequence {pair!r}, not built for this dataset; have {list(fs.sequences)}"
            )
        self.fs, self.pair, self.task, self.ranker = fs, pair, task, ranker_cfg
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
            self.LABEL: torch.from_numpy(fs.labels(self.task)[rows].astype(np.float32))
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


def build_peer(
    name: str,
    fuxi: dict[str, Any],
    adapter: FuxiAdapter,
    lr: float,
    seed: int,
    *,
    gpu: int = -1,
    weight_decay: float = 0.0,
) -> Any:
    """The peer model ``name`` (``din`` | ``transact``), dimensioned like our ranker (module docstring),
    with ``weight_decay`` as fuxictr's ``net_regularizer`` (an L2 term ``wd / 2 |w|^2`` on the non-embedding
    parameters: the same gradient as our Adam's weight decay)."""
    import torch

    if name not in PEERS:
        raise ConfigError(f"unknown peer {name!r}; expected one of {sorted(PEERS)}")
    torch.manual_seed(seed)
    common = {
        "feature_map": adapter.feature_map(fuxi["FeatureMap"]),
        "gpu": gpu,
        "learning_rate": lr,
        "embedding_dim": adapter.listing_dim,
        "net_dropout": float(adapter.ranker.dropout),
        "net_regularizer": float(weight_decay) if weight_decay > 0 else None,
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
        model = _construct(name, fuxi, adapter.ranker, common)
    model._max_gradient_norm = 10.0  # fuxictr's fit() default, read by train_step
    return model


def _construct(name: str, fuxi: dict[str, Any], rc: Any, common: dict[str, Any]) -> Any:
    deep = [int(u) for u in rc.deep]
    if name == "din":
        return fuxi["DIN"](
            dnn_hidden_units=deep,
            attention_hidden_units=[64],
            attention_hidden_activations="Dice",
            din_use_softmax=False,
            **common,
        )
    return fuxi["TransAct"](
        dcn_cross_layers=int(rc.cross_layers),
        dcn_hidden_units=deep,
        mlp_hidden_units=[],
        num_heads=1,
        transformer_layers=1,
        dim_feedforward=256,
        first_k_cols=1,
        concat_max_pool=True,
        **common,
    )


def peer_predict(model: Any, adapter: FuxiAdapter, rows: np.ndarray, batch_size: int) -> np.ndarray:
    """The peer's probabilities (R,) float64 for ``rows`` (in order), before any correction."""
    import torch

    was_training = model.training
    model.eval()
    out = []
    batch_size = max(1, min(batch_size, MAX_EVAL_BATCH))
    with torch.no_grad():
        for start in range(0, rows.size, batch_size):
            y = model.forward(adapter.batch(rows[start : start + batch_size]))["y_pred"]
            out.append(y.reshape(-1).cpu().numpy().astype(np.float64))
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros(0)


def peer_logits(model: Any, adapter: FuxiAdapter, rows: np.ndarray, batch_size: int) -> np.ndarray:
    """The peer's logits (R,) float64 for ``rows``: its sigmoid outputs mapped back (clipped to 1e-7)."""
    p = np.clip(peer_predict(model, adapter, rows, batch_size), 1e-7, 1 - 1e-7)
    return np.log(p) - np.log1p(-p)


# --------------------------------------------------------------------------- training


def peer_gpu(device: str) -> int:
    """fuxictr's ``gpu`` argument for ``train.device``: 0 for cuda (or auto with a GPU), else -1 (CPU)."""
    import torch

    return 0 if device in ("cuda", "auto") and torch.cuda.is_available() else -1


def train_peer(model: Any, adapter: FuxiAdapter, train_cfg: Any) -> Any:
    """The peer's own ``train_step`` driven by the protocol of :func:`adsformer.training.loop.train`
    (module docstring); returns a :class:`~adsformer.training.loop.TrainResult` with the calibrator."""
    import torch

    from adsformer.console import warn
    from adsformer.run.calibration import Calibrator
    from adsformer.training.calibrate import choose_calibrator
    from adsformer.training.loop import (
        FEW_STEPS,
        TrainResult,
        cosine_lr,
        epoch_record,
        monitored_score,
        resolve_batch_size,
    )

    fs, task, cfg = adapter.fs, adapter.task, train_cfg
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    train_rows, val_rows = fs.rows("train", task), fs.rows("val", task)
    if train_rows.size == 0:
        raise ValueError(f"no training rows for task {task!r}")
    batch_size = resolve_batch_size(cfg.batch_size, int(train_rows.size))
    steps_per_epoch = math.ceil(train_rows.size / batch_size)
    if steps_per_epoch < FEW_STEPS:
        warn(
            f"peer: only {steps_per_epoch} optimizer step{'s' if steps_per_epoch > 1 else ''} an epoch "
            f"({train_rows.size:,} training rows, batch {batch_size:,}): the model may barely train"
        )
    total = steps_per_epoch * cfg.epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(
        model.optimizer, lambda s: cosine_lr(s, total, cfg.min_lr_ratio)
    )
    keep_rate = fs.info.neg_keep_rate if task == "ctr" else 1.0
    val_labels = fs.labels(task)[val_rows]
    result = TrainResult(
        n_train=int(train_rows.size),
        n_val=int(val_rows.size),
        batch_size=batch_size,
        steps_per_epoch=steps_per_epoch,
        monitor=cfg.monitor,
    )
    best_score, best_state, best_val_logits, step = -math.inf, None, np.zeros(0), 0
    for epoch in range(cfg.epochs):
        model.train()
        start, running, seen = time.perf_counter(), 0.0, 0
        order = train_rows[np.random.default_rng(cfg.seed * 1000 + epoch).permutation(train_rows.size)]
        for index, lo in enumerate(range(0, order.size, batch_size)):
            batch = adapter.batch(order[lo : lo + batch_size])
            model._batch_index = index
            loss = model.train_step(batch)
            schedule.step()
            n = int(batch[2].shape[0])
            running += float(loss.detach()) * n
            seen += n
            step += 1
        result.train_seconds += time.perf_counter() - start
        result.train_examples += seen
        val_logits = peer_logits(model, adapter, val_rows, cfg.eval_batch_size)
        val_pred = Calibrator(keep_rate).uncalibrated(val_logits)
        record = epoch_record(epoch, running / max(seen, 1), val_labels, val_pred, step)
        result.epochs.append(record)
        score = monitored_score(record, cfg.monitor)
        if score > best_score:
            best_score, result.best_epoch = score, epoch
            best_state, best_val_logits = copy.deepcopy(model.state_dict()), val_logits
        elif val_labels.size and epoch - result.best_epoch >= cfg.patience and epoch + 1 < cfg.epochs:
            result.stopped_early = True
            break
    if best_state is not None:
        model.load_state_dict(best_state)
        result.calibrator = choose_calibrator(best_val_logits, val_labels, keep_rate)
    else:
        result.calibrator = Calibrator(keep_rate, decision="not_fit")
    return result


def fit_peer(name: str, cfg: Any, fs: FeatureSet) -> tuple[Any, Any, FuxiAdapter]:
    """Build the peer ``name`` for ``fs`` as ``cfg`` (an ExperimentConfig) sizes our ranker and train it
    with ``cfg.train``; returns (model, TrainResult, adapter). :class:`PeersUnavailableError` without fuxictr."""
    fuxi = import_fuxictr()
    adapter = FuxiAdapter(fs, cfg.model.ranker, task=cfg.task)
    model = build_peer(
        name,
        fuxi,
        adapter,
        cfg.train.lr,
        cfg.train.seed,
        gpu=peer_gpu(cfg.train.device),
        weight_decay=cfg.train.weight_decay_for(cfg.task),
    )
    return model, train_peer(model, adapter, cfg.train), adapter
