"""train -> evaluate -> ablate end to end, as a user runs them, on the tiny simulator."""

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from adsformer.adpm.config import ENCODER_MIN_POSITIVES
from adsformer.cli import app
from adsformer.config import ConfigError
from adsformer.data.features import build_features
from adsformer.data.validate import read_dataset
from adsformer.experiments.runs import resolve_for_data, train_positives
from adsformer.run.artifact import load_artifact
from adsformer.run.config import load_experiment
from adsformer.simulator import SimulatorConfig, simulate
from adsformer.training.metrics import roc_auc

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
runner = CliRunner()

METRIC_FIELDS = {
    "task",
    "model",
    "n_test",
    "roc_auc",
    "pr_auc",
    "log_loss",
    "ece",
    "nce",
    "train_examples_per_s",
    "config",
}

RANKING_FIELDS = {
    "gauc",
    "ndcg_at_10",
    "mrr",
    "roc_auc_ci",
    "pr_auc_ci",
    "gauc_ci",
    "roc_auc_logged",
    "pr_auc_logged",
}


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim") / "data"
    simulate(SimulatorConfig.preset("tiny").with_overrides(images=False), out)
    return out


def _ok(res):
    assert res.exit_code == 0, res.output
    return res


@pytest.mark.parametrize(
    "task, model",
    [("ctr", "adsformer"), ("ctr", "baseline"), ("pccvr", "adsformer"), ("ctr", "bst"), ("ctr", "lastk")],
)
def test_train_then_evaluate_writes_metrics(sim_dir, tmp_path, task, model):
    run = tmp_path / "run"
    cfg = CONFIGS / f"{task}_test.yaml"
    _ok(
        runner.invoke(
            app,
            [
                "train",
                "--data",
                str(sim_dir),
                "--task",
                task,
                "--model",
                model,
                "--config",
                str(cfg),
                "--out",
                str(run),
                "--set",
                "window_s=1800",
            ],
        )
    )
    for name in ("model.pt", "config.yaml", "features.json", "vocab/vocab.json", "history.csv", "curves.png"):
        assert (run / name).exists(), name
    _ok(runner.invoke(app, ["evaluate", str(run), "--data", str(sim_dir)]))
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics) >= METRIC_FIELDS
    assert metrics["task"] == task and metrics["model"] == model and metrics["n_test"] > 0
    assert 0 < metrics["roc_auc"] < 1 and metrics["log_loss"] > 0
    assert metrics["config"]["data"]["sequences"]["window_s"] == 1800  # --set reached the run
    # ranking quality per request (the simulator logs request ids and positions; the test configs keep
    # the position tower), with 95% bootstrap intervals over requests
    assert set(metrics) >= RANKING_FIELDS
    for key in ("gauc", "ndcg_at_10", "mrr"):
        assert metrics[key] is None or 0 <= metrics[key] <= 1, key  # PCCVR: maybe no mixed request
    assert 0 < metrics["ndcg_at_10"] <= 1 and 0 < metrics["mrr"] <= 1
    for key in ("roc_auc", "pr_auc", "gauc"):
        ci = metrics[f"{key}_ci"]
        if metrics[key] is None:
            assert ci is None
        else:
            lo, hi = ci
            assert lo <= metrics[key] <= hi, key
    assert 0 < metrics["roc_auc_logged"] < 1 and 0 < metrics["pr_auc_logged"] < 1
    if task == "pccvr":  # evaluated on clicked impressions only
        summary = json.loads((run / "train_summary.json").read_text())
        assert metrics["n_test"] < 1000 and summary["n_train"] < 1000


