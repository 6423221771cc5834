"""Static pCTR x pCCVR per listing: smoothed history, or a trained run's Predictor."""

import numpy as np
import polars as pl
import pytest

from adsformer.data.schema import write_dataset
from adsformer.experiments.runs import train_run
from adsformer.retrieval.config import RetrievalError, StaticConfig
from adsformer.retrieval.static import StaticScores, historical, static_scores
from adsformer.run.config import load_experiment
from adsformer.run.predictor import Predictor
from tinydata import make_tiny_dataset


def test_historical_scores_are_smoothed_toward_the_global_rate():
    imps = pl.DataFrame(
        {
            "listing_id": ["a"] * 10 + ["b"] * 10 + ["a"],
            "clicked": [1] * 5 + [0] * 5 + [0] * 10 + [1],
            "purchased": [1] + [0] * 19 + [1],
            "ts": [1] * 20 + [99],  # the last row is after the cutoff: not read
        }
    )
    ctr, pccvr, info = historical(["a", "b", "c"], imps, cutoff_ts=50, cfg=StaticConfig(10.0, 4.0))
    g_ctr, g_cvr = 5 / 20, 1 / 5
    np.testing.assert_allclose(ctr, [(5 + 10 * g_ctr) / 20, (0 + 10 * g_ctr) / 20, g_ctr])
    np.testing.assert_allclose(pccvr, [(1 + 4 * g_cvr) / 9, g_cvr, g_cvr])
    assert info["impressions"] == 20
    no_cvr = historical(["a"], imps.drop("purchased"), None, StaticConfig())[1]
    assert no_cvr.tolist() == [1.0]  # no conversions in the data: the PCCVR factor is neutral


def test_no_impressions_means_neutral_static_scores():
    empty = pl.DataFrame(
        {"listing_id": [], "clicked": [], "ts": []},
        schema={"listing_id": pl.String, "clicked": pl.Int8, "ts": pl.Int64},
    )
    s = static_scores(pl.DataFrame({"listing_id": ["a", "b"]}), ["a", "b"], empty, None, [], StaticConfig())
    assert s.ctr.tolist() == [1.0, 1.0] and s.pccvr.tolist() == [1.0, 1.0]
    assert s.info["sources"]["ctr"].startswith("none")


def test_percentile_ranks_the_value():
    s = StaticScores(np.array([0.1, 0.4, 0.2, 0.2]), np.array([1.0, 1.0, 1.0, 1.0]), {})
    np.testing.assert_allclose(s.percentile(), [0.0, 1.0, 0.5, 0.5])


def _run(tmp, task):
    cfg = load_experiment(
        None, ["epochs=1", "batch_size=8", "split_mode=fraction"], extra={"task": task, "model": "baseline"}
    )
    data = write_dataset(make_tiny_dataset(), tmp / "ds")
    train_run(data, cfg, tmp / f"run_{task}", show_progress=False)
    return data, tmp / f"run_{task}"


def test_trained_runs_give_the_static_scores(tmp_path):
    _, ctr_run = _run(tmp_path, "ctr")
    _, pccvr_run = _run(tmp_path, "pccvr")
    ds = make_tiny_dataset()
    ids = ds.listings["listing_id"].to_list()
    scores = static_scores(ds.listings, ids, ds.impressions, None, [ctr_run, pccvr_run], StaticConfig())
    assert scores.info["sources"] == {"ctr": "run run_ctr", "pccvr": "run run_pccvr"}
    frame = pl.DataFrame(
        {
            "user_id": ["<static>"] * 4,
            "ts": pl.Series([scores.info["reference_ts"]] * 4, dtype=pl.Int64),
            "listing_id": ids,
            "clicked": pl.Series([0] * 4, dtype=pl.Int8),
            "purchased": pl.Series([0] * 4, dtype=pl.Int8),
        }
    )
    np.testing.assert_allclose(scores.ctr, Predictor.load(ctr_run).predict_frame(frame, None, ds.listings))
    np.testing.assert_allclose(
        scores.pccvr, Predictor.load(pccvr_run).predict_frame(frame, None, ds.listings)
    )
    only_ctr = static_scores(ds.listings, ids, ds.impressions, None, [ctr_run], StaticConfig())
    assert only_ctr.info["sources"]["pccvr"] == "historical"
    with pytest.raises(RetrievalError, match="two runs give the ctr score"):
        static_scores(ds.listings, ids, ds.impressions, None, [ctr_run, ctr_run], StaticConfig())
