"""Export a trained run as a TorchScript module: ``adsformer export RUN_DIR --out FILE.pt``.

The exported module takes plain tensors (no dicts, no strings) and returns calibrated probabilities (B,)
at the natural rate: the run's :class:`~adsformer.run.calibration.Calibrator` is inside the module, as
``sigmoid(scale * (logit + log keep_rate) + bias)`` (CTR: the training split's negative down-sampling undone,
then Platt scaling; PCCVR: Platt scaling)::

    probs = module(listing, shop, taxonomy, categorical, dense, seq_ids, seq_len, touch)

    listing, shop, taxonomy  (B,)       int64   vocabulary indices of the target listing, its shop, taxonomy
    categorical              (B, C)     int64   vocabulary indices, columns in ``categorical`` order
    dense                    (B, F)     float32 standardized numeric features, columns in ``dense`` order;
                                                a ``rank(X)`` column is X's percentile rank among the
                                                request's candidates (adsformer.data.ranks), standardized
    seq_ids                  (P, B, M)  int64   sequences in ``pairs`` order, newest first, 0 = padding
    seq_len                  (P, B)     int64   sequence lengths, 0..M
    touch                    (B, P, 2)  float32 raw touch signals [count, age_s] (age -1: never), ``pairs`` order

``M`` is the run's ``max_len``, always the full width (the module is traced on untrimmed blocks). The
sidecar ``FILE.pt.json`` (also embedded in the module as the extra file ``adsformer.json``) names the
inputs, their order, the dense statistics and the vocabulary sizes; the run's ``vocab/`` maps ids to
indices (or use :class:`adsformer.run.predictor.Predictor` to build inputs, then :func:`stack_inputs`). The
plain tensors are the :class:`~adsformer.data.inputs.ModelInputs` every other path hands the ranker, taken
apart (:func:`stack_inputs`) and put back together inside the module.

The module is traced with ``torch.jit.trace`` on a synthetic batch whose sequences have many different
lengths (0, 1, a few, M - 1 and M), then checked against the eager model on other batch sizes.

Letters: B batch, C categorical features, F dense features, P sequence pairs, M max sequence length.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from adsformer.data.inputs import ModelInputs
from adsformer.io import atomic_file
from adsformer.models.ranker import Ranker
from adsformer.models.registry import ModelSpec
from adsformer.run.predictor import Predictor

EXPORT_FORMAT = "adsformer-torchscript"
EXPORT_FORMAT_VERSION = 2  # 2: the touch input
TARGETS = ("listing", "shop", "taxonomy")
INPUT_NAMES = ("listing", "shop", "taxonomy", "categorical", "dense", "seq_ids", "seq_len", "touch")
EXTRA_FILE = "adsformer.json"
TRACE_BATCH = 8
CHECK_BATCHES = (1, 5, 19)  # batch sizes the traced module is checked on (none equals TRACE_BATCH)
CHECK_TOL = 1e-5


class ScoringModule(nn.Module):
    """A :class:`Ranker` behind a plain-tensor forward (see the module docstring) returning probabilities."""

    def __init__(
        self,
        model: Ranker,
        pairs: list[str],
        max_len: int,
        log_keep_rate: float = 0.0,
        scale: float = 1.0,
        bias: float = 0.0,
    ) -> None:
        super().__init__()
        self.scale, self.bias = float(scale), float(bias)
        self.model = model.eval()
        self.pairs = list(pairs)
        self.categorical = list(model.cat_emb.keys())
        self.max_len = int(max_len)
        self.log_keep_rate = float(log_keep_rate)

    def forward(
        self,
        listing: torch.Tensor,
        shop: torch.Tensor,
        taxonomy: torch.Tensor,
        categorical: torch.Tensor,
        dense: torch.Tensor,
        seq_ids: torch.Tensor,
        seq_len: torch.Tensor,
        touch: torch.Tensor,
    ) -> torch.Tensor:
        # The trace fixes M: a block of another width fails here (expand) instead of scoring wrongly. A width
        # of 1 broadcasts, which is exact for lengths <= 1 since padding is masked everywhere.
        seq_ids = seq_ids.expand(len(self.pairs), -1, self.max_len)
        inputs = ModelInputs(  # the plain tensors put back together, as stack_inputs took them apart
            target={"listing": listing, "shop": shop, "taxonomy": taxonomy},
            categorical={name: categorical[:, j] for j, name in enumerate(self.categorical)},
            dense=dense,
            seq_ids={pair: seq_ids[i] for i, pair in enumerate(self.pairs)},
            seq_len={pair: seq_len[i] for i, pair in enumerate(self.pairs)},
            touch=touch,
        )
        logit = self.model(inputs)  # (B,), no position tower
        return torch.sigmoid(self.scale * (logit + self.log_keep_rate) + self.bias)


def stack_inputs(inputs: ModelInputs, pairs: list[str], categorical: list[str]) -> tuple[torch.Tensor, ...]:
    """Per-row model inputs with every sequence block M wide (a :class:`~adsformer.data.batching.Batch`
    built with ``make_batch(..., trim=False)``) as the exported module's plain tensors, in
    :data:`INPUT_NAMES` order; the position is not an input."""
    widths = {int(inputs.seq_ids[p].shape[1]) for p in pairs}
    if len(widths) > 1:
        raise ValueError(
            f"sequence blocks have different widths {sorted(widths)}: use make_batch(trim=False)"
        )
    B = len(inputs)
    cats = [inputs.categorical[name] for name in categorical]
    return (
        *(inputs.target[e] for e in TARGETS),
        torch.stack(cats, dim=1) if cats else torch.zeros((B, 0), dtype=torch.int64),
        inputs.dense,
        torch.stack([inputs.seq_ids[p] for p in pairs])
        if pairs
        else torch.zeros((0, B, 1), dtype=torch.int64),
        torch.stack([inputs.seq_len[p] for p in pairs]) if pairs else torch.zeros((0, B), dtype=torch.int64),
        inputs.touch if inputs.touch is not None else _untouched(B, len(pairs)),
    )


def _untouched(B: int, P: int) -> torch.Tensor:
    """(B, P, 2) touch signals of targets never touched: count 0, age -1."""
    out = torch.zeros((B, P, 2))
    out[:, :, 1] = -1.0
    return out


def example_inputs(
    spec: ModelSpec,
    pairs: list[str],
    categorical: list[str],
    max_len: int,
    batch_size: int = TRACE_BATCH,
    seed: int = 0,
) -> tuple[torch.Tensor, ...]:
    """Synthetic inputs: valid indices and, per pair, lengths cycling through 0, M, 1, M // 2, M - 1, 2, ..."""
    g = torch.Generator().manual_seed(seed)
    B, M = int(batch_size), int(max_len)

    def ids(vocab: int, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.randint(1, max(int(vocab), 2), shape, generator=g, dtype=torch.int64)

    cycle = np.array([0, M, 1, M // 2, M - 1, 2, 0, min(3, M)], dtype=np.int64)
    seq_ids = torch.zeros((len(pairs), B, M), dtype=torch.int64)
    seq_len = torch.zeros((len(pairs), B), dtype=torch.int64)
    for i, pair in enumerate(pairs):
        lengths = torch.from_numpy(np.roll(cycle, i)[np.arange(B) % cycle.size])  # (B,)
        block = ids(spec.vocab_sizes[pair.split(":", 1)[0]], (B, M))
        valid = torch.arange(M).unsqueeze(0) < lengths.unsqueeze(1)  # (B, M)
        seq_ids[i] = block * valid
        seq_len[i] = lengths
    cats = [ids(spec.categorical_vocab[name], (B,)) for name in categorical]
    return (
        ids(spec.vocab_sizes["listing"], (B,)),
        ids(spec.vocab_sizes["shop"], (B,)),
        ids(spec.vocab_sizes["taxonomy"], (B,)),
        torch.stack(cats, dim=1) if cats else torch.zeros((B, 0), dtype=torch.int64),
        torch.randn((B, spec.n_dense), generator=g, dtype=torch.float32),
        seq_ids,
        seq_len,
        _example_touch(g, B, len(pairs), M),
    )


def _example_touch(g: torch.Generator, B: int, P: int, M: int) -> torch.Tensor:
    """(B, P, 2) synthetic touch signals, sparse as in real logs: a fifth of the (candidate, pair) cells
    touched 1..3 times, ages 0..3600 s; the rest untouched (count 0, age -1)."""
    count = torch.randint(1, min(3, M) + 1, (B, P), generator=g).float()  # (B, P)
    count = torch.where(torch.rand((B, P), generator=g) < 0.2, count, 0.0)
    age = torch.randint(0, 3601, (B, P), generator=g).float()  # (B, P)
    return torch.stack([count, torch.where(count > 0, age, -1.0)], dim=2)


@torch.no_grad()
def trace_model(
    model: Ranker,
    spec: ModelSpec,
    max_len: int,
    *,
    keep_rate: float = 1.0,
    scale: float = 1.0,
    bias: float = 0.0,
) -> tuple[torch.jit.ScriptModule, ScoringModule, dict[str, float]]:
    """Trace ``model`` behind :class:`ScoringModule`; returns (traced, eager wrapper, max abs difference per
    checked batch size). Raises RuntimeError when the traced graph disagrees with the eager model."""
    if not 0 < keep_rate <= 1:
        raise ValueError(f"keep_rate must be in (0, 1], got {keep_rate}")
    frozen = copy.deepcopy(model).eval().requires_grad_(False)  # the caller's model is left as it was
    wrapper = ScoringModule(frozen, list(spec.pairs), max_len, math.log(keep_rate), scale, bias).eval()
    example = example_inputs(spec, wrapper.pairs, wrapper.categorical, max_len, TRACE_BATCH, seed=0)
    with _quiet_jit():
        traced = torch.jit.trace(wrapper, example, check_trace=False)
    diffs = {}
    for i, b in enumerate(CHECK_BATCHES):
        inputs = example_inputs(spec, wrapper.pairs, wrapper.categorical, max_len, b, seed=1 + i)
        diff = float((traced(*inputs) - wrapper(*inputs)).abs().max())
        diffs[str(b)] = diff
        if not diff <= CHECK_TOL:  # also catches NaN
            raise RuntimeError(
                f"the traced module disagrees with the eager model at batch size {b} (max abs diff {diff:g})"
            )
    return traced, wrapper, diffs


def sidecar_path(out_path: str | Path) -> Path:
    """Where :func:`export_torchscript` writes the input description: ``FILE.pt`` -> ``FILE.pt.json``."""
    out_path = Path(out_path)
    return out_path.with_name(out_path.name + ".json")


def export_torchscript(run_dir: str | Path, out_path: str | Path) -> Path:
    """Trace the run's model to TorchScript at ``out_path`` (atomically) plus the sidecar JSON; returns
    ``out_path``. Load with ``torch.jit.load(out_path)``; the run directory is not needed to serve it."""
    out_path = Path(out_path)
    if out_path.suffix == ".json":
        raise ValueError(f"{out_path}: the module is not JSON; use e.g. model.pt (the sidecar is .pt.json)")
    predictor = Predictor.load(run_dir)  # clear errors for a missing / incomplete run directory
    art = predictor.artifact
    max_len = int(art.config.data.sequences.max_len)
    cal = art.calibrator
    keep_rate = cal.keep_rate
    traced, wrapper, diffs = trace_model(
        art.model, art.spec, max_len, keep_rate=keep_rate, scale=cal.scale, bias=cal.bias
    )
    meta = _describe(predictor, wrapper, max_len, keep_rate, diffs)
    text = json.dumps(meta, indent=2) + "\n"
    with atomic_file(out_path) as tmp, _quiet_jit():
        torch.jit.save(traced, str(tmp), _extra_files={EXTRA_FILE: text})
    with atomic_file(sidecar_path(out_path)) as tmp:
        tmp.write_text(text)
    return out_path


def load_exported(path: str | Path) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """The exported module and its description (read from inside the module file)."""
    extra = {EXTRA_FILE: ""}
    with _quiet_jit():
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return module, json.loads(extra[EXTRA_FILE])


@contextlib.contextmanager
def _quiet_jit() -> Iterator[None]:
    """TorchScript is deprecated in torch 2.13 (in favour of torch.export) but still the format asked for.

    TracerWarnings are silenced too: Python ints taken from shapes (M, k) are constants of the trace, which
    is right because M is fixed by the input contract; the batch dimension is checked on other sizes.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        yield


def _describe(predictor: Any, wrapper: ScoringModule, max_len: int, keep_rate: float, diffs: dict) -> dict:
    art = predictor.artifact
    spec: ModelSpec = art.spec
    pairs, cats = wrapper.pairs, wrapper.categorical
    dense = list(predictor.dense_stats)
    P, C, F = len(pairs), len(cats), len(dense)
    return {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_FORMAT_VERSION,
        "task": predictor.task,
        "model": art.config.model.user,
        "run_dir": str(Path(predictor.run_dir).resolve()) if predictor.run_dir else None,
        "torch_version": torch.__version__,
        "inputs": [
            {"name": "listing", "shape": ["B"], "dtype": "int64", "vocabulary": "listing"},
            {"name": "shop", "shape": ["B"], "dtype": "int64", "vocabulary": "shop"},
            {"name": "taxonomy", "shape": ["B"], "dtype": "int64", "vocabulary": "taxonomy"},
            {"name": "categorical", "shape": ["B", C], "dtype": "int64", "columns": cats},
            {"name": "dense", "shape": ["B", F], "dtype": "float32", "columns": dense},
            {"name": "seq_ids", "shape": [P, "B", max_len], "dtype": "int64", "pairs": pairs},
            {"name": "seq_len", "shape": [P, "B"], "dtype": "int64", "pairs": pairs},
            {"name": "touch", "shape": ["B", P, 2], "dtype": "float32", "pairs": pairs},
        ],
        "output": {
            "name": "probability",
            "shape": ["B"],
            "dtype": "float32",
            "meaning": "P(click), natural rate" if predictor.task == "ctr" else "P(purchase | click)",
        },
        "pairs": pairs,
        "categorical": cats,
        "dense": dense,
        "dense_stats": {k: list(v) for k, v in predictor.dense_stats.items()},
        "dense_transform": "log1p for price and bid, then (x - mean) / std; missing -> 0",
        "max_len": max_len,
        "window_s": int(art.config.data.sequences.window_s),
        "sequence_order": "newest first, 0 = padding; events in [ts - window_s, ts)",
        "vocab_sizes": dict(spec.vocab_sizes),
        "categorical_vocab": dict(spec.categorical_vocab),
        "index_layout": "0 = padding/missing, 1..num_oov = out of vocabulary, then the run's vocab/ ids",
        "neg_keep_rate": keep_rate,
        "calibration": predictor.artifact.calibrator.to_dict(),
        "downsampling_corrected": predictor.task == "ctr",
        "trace_check_max_abs_diff": diffs,
    }