def test_ablate_paper_suite(sim_dir, tmp_path, monkeypatch):
    from adsformer.experiments import ablation

    # the peers' rows (DIN, TransAct) have their own tests (test_peers.py): here they are skipped as
    # without the optional package fuxictr
    monkeypatch.setattr(ablation, "peers_unavailable", lambda: "needs fuxictr")
    out = tmp_path / "abl"
    res = _ok(
        runner.invoke(
            app,
            [
                "ablate",
                "--data",
                str(sim_dir),
                "--task",
                "ctr",
                "--suite",
                "paper",
                "--seeds",
                "2",
                "--config",
                str(CONFIGS / "ctr_test.yaml"),
                "--out",
                str(out),
            ],
        )
    )
    result = json.loads((out / "ablation.json").read_text())
    assert {"task", "dataset", "seeds", "rows"} <= set(result) and result["seeds"] == 2
    names = [r["name"] for r in result["rows"]]
    assert names == [
        "baseline",
        "[Comp1,Comp3]",
        "[Comp1]",
        "[Comp3]",
        "BST-k=20-8heads",
        "Ebay-k=5",
        "adSformer",
        "adSformer[TargetAttn]",
        "[Touch]",
        "rule-touch",
        "rule-touch+position",
    ]
    assert {s["name"] for s in result["skipped"]} == {
        "ADPM-3[MaxPool]",
        "ADPM-3[AvgPool]",
        "[Comp1,Comp2]",
        "[Comp2,Comp3]",
        "[Comp2]",
        "DIN",
        "TransAct",
    }
    assert {s["reason"] for s in result["skipped"] if s["name"] in ("DIN", "TransAct")} == {"needs fuxictr"}
    for row in result["rows"]:
        for key in ("roc_auc", "pr_auc", "log_loss", "roc_auc_lift", "pr_auc_lift"):
            assert set(row[key]) == {"mean", "std"}
        logged = ("roc_auc_logged",) if row["name"] != "rule-touch" else ()  # that rule reads no position
        for key in ("gauc", "ndcg_at_10", "mrr", *logged):  # ranking quality, over seeds too
            assert set(row[key]) == {"mean", "std"} and 0 < row[key]["mean"] <= 1, (row["name"], key)
    assert "| GAUC |" in (out / "ablation.md").read_text()
    base = result["rows"][0]
    assert base["roc_auc_lift"] == {"mean": 0.0, "std": 0.0}
    # the rules score exactly what they say: the touch count alone, then position and price rank
    rows = {r["name"]: r for r in result["rows"]}
    fs = build_features(read_dataset(sim_dir), load_experiment(CONFIGS / "ctr_test.yaml").data)
    test = fs.rows("test", "ctr")
    touch_auc = roc_auc(fs.clicked[test], fs.touch_count("listing")[test])
    assert rows["rule-touch"]["roc_auc"] == pytest.approx({"mean": touch_auc, "std": 0.0}, abs=1e-9)
    assert rows["rule-touch"]["roc_auc_logged"] is None and rows["rule-touch"]["train_examples_per_s"] is None
    assert rows["rule-touch+position"]["roc_auc_logged"] == rows["rule-touch+position"]["roc_auc"]
    md = (out / "ablation.md").read_text()
    assert "| adSformer |" in md and "| rule-touch+position |" in md and "95% interval" in md
    assert "ablation.md" in " ".join(res.output.split())


def test_pccvr_without_conversions_is_a_clear_error(tmp_path, tiny_dataset):
    from adsformer.data.schema import write_dataset

    tiny_dataset.meta.has_conversions = False
    d = write_dataset(tiny_dataset, tmp_path / "ds")
    res = runner.invoke(app, ["train", "--data", str(d), "--task", "pccvr", "--out", str(tmp_path / "r")])
    assert res.exit_code == 1 and "has no conversions" in res.output
    assert not (tmp_path / "r").exists()


def test_unknown_model_and_missing_run(tmp_path, sim_dir):
    res = runner.invoke(
        app, ["train", "--data", str(sim_dir), "--model", "gpt", "--out", str(tmp_path / "r")]
    )
    assert res.exit_code != 0 and "model.user must be one of " in " ".join(res.output.split())
    res = runner.invoke(app, ["evaluate", str(tmp_path / "nope"), "--data", str(sim_dir)])
    assert res.exit_code == 1 and "not a run directory" in res.output


