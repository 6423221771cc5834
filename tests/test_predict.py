"""Scoring with a trained run: parity with the training code, unseen ids, single requests, self-contained runs."""

from __future__ import annotations

import shutil

import numpy as np
import polars as pl
import pytest
import torch

from adsformer.data.features import build_features
from adsformer.data.schema import write_dataset
from adsformer.data.validate import DatasetError
from adsformer.experiments.runs import test_metrics as run_test_metrics
from adsformer.experiments.runs import train_run
from adsformer.representations.table import RepresentationTable
from adsformer.run.config import load_experiment
from adsformer.run.predictor import Predictor, predict_run
from adsformer.run.scoring import predict_logits
from adsformer.training.metrics import all_metrics
from tinydata import make_tiny_dataset

BASE = ["epochs=1", "batch_size=8", "split_mode=fraction"]


def _train(tmp, task="ctr", model="adsformer", overrides=(), extra=None):
    cfg = load_experiment(None, [*BASE, *overrides], extra={"task": task, "model": model, **(extra or {})})
    data = write_dataset(make_tiny_dataset(), tmp / "ds")
    train_run(data, cfg, tmp / "run", show_progress=False)
    return tmp / "run"


@pytest.fixture(scope="module")
def ctr_run(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("ctr"))


@pytest.fixture(scope="module")
def predictor(ctr_run):
    return Predictor.load(ctr_run)


def _reference(pred: Predictor, ds, rows):
    """What evaluation computes: build_features with the run's vocabularies, logits, the run's calibrator
    (down-sampling correction for CTR, then Platt scaling)."""
    art = pred.artifact
    fs = build_features(ds, art.config.data, vocabs=art.vocabs, dense_stats=art.dense_stats)
    z = predict_logits(art.model, fs, rows, task=art.config.task)
    return fs, art.calibrator(z)


def test_predictor_equals_training_code(predictor, tiny_dataset):
    rows = np.arange(tiny_dataset.impressions.height)
    fs, ref = _reference(predictor, tiny_dataset, rows)
    got = predictor.predict_dataset(tiny_dataset)
    assert got.shape == ref.shape and got.dtype == np.float64
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)
    assert got.std() > 0  # not a constant model
    # a subset of whole requests, out of order: the same numbers, in the order asked (a request-relative
    # feature, rank(price), ranks among the rows given of each request, as serving ranks its candidates)
    req = tiny_dataset.impressions["request_id"].to_numpy()
    sub = np.flatnonzero(np.isin(req, req[[0, 24]]))[::-1]
    np.testing.assert_allclose(predictor.predict_dataset(tiny_dataset, sub), ref[sub], rtol=0, atol=1e-6)
    # exactly what evaluate reports: metrics of the corrected test-split predictions
    test_rows = fs.rows("test", "ctr")
    reported = run_test_metrics(predictor.model, fs, predictor.config, predictor.calibrator)
    ours = all_metrics(fs.clicked[test_rows], predictor.predict_dataset(tiny_dataset, test_rows))
    assert ours["log_loss"] == pytest.approx(reported["log_loss"], abs=1e-9)
    assert ours["roc_auc"] == pytest.approx(reported["roc_auc"], abs=1e-12)
    # the features themselves agree with build_features on every row
    ours = predictor.features(tiny_dataset)
    for e in fs.target:
        np.testing.assert_array_equal(ours.target[e], fs.target[e])
    for name in fs.sequences:
        np.testing.assert_array_equal(ours.sequences[name].padded()[0], fs.sequences[name].padded()[0])
    np.testing.assert_array_equal(ours.dense, fs.dense)


def test_ctr_is_corrected_for_downsampling_then_calibrated(predictor, tiny_dataset):
    rows = np.arange(tiny_dataset.impressions.height)
    z = predict_logits(predictor.model, predictor.features(tiny_dataset), rows).astype(np.float64)
    raw = 1 / (1 + np.exp(-z))
    cal = predictor.calibrator
    assert cal.keep_rate == predictor.neg_keep_rate == 0.5 and cal.scale > 0
    # the tiny run's validation split has 2 rows: Platt scaling is fit there but not kept (scale 1, bias 0)
    assert cal.decision == "skipped" and (cal.scale, cal.bias) == (1.0, 0.0)
    corrected = 0.5 * raw / (0.5 * raw + 1 - raw)
    np.testing.assert_allclose(cal.uncalibrated(z), corrected, rtol=0, atol=1e-9)
    lz = np.log(corrected / (1 - corrected))
    expected = 1 / (1 + np.exp(-(cal.scale * lz + cal.bias)))
    np.testing.assert_allclose(predictor.predict_dataset(tiny_dataset), expected, rtol=0, atol=1e-6)


