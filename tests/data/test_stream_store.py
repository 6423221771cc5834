"""The feature store: a lossless round trip, and streaming that sees every training row once per epoch."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from adsformer.cli import app
from adsformer.config import DataConfig
from adsformer.data.batching import make_batch
from adsformer.data.features import build_features
from adsformer.data.stream import FeatureStore, StreamSource, is_store, write_store
from adsformer.simulator import SimulatorConfig, generate, simulate

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "ctr_test.yaml"


@pytest.fixture(scope="module")
def fs_and_store(tmp_path_factory):
    ds, _ = generate(SimulatorConfig.preset("tiny").with_overrides(images=False))
    cfg = DataConfig()
    fs = build_features(ds, cfg)
    out = tmp_path_factory.mktemp("store") / "features"
    write_store(fs, out, cfg, dataset="tiny", row_group_rows=500)
    return fs, FeatureStore.open(out)


def test_round_trip_is_lossless(fs_and_store):
    fs, store = fs_and_store
    back = store.load()
    assert back.n == fs.n and store.file.num_row_groups == -(-fs.n // 500)
    rows = np.arange(fs.n)
    a, b = make_batch(fs, rows), make_batch(back, rows)
    for name in ("target", "categorical", "seq_ids", "seq_len"):
        da, db = getattr(a, name), getattr(b, name)
        assert list(da) == list(db)
        for key in da:
            assert np.array_equal(da[key].numpy(), db[key].numpy()), (name, key)
    assert np.array_equal(a.dense.numpy(), b.dense.numpy())
    assert np.array_equal(a.label.numpy(), b.label.numpy()) and np.array_equal(a.position, b.position)
    assert np.array_equal(back.split.split, fs.split.split) and np.array_equal(back.train_keep, fs.train_keep)
    assert store.count("train", "ctr") == fs.rows("train", "ctr").size
    assert store.schema().n == 0 and list(store.schema().sequences) == list(fs.sequences)


def _key(fs, rows):
    return sorted(
        zip(fs.ts[rows], fs.target["listing"][rows], fs.position[rows], fs.clicked[rows], strict=True)
    )


@pytest.mark.parametrize("task", ["ctr", "pccvr"])
def test_stream_visits_every_training_row_once(fs_and_store, task):
    fs, store = fs_and_store
    source = StreamSource(store, task, buffer_rows=1000)  # 2 row groups per buffer
    batches = list(source.train_batches(64, seed=3))
    sizes = [r.size for _, r in batches]
    assert sum(sizes) == source.n_train == fs.rows("train", task).size
    assert all(s == 64 for s in sizes[:-1])
    got = [k for chunk, rows in batches for k in _key(chunk, rows)]
    assert sorted(got) == _key(fs, fs.rows("train", task))
    again = [r.size for _, r in source.train_batches(64, seed=4)]
    assert again == sizes  # another epoch: other order, same rows
    val = [k for chunk, rows in source.val_chunks() for k in _key(chunk, rows)]
    assert sorted(val) == _key(fs, fs.rows("val", task))


def test_train_and_evaluate_from_a_store(tmp_path, monkeypatch):
    data = tmp_path / "data"
    simulate(SimulatorConfig.preset("tiny").with_overrides(images=False), data)
    runner = CliRunner()
    store = tmp_path / "features"
    res = runner.invoke(
        app, ["features", "--data", str(data), "--out", str(store), "--row-group-rows", "700"]
    )
    assert res.exit_code == 0, res.output
    assert is_store(store) and not is_store(data)
    run = tmp_path / "run"
    res = runner.invoke(app, ["train", "--data", str(store), "--config", str(CONFIG), "--out", str(run)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["evaluate", str(run), "--data", str(store)])
    assert res.exit_code == 0, res.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n_test"] > 0 and 0 < metrics["roc_auc"] < 1
    # the run took the store's data settings, so scoring the raw dataset rebuilds the same test features
    res = runner.invoke(app, ["evaluate", str(run), "--data", str(data)])
    assert res.exit_code == 0, res.output
    again = json.loads((run / "metrics.json").read_text())
    assert again["n_test"] == metrics["n_test"] and again["roc_auc"] == pytest.approx(
        metrics["roc_auc"], abs=1e-6
    )
    # encoder.enabled: auto decided on the store's own counts (the schema it trains from holds no rows)
    from adsformer.adpm import config as adpm_config
    from adsformer.data.stream import FeatureStore
    from adsformer.experiments.runs import fit
    from adsformer.run.config import load_experiment

    opened = FeatureStore.open(store)
    cfg = load_experiment(CONFIG, ["epochs=1"])
    auto = dataclasses.replace(
        cfg.model.adpm, encoder=dataclasses.replace(cfg.model.adpm.encoder, enabled="auto")
    )
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, adpm=auto), data=opened.data_config)
    schema = opened.schema()
    assert schema.rows("train", "ctr").size == 0 < opened.train_positives("ctr")
    # a threshold the store's positives reach and the schema's zero rows would not
    monkeypatch.setattr(adpm_config, "ENCODER_MIN_POSITIVES", opened.train_positives("ctr"))
    model, _ = fit(cfg, schema, show_progress=False, store=opened)
    assert model.user.encoder is not None