def test_demo_end_to_end_on_tiny_scale(tmp_path):
    res = _ok(runner.invoke(app, ["demo", "--scale", "tiny", "--out", str(tmp_path / "demo")]))
    report = tmp_path / "demo" / "report"
    summary = json.loads((report / "summary.json").read_text())
    assert [(m["task"], m["model"]) for m in summary["models"]] == [
        ("ctr", "baseline"),
        ("ctr", "adsformer"),
        ("pccvr", "baseline"),
        ("pccvr", "adsformer"),
    ]
    assert summary["dataset"]["impressions"] > 1000
    assert summary["skipgram"]["n"] > 100 and summary["skipgram"]["settings"]["until"] == "test"
    assert (tmp_path / "demo" / "tables" / "skipgram" / "vectors.parquet").exists()
    for name in ("report.md", "sequence_lengths.png", "ctr_by_position.png"):
        assert (report / name).exists()
    assert str(report / "report.md") in " ".join(res.output.split())
    # offline lifts come with paired intervals, and the verdict is printed and reported
    for m in summary["models"][1::2]:
        lo, hi = m["roc_auc_lift_ci"]
        assert lo <= m["roc_auc_lift_pct"] <= hi and m["roc_auc_lift_significant"] == (lo > 0 or hi < 0)
    out = " ".join(res.output.split())
    assert "CTR adsformer vs baseline: ROC-AUC" in out and "PCCVR adsformer vs baseline" in out
    assert "Offline lifts" in (report / "report.md").read_text()
    # the online A/B of baseline vs adSformer through the ranking service, beside the paper's figures
    ab = json.loads((tmp_path / "demo" / "abtest" / "abtest.json").read_text())
    assert [a["name"] for a in ab["arms"]] == ["baseline", "adsformer"] and ab["setup"]["requests"] > 0
    assert [a["name"] for a in summary["abtest"]["arms"]] == ["baseline", "adsformer"]
    assert "online A/B" in out and "paper (Etsy" in out and "Online A/B" in (report / "report.md").read_text()


def test_pretrained_table_feeds_component_2_and_travels_with_the_run(sim_dir, tmp_path):
    import numpy as np
    import polars as pl
    import torch

    from adsformer.representations.table import RepresentationTable
    from adsformer.run.artifact import load_artifact

    ids = pl.read_parquet(sim_dir / "listings.parquet")["listing_id"].to_list()
    vectors = np.random.default_rng(0).normal(size=(len(ids), 6)).astype(np.float32)
    table = RepresentationTable("rand", "test", ids, vectors).save(tmp_path / "table")
    run = tmp_path / "run"
    _ok(
        runner.invoke(
            app,
            [
                "train",
                "--data",
                str(sim_dir),
                "--config",
                str(CONFIGS / "ctr_test.yaml"),
                "--set",
                f"tables=[{table}]",
                "--out",
                str(run),
            ],
        )
    )
    state = torch.load(run / "model.pt", weights_only=False)["state_dict"]
    assert state["user.pretrained.tables.0.vectors"].shape[1] == 6
    (tmp_path / "table" / "vectors.parquet").unlink()  # the run no longer needs the table files
    art = load_artifact(run)
    assert art.model.user.pretrained is not None
    _ok(runner.invoke(app, ["evaluate", str(run), "--data", str(sim_dir)]))


def test_predict_and_export_commands(sim_dir, tmp_path):
    import polars as pl

    run = tmp_path / "run"
    _ok(
        runner.invoke(
            app,
            ["train", "--data", str(sim_dir), "--config", str(CONFIGS / "ctr_test.yaml"), "--out", str(run)],
        )
    )
    _ok(
        runner.invoke(
            app, ["predict", str(run), "--data", str(sim_dir), "--out", str(tmp_path / "p.parquet")]
        )
    )
    preds = pl.read_parquet(tmp_path / "p.parquet")
    assert preds.height == pl.read_parquet(sim_dir / "impressions.parquet").height
    assert preds["p_ctr"].is_between(0, 1).all()
    _ok(runner.invoke(app, ["export", str(run), "--out", str(tmp_path / "m.pt")]))
    assert (tmp_path / "m.pt").exists() and (tmp_path / "m.pt.json").exists()