def test_pccvr_is_not_corrected(tmp_path, tiny_dataset):
    pred = Predictor.load(_train(tmp_path, task="pccvr"))
    assert pred.task == "pccvr"
    rows = np.arange(tiny_dataset.impressions.height)
    _, ref = _reference(pred, tiny_dataset, rows)  # no correction for PCCVR
    np.testing.assert_allclose(pred.predict_dataset(tiny_dataset), ref, rtol=0, atol=1e-6)
    # a request to score carries no labels: same scores without the label columns
    unlabelled = tiny_dataset.impressions.drop("clicked", "purchased")
    got = pred.predict_frame(unlabelled, tiny_dataset.events, tiny_dataset.listings)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)


def test_single_request_frame(predictor, tiny_dataset):
    """One request = one timestamp: build_features could not split it, scoring must not need to."""
    full = predictor.predict_dataset(tiny_dataset)
    imps = tiny_dataset.impressions
    rows = np.flatnonzero((imps["request_id"] == "r3a").to_numpy())
    request = imps[rows].drop("clicked", "purchased", "request_id", "position")  # labels are not inputs
    got = predictor.predict_frame(request, tiny_dataset.events, tiny_dataset.listings)
    np.testing.assert_allclose(got, full[rows], rtol=0, atol=1e-6)
    # row order is the input order
    got_rev = predictor.predict_frame(request.reverse(), tiny_dataset.events, tiny_dataset.listings)
    np.testing.assert_allclose(got_rev, got[::-1], rtol=0, atol=1e-6)
    # one impression, no history and no listing table at all
    one = predictor.predict_frame(request.head(1))
    assert one.shape == (1,) and 0 < one[0] < 1


def _new_ids_frame(suffix: str, user: str):
    """A request for a listing, shop, taxonomy, colour and query never seen in training."""
    listings = pl.DataFrame(
        {
            "listing_id": [f"l_{suffix}", "l1"],
            "shop_id": [f"s_{suffix}", "s1"],
            "taxonomy_id": [f"t_{suffix}", "t1"],
            "price": [25.0, 10.0],
            "c_color": [f"c_{suffix}", "red"],
        }
    )
    events = pl.DataFrame(
        {
            "user_id": [user, user, user],
            "ts": [1_800_000_000 - 50, 1_800_000_000 - 40, 1_800_000_000 - 30],
            "action": ["view", "view", "search"],
            "listing_id": [f"l_{suffix}", "l1", None],
            "query": [None, None, f"q_{suffix}"],
        }
    )
    impressions = pl.DataFrame(
        {
            "user_id": [user, user],
            "ts": [1_800_000_000, 1_800_000_000],
            "listing_id": [f"l_{suffix}", "l1"],
            "query": [f"q_{suffix}", f"q_{suffix}"],
        }
    )
    return impressions, events, listings


def test_unseen_ids_map_to_oov(predictor):
    imps, events, listings = _new_ids_frame("new", "u_new")
    got = predictor.predict_frame(imps, events, listings)
    assert got.shape == (2,) and np.isfinite(got).all() and ((got > 0) & (got < 1)).all()
    # every unseen id is encoded as the OOV index (num_oov = 1: index 1)
    from adsformer.data.schema import Dataset, DatasetMeta

    fs = predictor.features(Dataset(listings, events, imps, DatasetMeta("x", "test")))
    assert fs.target["listing"][0] == 1 and fs.target["shop"][0] == 1 and fs.target["taxonomy"][0] == 1
    assert fs.categorical["query"][0] == 1 and fs.categorical["c_color"][0] == 1
    assert fs.target["listing"][1] > 1  # l1 is known
    ids, lengths = fs.sequences["listing:view"].padded()
    assert lengths[0] == 2 and ids[0, 1] == 1  # the older view is of the unseen listing
    # other unseen ids (another user too) score exactly the same: only the OOV index reaches the model
    other = predictor.predict_frame(*_new_ids_frame("other", "u_other"))
    np.testing.assert_array_equal(got, other)


def test_new_user_id_is_only_a_key(predictor, tiny_dataset):
    """A user never seen in training, with u1's history, scores as u1 does."""
    full = predictor.predict_dataset(tiny_dataset)
    rename = pl.col("user_id").replace("u1", "u_fresh")
    events = tiny_dataset.events.with_columns(rename)
    imps = tiny_dataset.impressions.with_columns(rename)
    got = predictor.predict_frame(imps, events, tiny_dataset.listings)
    np.testing.assert_allclose(got, full, rtol=0, atol=1e-6)


