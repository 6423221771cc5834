"""TorchScript export: the traced module matches the eager model on other batch sizes and real data."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from adsformer.data.batching import make_batch
from adsformer.data.inputs import ModelInputs
from adsformer.data.schema import write_dataset
from adsformer.experiments.runs import train_run
from adsformer.models.registry import ModelSpec, build_model
from adsformer.run.calibration import correct_downsampling
from adsformer.run.config import load_experiment
from adsformer.run.export import (
    INPUT_NAMES,
    TRACE_BATCH,
    ScoringModule,
    example_inputs,
    export_torchscript,
    load_exported,
    sidecar_path,
    stack_inputs,
    trace_model,
)
from adsformer.run.predictor import Predictor
from tinydata import make_tiny_dataset

TOL = 1e-5


@pytest.fixture(scope="module", params=[None, 4], ids=["full-rank-cross", "low-rank-cross"])
def run(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    rank = [] if request.param is None else [f"model.ranker.cross_rank={request.param}"]
    cfg = load_experiment(
        None,
        ["epochs=1", "batch_size=8", "split_mode=fraction", *rank],
        extra={"task": "ctr", "model": "adsformer"},
    )
    data = write_dataset(make_tiny_dataset(), tmp / "ds")
    train_run(data, cfg, tmp / "run", show_progress=False)
    return tmp / "run"


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
    out = tmp_path_factory.mktemp("module") / "model.pt"
    assert export_torchscript(run, out) == out
    return out


def test_module_and_sidecar(run, exported):
    pred = Predictor.load(run)
    side = json.loads(sidecar_path(exported).read_text())
    module, meta = load_exported(exported)
    assert meta == side  # the description travels inside the module file too
    assert [i["name"] for i in meta["inputs"]] == list(INPUT_NAMES)
    assert meta["pairs"] == pred.pairs == pred.artifact.spec.pairs
    assert meta["categorical"] == list(pred.model.cat_emb) == ["query", "c_color"]
    assert meta["dense"] == ["price", "rank(price)"] and meta["max_len"] == 50
    assert meta["inputs"][5]["shape"] == [len(pred.pairs), "B", 50]
    assert meta["task"] == "ctr" and meta["downsampling_corrected"] and meta["neg_keep_rate"] == 0.5
    assert max(meta["trace_check_max_abs_diff"].values()) <= TOL
    assert sorted(p.name for p in exported.parent.iterdir()) == ["model.pt", "model.pt.json"]  # no temp files
    assert isinstance(module, torch.jit.ScriptModule)
    rank = pred.artifact.config.model.ranker.cross_rank
    cross = {n: tuple(p.shape) for n, p in module.named_parameters() if n.startswith("model.cross.layers.0.")}
    F = pred.model.in_dim
    full = {"model.cross.layers.0.weight": (F, F), "model.cross.layers.0.bias": (F,)}
    low = {
        "model.cross.layers.0.v.weight": (rank, F),
        "model.cross.layers.0.u.weight": (F, rank),
        "model.cross.layers.0.u.bias": (F,),
    }
    assert cross == (full if rank is None else low)


def test_parity_on_real_rows_of_another_batch_size(run, exported):
    """A fresh, untrimmed batch of 13 real rows (traced on 8 synthetic ones) vs the Predictor (eager)."""
    pred = Predictor.load(run)
    module, meta = load_exported(exported)
    ds = make_tiny_dataset()
    fs = pred.features(ds)
    rows = np.array([0, 1, 2, 3, 4, 5, 9, 12, 14, 17, 20, 22, 24])
    assert rows.size != TRACE_BATCH
    batch = make_batch(fs, rows, trim=False)
    lengths = torch.stack(list(batch.seq_len.values()))
    assert (lengths == 0).any() and len(set(lengths.flatten().tolist())) >= 3  # 0, 1 and 2 events
    with torch.no_grad():
        got = module(*stack_inputs(batch, meta["pairs"], meta["categorical"]))
    assert got.shape == (rows.size,) and not got.requires_grad
    # the same inputs (rank(price) ranked within each whole request of the dataset) through the Predictor
    diff = np.abs(got.numpy().astype(np.float64) - pred.predict_features(fs, rows)).max()
    assert diff < TOL, diff


@pytest.mark.parametrize("batch_size", [1, 37])
def test_parity_on_synthetic_batches(run, exported, batch_size):
    pred = Predictor.load(run)
    module, meta = load_exported(exported)
    inputs = example_inputs(pred.artifact.spec, meta["pairs"], meta["categorical"], 50, batch_size, seed=7)
    listing, shop, taxonomy, cats, dense, seq_ids, seq_len, touch = inputs
    with torch.no_grad():
        got = module(*inputs).numpy().astype(np.float64)
        logit = pred.model(
            ModelInputs(
                {"listing": listing, "shop": shop, "taxonomy": taxonomy},
                {name: cats[:, j] for j, name in enumerate(meta["categorical"])},
                dense,
                dict(zip(meta["pairs"], seq_ids, strict=True)),
                dict(zip(meta["pairs"], seq_len, strict=True)),
                touch=touch,
            )
        )
    eager = pred.calibrator(logit.numpy())  # down-sampling correction (keep rate 0.5), then the run's choice
    assert pred.calibrator.keep_rate == 0.5 and meta["calibration"] == pred.calibrator.to_dict()
    assert got.shape == (batch_size,)
    assert np.abs(got - eager).max() < TOL


def test_wrong_sequence_width_fails_loudly(exported):
    module, meta = load_exported(exported)
    spec = ModelSpec(meta["vocab_sizes"], meta["categorical_vocab"], len(meta["dense"]), meta["pairs"])
    inputs = list(example_inputs(spec, meta["pairs"], meta["categorical"], 30, 4))
    with pytest.raises(RuntimeError, match="expanded size"):
        module(*inputs)


def test_exported_module_needs_no_run_dir(run, tmp_path):
    copy = shutil.copytree(run, tmp_path / "run")
    out = export_torchscript(copy, tmp_path / "m.pt")
    shutil.rmtree(copy)
    module, meta = load_exported(out)
    spec = ModelSpec(meta["vocab_sizes"], meta["categorical_vocab"], len(meta["dense"]), meta["pairs"])
    p = module(*example_inputs(spec, meta["pairs"], meta["categorical"], meta["max_len"], 3))
    assert p.shape == (3,) and bool(((p > 0) & (p < 1)).all())


ENCODER_ON = ["model.adpm.encoder.enabled=true", "model.adpm.touch.enabled=false"]


@pytest.mark.parametrize(
    "user, sets",
    [
        ("bst", []),
        ("lastk", []),
        ("baseline", []),
        ("adsformer", ENCODER_ON),  # the default encoder: its sequence never sees the target
        ("adsformer", [*ENCODER_ON, "model.adpm.encoder.sequence_sees_target=true"]),  # the paper's
    ],
)
def test_every_user_module_traces(user, sets):
    cfg = load_experiment(None, sets, extra={"model": user})
    pairs = ["listing:view", "shop:view", "query:search"]
    spec = ModelSpec({"listing": 12, "shop": 5, "taxonomy": 4, "query": 6}, {"query": 6}, 2, pairs)
    torch.manual_seed(0)
    model = build_model(cfg.model, spec)
    traced, wrapper, diffs = trace_model(model, spec, 50, keep_rate=0.25)
    assert isinstance(wrapper, ScoringModule) and max(diffs.values()) <= TOL
    assert all(p.requires_grad for p in model.parameters())  # the caller's model is untouched
    inputs = example_inputs(spec, pairs, ["query"], 50, 11, seed=3)
    with torch.no_grad():
        logit = model.eval()(
            ModelInputs(
                dict(zip(("listing", "shop", "taxonomy"), inputs[:3], strict=True)),
                {"query": inputs[3][:, 0]},
                inputs[4],
                dict(zip(pairs, inputs[5], strict=True)),
                dict(zip(pairs, inputs[6], strict=True)),
            )
        )
        eager = correct_downsampling(torch.sigmoid(logit).numpy(), 0.25)
        assert np.abs(traced(*inputs).numpy() - eager).max() < TOL


def test_export_errors(run, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export_torchscript(tmp_path / "nope", tmp_path / "m.pt")
    with pytest.raises(ValueError, match="not JSON"):
        export_torchscript(run, tmp_path / "m.json")
    assert not (tmp_path / "m.pt").exists()