def test_ablate_pretrained_suite_runs_every_subset_of_the_tables(sim_dir, tmp_path, monkeypatch):
    """The paper's table 4: ADPM-3 with each subset of the given tables in component 2."""
    import numpy as np
    import polars as pl

    from adsformer.experiments import ablation
    from adsformer.experiments.ablation import pretrained_suite
    from adsformer.representations.table import RepresentationTable
    from adsformer.run.config import load_experiment

    monkeypatch.setattr(ablation, "peers_unavailable", lambda: "needs fuxictr")  # see test_peers.py

    ids = pl.read_parquet(sim_dir / "listings.parquet")["listing_id"].to_list()
    rng = np.random.default_rng(0)
    tables = [
        str(
            RepresentationTable(n, "test", ids, rng.normal(size=(len(ids), 4)).astype(np.float32)).save(
                tmp_path / n
            )
        )
        for n in ("alpha", "beta")
    ]
    rows = pretrained_suite(tuple(tables))
    assert [r.name for r in rows] == [
        "baseline",
        "alpha",
        "beta",
        "alpha/beta",
        "No Pretrained Representations",
        "rule-touch",
        "rule-touch+position",
        "DIN",
        "TransAct",
    ]
    cfg = load_experiment(CONFIGS / "ctr_test.yaml", [f"tables=[{tables[0]},{tables[1]}]"])
    assert rows[2].apply(cfg).model.adpm.pretrained.tables == (tables[1],)
    assert rows[3].apply(cfg).model.adpm.pretrained.tables == tuple(tables)
    assert rows[4].apply(cfg).model.adpm.pretrained.tables == ()

    out = tmp_path / "abl"
    _ok(
        runner.invoke(
            app,
            [
                "ablate",
                "--data",
                str(sim_dir),
                "--suite",
                "pretrained",
                "--config",
                str(CONFIGS / "ctr_test.yaml"),
                "--set",
                f"tables=[{tables[0]}]",
                "--out",
                str(out),
            ],
        )
    )
    result = json.loads((out / "ablation.json").read_text())
    assert [r["name"] for r in result["rows"]] == [
        "baseline",
        "alpha",
        "No Pretrained Representations",
        "rule-touch",
        "rule-touch+position",
    ]
    assert result["suite"] == "pretrained"
    assert [s["name"] for s in result["skipped"]] == ["DIN", "TransAct"]


def test_ablate_tables_auto_learns_a_skipgram_table_inside_the_output(sim_dir, tmp_path):
    """``--tables auto``: a skip-gram table from the sessions before the test period, in OUT/tables, and
    the rows with pretrained tables run instead of being skipped."""
    from adsformer.representations.table import RepresentationTable

    out = tmp_path / "abl"
    result = _ablate_rows(sim_dir, out, "ADPM-3[MaxPool]", "--tables", "auto")
    table_dir = out / "tables" / "skipgram"
    assert [r["name"] for r in result["rows"]] == ["baseline", "ADPM-3[MaxPool]"] and not result["skipped"]
    assert result["config"]["model"]["adpm"]["pretrained"]["tables"] == [str(table_dir)]
    assert result["auto_tables"] == [str(table_dir)]
    table = RepresentationTable.load(table_dir)
    fs = build_features(read_dataset(sim_dir), load_experiment(CONFIGS / "ctr_test.yaml").data)
    assert table.kind == "skipgram" and table.settings["cutoff_ts"] == fs.split.test_start
    assert (out / "ablation.md").exists() and (table_dir / "quality.json").exists()

    # --set tables=auto too, in the pretrained suite (its row is named after the table); a rerun into
    # the same folder relearns the table and keeps it
    again = _ablate_rows(sim_dir, out, "skipgram", "--suite", "pretrained", "--set", "tables=auto")
    assert [r["name"] for r in again["rows"]] == ["baseline", "skipgram"] and not again["skipped"]
    assert (table_dir / "table.json").exists()