def test_bad_inputs_are_clear_errors(predictor, tiny_dataset, tmp_path):
    imps = tiny_dataset.impressions
    with pytest.raises(DatasetError, match=r"listing_id.*required column is missing"):
        predictor.predict_frame(imps.drop("listing_id"), tiny_dataset.events, tiny_dataset.listings)
    with pytest.raises(DatasetError, match=r"'ts'.*expected type int64"):
        predictor.predict_frame(imps.with_columns(pl.col("ts") + 0.5), tiny_dataset.events)
    with pytest.raises(DatasetError, match="null value"):
        bad = imps.with_columns(
            pl.when(pl.col("clicked") == 1).then(None).otherwise(pl.lit("u")).alias("user_id")
        )
        predictor.predict_frame(bad)
    dup = pl.concat([tiny_dataset.listings, tiny_dataset.listings.head(1)])
    with pytest.raises(DatasetError, match="listing_id is not unique"):
        predictor.predict_frame(imps, tiny_dataset.events, dup)
    with pytest.raises(DatasetError, match="expected a polars DataFrame"):
        predictor.predict_frame(imps.to_dicts())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="out of range"):
        predictor.predict_dataset(tiny_dataset, np.array([0, 99]))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Predictor.load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        Predictor.load(tmp_path / "empty")


def test_predict_run_writes_parquet(ctr_run, predictor, tmp_path, tiny_dataset):
    data = write_dataset(tiny_dataset, tmp_path / "ds")
    summary = predict_run(ctr_run, data, tmp_path / "out" / "p.parquet")
    out = pl.read_parquet(tmp_path / "out" / "p.parquet")
    assert summary["rows"] == out.height == tiny_dataset.impressions.height
    # the existing columns first, as they were; then the labels and the split
    assert out.columns[:6] == ["request_id", "user_id", "ts", "listing_id", "position", "p_ctr"]
    assert out.columns[6:] == ["clicked", "purchased", "split"]
    assert out["listing_id"].to_list() == tiny_dataset.impressions["listing_id"].to_list()
    np.testing.assert_allclose(out["p_ctr"].to_numpy(), predictor.predict_dataset(tiny_dataset), atol=1e-6)
    for label in ("clicked", "purchased"):
        assert out[label].to_list() == tiny_dataset.impressions[label].to_list()
    # the run's own split: the split its training features had, row for row
    fs = build_features(tiny_dataset, predictor.config.data)
    names = np.array(["train", "val", "test", "unused"])[fs.split.split]
    assert out["split"].to_list() == names.tolist()
    assert set(out["split"]) == {"train", "val", "test"}


def test_predict_split_of_a_run_that_recorded_none(ctr_run, tmp_path, tiny_dataset):
    """A run trained before the split was recorded: its split settings applied to the data, the same
    labels; a frame too small to split gets none (null), never an error."""
    import json

    old = tmp_path / "old-run"
    shutil.copytree(ctr_run, old)
    summary = json.loads((old / "train_summary.json").read_text())
    recorded = summary.pop("split")
    assert recorded["val_start"] < recorded["test_start"]
    (old / "train_summary.json").write_text(json.dumps(summary))
    data = write_dataset(tiny_dataset, tmp_path / "ds")
    new = predict_run(ctr_run, data, tmp_path / "new.parquet")
    predict_run(old, data, tmp_path / "old.parquet")
    assert new["rows"] == tiny_dataset.impressions.height
    split_new = pl.read_parquet(tmp_path / "new.parquet")["split"].to_list()
    assert pl.read_parquet(tmp_path / "old.parquet")["split"].to_list() == split_new
    one = tiny_dataset.impressions.head(2).drop("purchased")  # one request, without conversions
    small = write_dataset(
        type(tiny_dataset)(tiny_dataset.listings, tiny_dataset.events, one, tiny_dataset.meta),
        tmp_path / "one",
    )
    predict_run(old, small, tmp_path / "one.parquet")
    out = pl.read_parquet(tmp_path / "one.parquet")
    assert out.columns[-2:] == ["clicked", "split"] and out["split"].to_list() == [None, None]
    predict_run(ctr_run, small, tmp_path / "one-new.parquet")  # recorded instants split any rows
    assert pl.read_parquet(tmp_path / "one-new.parquet")["split"].to_list() == ["train", "train"]


def test_run_is_self_contained_with_frozen_tables(tmp_path, tiny_dataset):
    rng = np.random.default_rng(0)
    table_dir = RepresentationTable(
        "air", "test", ["l1", "l2", "l3"], rng.normal(size=(3, 4)).astype(np.float32)
    ).save(tmp_path / "table")
    run = _train(tmp_path, extra={"tables": [str(table_dir)]})
    before = Predictor.load(run)
    assert before.model.user.pretrained is not None
    expected = before.predict_dataset(tiny_dataset)

    moved = tmp_path / "elsewhere" / "run"
    shutil.copytree(run, moved)
    for path in (run, tmp_path / "ds", table_dir):  # the original run, the dataset and the table are gone
        shutil.rmtree(path)
    state = torch.load(moved / "model.pt", map_location="cpu", weights_only=False)["state_dict"]
    assert state["user.pretrained.tables.0.vectors"].shape[1] == 4
    after = Predictor.load(moved)
    np.testing.assert_array_equal(after.predict_dataset(tiny_dataset), expected)
    vectors = after.model.user.pretrained.tables[0].vectors
    torch.testing.assert_close(vectors, state["user.pretrained.tables.0.vectors"])
