"""adsformer abtest: the closed-loop online A/B test on the tiny simulator, through the ranking service."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from adsformer.cli import app
from adsformer.errors import UserError
from adsformer.experiments.abtest import (
    METRICS,
    AbtestConfig,
    AbtestError,
    ArmSpec,
    LocalArm,
    assign_arms,
    parse_arm,
    run_abtest,
    with_urls,
)
from adsformer.experiments.runs import train_run
from adsformer.run.config import load_experiment
from adsformer.simulator import SimulatorConfig, simulate

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
runner = CliRunner()


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("abtest") / "data"
    simulate(SimulatorConfig.preset("tiny").with_overrides(images=False), out)
    return out


@pytest.fixture(scope="module")
def ctr_run(sim_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("abtest-runs") / "ctr"
    cfg = load_experiment(CONFIGS / "ctr_test.yaml", ["threads=1"], extra={"task": "ctr"})
    train_run(sim_dir, cfg, out, show_progress=False)
    return out


def _arms(ctr_run: Path) -> list[ArmSpec]:
    return [ArmSpec("adsformer", ctr_run), ArmSpec("random")]


FAST = AbtestConfig(bootstrap=50)


def _stable(summary: dict) -> str:
    """The summary without the wall-clock parts."""
    keep = {k: v for k, v in summary.items() if k != "timing"}
    keep["arms"] = [{k: v for k, v in a.items() if k != "timings_s"} for a in summary["arms"]]
    keep["setup"] = {**summary["setup"], "config": {**summary["setup"]["config"], "workers": None}}
    return json.dumps(keep, sort_keys=True)


def test_parse_arms():
    assert parse_arm("a=runs/x") == ArmSpec("a", Path("runs/x"))
    assert parse_arm("b=runs/x,runs/y") == ArmSpec("b", Path("runs/x"), Path("runs/y"))
    assert parse_arm("c=random").kind == "random"
    for bad in ("noequals", "=runs/x", "a=", "a b=runs/x", "a=x,y,z"):
        with pytest.raises(AbtestError):
            parse_arm(bad)
    arms = with_urls([parse_arm("a=x"), parse_arm("b=y")], ["b=http://127.0.0.1:8000/"])
    assert arms[1].url == "http://127.0.0.1:8000" and arms[1].kind == "http" and arms[0].url is None
    with pytest.raises(AbtestError):
        with_urls(arms, ["zz=http://127.0.0.1:8000"])


def test_arm_assignment_is_stable_and_balanced():
    ids = [f"u_{i}" for i in range(6000)] + [f"b_{i}" for i in range(4000)]
    for n_arms in (2, 3):
        arm = assign_arms(ids, n_arms)
        counts = np.bincount(arm, minlength=n_arms)
        assert counts.sum() == len(ids)
        assert np.all(np.abs(counts / len(ids) - 1 / n_arms) < 0.02), counts
        # stable: the same user gets the same arm whatever the order and the other users
        order = np.random.default_rng(0).permutation(len(ids))
        again = assign_arms([ids[i] for i in order], n_arms)
        assert np.array_equal(again, arm[order])
        assert np.array_equal(assign_arms(ids[:100], n_arms), arm[:100])
    # another salt, another split
    assert not np.array_equal(assign_arms(ids, 2, salt="other"), assign_arms(ids, 2))


def test_abtest_is_deterministic_for_a_seed(sim_dir, ctr_run, tmp_path):
    cfg = AbtestConfig(bootstrap=50, requests=300)
    a = run_abtest(sim_dir, _arms(ctr_run), tmp_path / "a", cfg)
    b = run_abtest(sim_dir, _arms(ctr_run), tmp_path / "b", cfg)
    assert _stable(a.summary) == _stable(b.summary)
    ia = pl.read_parquet(tmp_path / "a" / "impressions.parquet")
    ib = pl.read_parquet(tmp_path / "b" / "impressions.parquet")
    assert ia.height > 0 and ia.equals(ib)
    run_abtest(sim_dir, _arms(ctr_run), tmp_path / "c", AbtestConfig(bootstrap=50, requests=300, seed=1))
    assert not pl.read_parquet(tmp_path / "c" / "impressions.parquet").equals(ia)
    for name in ("abtest.json", "abtest.md", "abtest_lifts.png", "impressions.parquet"):
        assert (tmp_path / "a" / name).exists()


def test_random_ranker_loses_ctr_and_revenue(sim_dir, ctr_run, tmp_path):
    res = run_abtest(sim_dir, _arms(ctr_run), tmp_path / "out", FAST)
    s = json.loads((tmp_path / "out" / "abtest.json").read_text())
    assert s == json.loads(json.dumps(res.summary))
    trained, rand = s["arms"]
    assert rand["lift"]["ctr"]["lift"] < 0 and rand["ctr"] < trained["ctr"]
    assert rand["lift"]["revenue"]["lift"] < 0 and rand["revenue_per_user"] < trained["revenue_per_user"]
    assert rand["expected_ctr"] < trained["expected_ctr"]  # the truth's own click probabilities agree
    for arm in s["arms"]:
        for key in ("impressions", *METRICS):
            assert key in arm
    for metric in METRICS:
        lift = rand["lift"][metric]
        lo, hi = lift["ci"]
        assert lo is None or lo <= hi
    assert len(s["daily"]) == 7 and s["setup"]["requests"] == sum(a["requests"] for a in s["arms"])
    md = (tmp_path / "out" / "abtest.md").read_text()
    assert "| adsformer |" in md and "lift vs adsformer" in md


def test_clicks_only_on_shown_ads_and_their_events_reach_the_service(sim_dir, ctr_run, tmp_path, monkeypatch):
    served: list[tuple[str, int, str, int]] = []
    sent: list[tuple[str, dict]] = []
    rank, send = LocalArm.rank, LocalArm.send

    def spy_rank(self, user_id, query, ts, n):
        ads, personalized = rank(self, user_id, query, ts, n)
        served.extend((user_id, ts, a.listing_id, a.position) for a in ads)
        return ads, personalized

    def spy_send(self, user_id, events, now):
        assert all(e["ts"] < now for e in events)  # only what happened before the request
        sent.extend((user_id, e) for e in events)
        return send(self, user_id, events, now)

    monkeypatch.setattr(LocalArm, "rank", spy_rank)
    monkeypatch.setattr(LocalArm, "send", spy_send)
    run_abtest(sim_dir, _arms(ctr_run), tmp_path / "out", FAST)
    imp = pl.read_parquet(tmp_path / "out" / "impressions.parquet")
    shown = [
        (u, t, li, p) for u, t, li, p in imp.select("user_id", "ts", "listing_id", "position").iter_rows()
    ]
    assert sorted(shown) == sorted(served)  # every ad shown is one the service returned, once
    clicks = imp.filter(pl.col("clicked") == 1)
    assert clicks.height > 0
    assert imp.filter((pl.col("purchased") == 1) & (pl.col("clicked") == 0)).height == 0
    assert imp.filter(pl.col("clicked") == 0)["charge"].abs().max() == 0
    # positions are 1..k within each request
    per_request = imp.group_by("arm", "request").agg(pl.col("position").sort())
    assert all(list(p) == list(range(1, len(p) + 1)) for p in per_request["position"])
    # a click's view reaches the service before the user's next request (when there is one)
    views = {(u, e["listing_id"], e["ts"]) for u, e in sent if e["action"] == "view"}
    next_ts = imp.select("user_id", "ts").unique().sort("ts")
    later = {u: max(ts) for u, ts in next_ts.group_by("user_id").agg(pl.col("ts")).iter_rows()}
    delivered = 0
    for u, ts, li in clicks.select("user_id", "ts", "listing_id").iter_rows():
        if later[u] > ts + 30:
            delivered += any((u, li, ts + d) in views for d in range(1, 31))
    assert delivered > 0


def test_budgets_deplete_and_never_go_negative(sim_dir, ctr_run, tmp_path):
    res = run_abtest(sim_dir, _arms(ctr_run), tmp_path / "out", FAST)
    imp = pl.read_parquet(tmp_path / "out" / "impressions.parquet")
    budget = pl.read_parquet(sim_dir / "listings.parquet", columns=["listing_id", "budget"])
    share = res.summary["setup"]["budget_share_per_arm"]
    assert imp["charge"].min() >= 0
    assert (imp["charge"] <= imp["cpc"] + 1e-12).all()
    spent = (
        imp.group_by("arm", "day", "listing_id")
        .agg(pl.col("charge").sum().alias("spent"))
        .join(budget, on="listing_id")
    )
    assert (spent["spent"] <= spent["budget"] * share + 1e-9).all()
    assert sum(r.budget_exhausted for r in res.results) > 0  # the tiny run does spend budgets
    assert all(r.min_budget_left >= 0 for r in res.results if np.isfinite(r.min_budget_left))
    # a listing whose day's budget is spent is not shown again that day in that arm
    ordered = imp.sort("arm", "ts", "position").join(budget, on="listing_id")
    ordered = ordered.with_columns(
        pl.col("charge").cum_sum().over("arm", "day", "listing_id").alias("cum"),
    )
    after = ordered.with_columns(
        (pl.col("cum") - pl.col("charge") >= pl.col("budget") * share - 1e-9).alias("spent_before")
    )
    assert after.filter(pl.col("spent_before")).height == 0


def test_http_arm_through_the_service_app(sim_dir, ctr_run, tmp_path):
    from adsformer.serving.app import create_app
    from adsformer.serving.settings import ServingSettings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    settings = ServingSettings(
        run=ctr_run,
        catalog=sim_dir,
        api_keys=["k"],
        cache_ttl_s=0,
        event_max_future_s=10**6,
    )
    client = TestClient(create_app(settings))
    arms = with_urls(_arms(ctr_run), ["adsformer=http://testserver"])
    cfg = AbtestConfig(bootstrap=50, requests=150, api_key="k")
    res = run_abtest(sim_dir, arms, tmp_path / "out", cfg, clients={"adsformer": client})
    http = res.summary["arms"][0]
    assert http["kind"] == "http" and http["ctr_run"] == ctr_run.name and http["impressions"] > 0
    assert http["personalized_share"] > 0
    # without the API key the events are refused, with one line saying so
    with pytest.raises(AbtestError, match="API key"):
        run_abtest(
            sim_dir,
            arms,
            tmp_path / "no-key",
            AbtestConfig(bootstrap=50, requests=50),
            clients={"adsformer": client},
        )


def test_cli_abtest(sim_dir, ctr_run, tmp_path):
    out = tmp_path / "ab"
    res = runner.invoke(
        app,
        [
            "abtest",
            "--data",
            str(sim_dir),
            "--arm",
            f"adsformer={ctr_run}",
            "--arm",
            "random=random",
            "--out",
            str(out),
            "--requests",
            "200",
            "--bootstrap",
            "50",
            "--workers",
            "1",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "online A/B test" in res.output and "wrote" in res.output
    s = json.loads((out / "abtest.json").read_text())
    assert [a["name"] for a in s["arms"]] == ["adsformer", "random"] and s["arms"][0]["lift"] is None
    one = runner.invoke(
        app, ["abtest", "--data", str(sim_dir), "--arm", f"a={ctr_run}", "--out", str(tmp_path / "x")]
    )
    assert one.exit_code == 1 and "two or more --arm" in one.output


def test_a_dataset_from_another_world_is_refused(sim_dir, ctr_run, tmp_path):
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(sim_dir, copy)
    truth = json.loads((copy / "truth.json").read_text())
    truth["config"]["seed"] = 1  # not the seed that wrote these tables
    (copy / "truth.json").write_text(json.dumps(truth))
    with pytest.raises(UserError, match="does not give the same requests"):
        run_abtest(copy, _arms(ctr_run), tmp_path / "out", FAST)
    assert not (tmp_path / "out").exists()


def test_arms_in_worker_processes_give_the_same_run(sim_dir, ctr_run, tmp_path):
    one = run_abtest(sim_dir, _arms(ctr_run), tmp_path / "one", AbtestConfig(bootstrap=50, requests=120))
    two = run_abtest(
        sim_dir, _arms(ctr_run), tmp_path / "two", AbtestConfig(bootstrap=50, requests=120, workers=2)
    )
    assert two.summary["timing"]["workers"] == 2
    assert _stable(one.summary) == _stable(two.summary)
    assert pl.read_parquet(tmp_path / "one" / "impressions.parquet").equals(
        pl.read_parquet(tmp_path / "two" / "impressions.parquet")
    )