def test_merge_treats_auto_tables_of_each_part_as_the_same():
    """Seeds spread over processes each learn the (same) auto table into their own output folder."""
    from adsformer.experiments.ablation import merge_ablations
    from adsformer.experiments.ablation_result import AblationResult, summarize

    def part(seed, table, auto=True):
        run = {"roc_auc": 0.6, "pr_auc": 0.1, "log_loss": 0.3, "ece": 0.01, "train_examples_per_s": 1.0,
               "n_test": 10}  # fmt: skip
        config = {"model": {"adpm": {"pretrained": {"tables": [table]}}}, "train": {"seed": seed}}
        result = AblationResult("ctr", "d", "paper", (), config, (seed,), summarize({"baseline": [run]},
                                ["baseline"]), auto_tables=(table,) if auto else None)  # fmt: skip
        return json.loads(json.dumps(result.to_dict()))  # as ablate-merge reads it

    merged = merge_ablations([part(0, "a/tables/skipgram"), part(1, "b/tables/skipgram")])
    assert merged.seed_values == (0, 1) and merged.auto_tables == ("a/tables/skipgram",)
    written = merged.to_dict()
    assert list(written) == [
        "task", "dataset", "suite", "skipped", "config", "seeds", "seed_values", "rows", "auto_tables",
    ]  # fmt: skip
    assert written["seeds"] == 2 and written["seed_values"] == [0, 1]
    assert written["rows"][0]["runs"] == [part(0, "x")["rows"][0]["runs"][0]] * 2
    with pytest.raises(ConfigError, match="tables"):
        merge_ablations([part(0, "a/t", auto=False), part(1, "b/t", auto=False)])


def _ablate_rows(sim_dir, out, row, *extra):
    base = ["ablate", "--data", str(sim_dir), "--config", str(CONFIGS / "ctr_test.yaml"), "--seeds", "1"]
    _ok(runner.invoke(app, [*base, "--only", row, "--out", str(out), *extra]))
    return json.loads((out / "ablation.json").read_text())


def _ablate(sim_dir, out, *extra):
    base = ["ablate", "--data", str(sim_dir), "--task", "ctr", "--config", str(CONFIGS / "ctr_test.yaml")]
    _ok(runner.invoke(app, [*base, "--only", "[Comp1]", "--out", str(out), *extra]))
    return json.loads((out / "ablation.json").read_text())


def test_ablate_split_over_seeds_then_merged_equals_one_run(sim_dir, tmp_path):
    """One process per seed, then ``ablate-merge``: the same table as one run over both seeds."""
    whole = _ablate(sim_dir, tmp_path / "whole", "--seeds", "2")
    assert [r["name"] for r in whole["rows"]] == ["baseline", "[Comp1]"]  # --only keeps the baseline
    assert whole["seed_values"] == [0, 1] and len(whole["rows"][1]["runs"]) == 2
    # Seeds given out of order still line up: runs are sorted by seed before the lifts are taken.
    _ablate(sim_dir, tmp_path / "s1", "--seeds", "1", "--set", "seed=1")
    _ablate(sim_dir, tmp_path / "s0", "--seeds", "1", "--set", "seed=0")
    res = runner.invoke(
        app, ["ablate-merge", str(tmp_path / "s1"), str(tmp_path / "s0"), "--out", str(tmp_path / "m")]
    )
    _ok(res)
    merged = json.loads((tmp_path / "m" / "ablation.json").read_text())
    assert merged["seed_values"] == [0, 1] and merged["seeds"] == 2
    for a, b in zip(whole["rows"], merged["rows"], strict=True):
        assert a["name"] == b["name"]
        for key in ("roc_auc", "pr_auc", "log_loss", "roc_auc_lift"):
            assert b[key]["mean"] == pytest.approx(a[key]["mean"], abs=1e-9), (a["name"], key)
            assert b[key]["std"] == pytest.approx(a[key]["std"], abs=1e-9), (a["name"], key)
    assert (tmp_path / "m" / "ablation.md").read_text().startswith("# Ablation: CTR")

    # The same seed twice is refused, with the seeds named; nothing is written.
    res = runner.invoke(
        app, ["ablate-merge", str(tmp_path / "s0"), str(tmp_path / "s0"), "--out", str(tmp_path / "x")]
    )
    assert res.exit_code != 0 and "sharing seeds" in res.output and not (tmp_path / "x").exists()
    res = runner.invoke(app, ["ablate-merge", str(tmp_path / "nope"), "--out", str(tmp_path / "x")])
    assert res.exit_code != 0 and "not found" in res.output
    # Runs with other settings than the seed are refused, naming the settings.
    _ablate(sim_dir, tmp_path / "lr", "--seeds", "1", "--set", "seed=2", "--set", "lr=0.01")
    res = runner.invoke(
        app, ["ablate-merge", str(tmp_path / "s0"), str(tmp_path / "lr"), "--out", str(tmp_path / "x")]
    )
    assert res.exit_code != 0 and "train.lr" in res.output and not (tmp_path / "x").exists()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "ablation.json").write_text("{not json")
    res = runner.invoke(
        app, ["ablate-merge", str(tmp_path / "s0"), str(tmp_path / "bad"), "--out", str(tmp_path / "x")]
    )
    assert res.exit_code != 0 and "not valid JSON" in res.output and "bad" in res.output


def test_ablate_only_rejects_an_unknown_row(sim_dir, tmp_path):
    res = runner.invoke(
        app,
        [
            "ablate",
            "--data",
            str(sim_dir),
            "--only",
            "ADPM-4",
            "--config",
            str(CONFIGS / "ctr_test.yaml"),
            "--out",
            str(tmp_path / "a"),
        ],
    )
    assert res.exit_code != 0 and "ADPM-4" in res.output and "[Comp1]" in res.output


def test_ranking_fields_are_null_where_the_data_or_the_model_cannot_give_them(sim_dir, tmp_path):
    """No position tower: no logged-position AUCs. No request ids (a feature store): no per-request
    metrics, and the intervals resample rows. ``bootstrap=0``: no intervals. The other fields stay."""
    import dataclasses

    from adsformer.data.features import build_features
    from adsformer.data.validate import read_dataset
    from adsformer.experiments.runs import write_evaluation
    from adsformer.run.artifact import load_artifact

    run = tmp_path / "run"
    cfg = ["--config", str(CONFIGS / "ctr_test.yaml"), "--set", "model.ranker.position_bias=false"]
    _ok(runner.invoke(app, ["train", "--data", str(sim_dir), *cfg, "--out", str(run)]))
    _ok(runner.invoke(app, ["evaluate", str(run), "--data", str(sim_dir)]))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["roc_auc_logged"] is None and metrics["pr_auc_logged"] is None
    assert metrics["gauc"] is not None and metrics["gauc_ci"] is not None

    art = load_artifact(run)
    fs = build_features(
        read_dataset(sim_dir), art.config.data, vocabs=art.vocabs, dense_stats=art.dense_stats
    )
    no_requests = dataclasses.replace(fs, request=None)
    m = write_evaluation(run, art.config, no_requests, art.model, art.calibrator, dataset="sim")
    assert m["gauc"] is None and m["ndcg_at_10"] is None and m["mrr"] is None and m["gauc_ci"] is None
    lo, hi = m["roc_auc_ci"]
    assert lo <= m["roc_auc"] <= hi and m["roc_auc"] == pytest.approx(metrics["roc_auc"])
    off = dataclasses.replace(art.config, eval=dataclasses.replace(art.config.eval, bootstrap=0))
    m = write_evaluation(run, off, fs, art.model, art.calibrator, dataset="sim")
    assert m["roc_auc_ci"] is None and m["pr_auc_ci"] is None and m["gauc_ci"] is None
    assert m["gauc"] == pytest.approx(metrics["gauc"])
    assert set(json.loads((run / "metrics.json").read_text())) >= METRIC_FIELDS | RANKING_FIELDS


def test_ablation_rows_tolerate_missing_ranking_metrics():
    """Runs without request ids or a position tower (or from an older adsformer) give null, not a crash."""
    from adsformer.experiments.ablation_result import AblationResult, ablation_markdown, summarize

    def run(auc, gauc):
        return {"roc_auc": auc, "pr_auc": 0.1, "log_loss": 0.3, "ece": 0.01, "train_examples_per_s": 1.0,
                "n_test": 10, "gauc": gauc, "roc_auc_logged": None}  # fmt: skip

    runs = {"baseline": [run(0.6, 0.55), run(0.62, None)], "x": [{k: v for k, v in run(0.7, 0.6).items()
            if k != "gauc"}, run(0.7, 0.62)]}  # fmt: skip
    rows = summarize(runs, ["baseline", "adsformer"])
    assert rows[0].metrics["gauc"] == {"mean": 0.55, "std": 0.0}  # the present values only
    assert rows[1].metrics["gauc"] == {"mean": 0.62, "std": 0.0}
    assert rows[0].metrics["mrr"] is None and rows[0].to_dict()["roc_auc_logged"] is None
    # the lift against the same seed's baseline: +16.67% and +12.90%, their mean and Student-t interval
    lift = rows[1].to_dict()
    assert lift["roc_auc_lift"]["mean"] == pytest.approx((100 * 0.1 / 0.6 + 100 * 0.08 / 0.62) / 2)
    assert lift["roc_auc_lift_ci"][0] < lift["roc_auc_lift"]["mean"] < lift["roc_auc_lift_ci"][1]
    result = AblationResult("ctr", "d", "paper", (), {}, (0, 1), rows)
    assert AblationResult.from_dict(json.loads(json.dumps(result.to_dict()))).to_dict() == result.to_dict()
    table = ablation_markdown(result)
    assert "| GAUC |" in table and "0.5500 ± 0.0000" in table


@pytest.mark.slow
def test_adsformer_beats_the_baseline_on_the_simulators_planted_signal(sim_dir):
    """The simulator plants a short-term signal (users come back to what they touched; the click model
    rewards it): the default adSformer must find it, the non-personalized baseline cannot; 3 seeds, and the
    worst adSformer seed beats the best baseline seed."""
    from adsformer.experiments.runs import fit, test_metrics

    cfg = load_experiment(CONFIGS / "ctr_test.yaml", ["epochs=3"])
    fs = build_features(read_dataset(sim_dir), cfg.data)
    auc: dict[str, list[float]] = {"baseline": [], "adsformer": []}
    for seed in range(3):
        for user in auc:
            run_cfg = load_experiment(
                CONFIGS / "ctr_test.yaml", ["epochs=3", f"seed={seed}", f"model={user}"]
            )
            model, result = fit(run_cfg, fs, show_progress=False)
            auc[user].append(test_metrics(model, fs, run_cfg, result.calibrator)["roc_auc"])
    assert min(auc["adsformer"]) > max(auc["baseline"]) + 0.02, auc


def test_encoder_auto_is_decided_by_the_training_positives(sim_dir):
    cfg = load_experiment(None)
    assert cfg.model.adpm.encoder.enabled == "auto"
    fs = build_features(read_dataset(sim_dir), cfg.data)
    n = train_positives(fs, "ctr")
    assert 0 < n < ENCODER_MIN_POSITIVES  # the tiny simulation: too few to learn the encoder
    assert n == int(fs.clicked[fs.rows("train")].sum())

    def enabled(c, **kw):
        return resolve_for_data(c, fs, **kw).model.adpm.encoder.enabled

    assert enabled(cfg) is False
    assert enabled(cfg, positives=ENCODER_MIN_POSITIVES) is True
    assert enabled(cfg, positives=ENCODER_MIN_POSITIVES - 1) is False
    # given true / false: kept whatever the count
    assert enabled(load_experiment(None, ["model.adpm.encoder.enabled=true"])) is True
    assert enabled(load_experiment(None, ["model.adpm.encoder.enabled=false"]), positives=10**6) is False
    with pytest.raises(ConfigError, match=r"model\.adpm\.encoder\.enabled"):
        load_experiment(None, ["model.adpm.encoder.enabled=maybe"])


def test_cross_rank_auto_is_decided_by_the_task(sim_dir):
    fs = build_features(read_dataset(sim_dir), load_experiment(None).data)

    def rank(task, *sets):
        return resolve_for_data(
            load_experiment(None, list(sets), extra={"task": task}), fs
        ).model.ranker.cross_rank

    assert load_experiment(None).model.ranker.cross_rank == "auto"
    assert rank("ctr") == 64 and rank("pccvr") is None  # CROSS_RANK_BY_TASK
    assert rank("pccvr", "model.ranker.cross_rank=32") == 32  # a given rank is kept
    assert rank("ctr", "model.ranker.cross_rank=null") is None


def test_a_run_trained_with_encoder_auto_writes_the_decision_and_loads_without_data(sim_dir, tmp_path):
    run = tmp_path / "run"
    res = _ok(
        runner.invoke(
            app,
            ["train", "--data", str(sim_dir), "--out", str(run), "--set", "epochs=1", "--set", "threads=1"],
        )
    )
    assert "the sequence encoder is left out" in res.output
    art = load_artifact(run)
    assert art.config.model.adpm.encoder.enabled is False
    assert "enabled: false" in (run / "config.yaml").read_text()
    assert "cross_rank: 64" in (run / "config.yaml").read_text()  # auto, decided for CTR
    assert art.model.user.encoder is None and art.model.user.learned is not None
    _ok(runner.invoke(app, ["evaluate", str(run), "--data", str(sim_dir)]))


def test_a_run_saved_before_sequence_sees_target_loads_as_it_was_trained(sim_dir, tmp_path):
    """A version-1 run predates ``sequence_sees_target`` and was trained with the paper's encoder (every
    position attends to the target): it loads that way, not with today's default."""
    run = tmp_path / "run"
    sets = ["epochs=1", "threads=1", "model.adpm.encoder.enabled=true"]
    _ok(
        runner.invoke(
            app,
            ["train", "--data", str(sim_dir), "--out", str(run), *(a for s in sets for a in ("--set", s))],
        )
    )
    assert "sequence_sees_target: false" in (run / "config.yaml").read_text()  # the default, written down
    new = load_artifact(run)
    assert new.model.user.encoder.blocks[0].attn.private_first is True
    blob = torch.load(run / "model.pt", weights_only=True)
    del blob["config"]["model"]["adpm"]["encoder"]["sequence_sees_target"]
    blob["format_version"] = 1
    torch.save(blob, run / "model.pt")
    old = load_artifact(run)
    assert old.config.model.adpm.encoder.sequence_sees_target is True
    assert old.model.user.encoder.blocks[0].attn.private_first is False
    # the same weights, two encoders: a row with history is encoded differently, an empty window alike
    ids, lengths = torch.randint(1, 20, (2, 6)), torch.tensor([6, 0])
    target = torch.tensor([3, 3])
    with torch.no_grad():
        o_old, o_new = (
            old.model.user.encoder(target, ids, lengths),
            new.model.user.encoder(target, ids, lengths),
        )
    assert (o_old[0] - o_new[0]).abs().max() > 1e-4
    torch.testing.assert_close(o_old[1], o_new[1])


def test_the_paper_rows_train_the_papers_encoder_and_ours_the_configured_one():
    """The paper's ablation rows (tables 2-4) keep the paper's encoder, whose sequence attends to the target;
    the comparison rows (the default adSformer and its variants) train the encoder as configured."""
    from adsformer.experiments.ablation import COMPARISON_ROWS, PAPER_SUITE, pretrained_suite

    cfg = load_experiment(None, ["model.adpm.pretrained.tables=[t1,t2]"])
    assert cfg.model.adpm.encoder.sequence_sees_target is False  # the library's default
    for row in (*PAPER_SUITE, *pretrained_suite(("t1", "t2"))):
        if row.user == "adsformer":
            assert row.apply(cfg).model.adpm.encoder.sequence_sees_target is True, row.name
    ours = [r for r in COMPARISON_ROWS if r.user == "adsformer"]
    assert ours and all(r.apply(cfg).model.adpm.encoder.sequence_sees_target is False for r in ours)
    paper_cfg = load_experiment(None, ["model.adpm.encoder.sequence_sees_target=true"])
    assert all(r.apply(paper_cfg).model.adpm.encoder.sequence_sees_target is True for r in ours)
