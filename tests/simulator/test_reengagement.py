"""Re-engagement: the statistics function against brute force, and the simulator's returns."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from adsformer.data.reengagement import reengagement_shares, touched_before
from adsformer.data.schema import Dataset, DatasetMeta
from adsformer.simulator import SimulatorConfig, generate
from adsformer.simulator.config import REENGAGEMENT_TARGETS

T0 = 1_700_000_000
#: a quarter of the demo's users on the demo's catalogue: the scale the defaults are calibrated at
QUARTER_DEMO = SimulatorConfig.preset("demo").with_overrides(n_users=1000, images=False)


def _dataset(events: pl.DataFrame, impressions: pl.DataFrame) -> Dataset:
    return Dataset(
        pl.DataFrame({"listing_id": ["a"]}), events, impressions, DatasetMeta(name="t", source="t")
    )


def _brute(rows: pl.DataFrame, touches: pl.DataFrame, window: int) -> list[bool]:
    """For each row, scan every touch: same user, same listing, ts - window <= touch ts < ts."""
    out = []
    tl = touches.to_dicts()
    for r in rows.to_dicts():
        out.append(
            r["listing_id"] is not None
            and any(
                e["user_id"] == r["user_id"]
                and e["listing_id"] == r["listing_id"]
                and r["ts"] - window <= e["ts"] < r["ts"]
                for e in tl
            )
        )
    return out


def _events(rows: list[tuple[str, int, str, str | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={"user_id": pl.String, "ts": pl.Int64, "action": pl.String, "listing_id": pl.String},
        orient="row",
    )


def test_hand_made_cases():
    t = T0
    ev = _events(
        [
            ("u1", t, "view", "a"),
            ("u1", t + 3600, "view", "a"),  # touched exactly 3600 s before: in the window
            ("u1", t + 7201, "view", "a"),  # 3601 s after the last touch: out
            ("u1", t + 7201, "purchase", "a"),  # same second as the view: not a touch of itself
            ("u2", t + 10, "view", "a"),  # another user's touch never counts
            ("u1", t + 20, "search", None),
            ("u1", t + 30, "cart_add", "b"),
            ("u1", t + 40, "purchase", "b"),  # cart_add 10 s before: touched
            ("u2", t + 50, "purchase", "c"),  # never touched
        ]
    )
    imp = pl.DataFrame(
        {
            "request_id": ["r1", "r1", "r2", "r3"],
            "user_id": ["u1", "u1", "u2", "u1"],
            "ts": [t + 35, t + 35, t + 10, t + 5000],
            "listing_id": ["b", "a", "a", "b"],
            "clicked": [1, 1, 1, 0],
        }
    )
    ds = _dataset(ev, imp)
    got = {r["kind"]: (r["rows"], r["touched"]) for r in reengagement_shares(ds, 3600, ("cart_add",))}
    # clicks: (u1,b) at +35 after cart +30: yes; (u1,a) at +35 after view at t: yes; (u2,a) at +10: its own
    # view is the same second: no. views: a@+3600 yes, a@+7201 no, u2 a@+10 no, u1 a@t no.
    assert got == {
        "clicks": (3, 2),
        "views": (4, 1),
        "purchases": (3, 1),
        "impressions": (4, 2),
        "cart_add": (1, 0),
    }
    for kind in ("clicks", "views", "purchases"):
        rows = (
            imp.filter(pl.col("clicked") == 1)
            if kind == "clicks"
            else ev.filter(pl.col("action") == kind[:-1])
        )
        assert touched_before(rows, ev, 3600).to_list() == _brute(rows, ev, 3600), kind
    assert [r["share"] for r in reengagement_shares(_dataset(ev.clear(), imp.clear()))] == [None] * 4


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force_on_random_logs(seed):
    rng = np.random.default_rng(seed)
    n = 400
    ev = pl.DataFrame(
        {
            "user_id": rng.choice(["u1", "u2", "u3"], n),
            "ts": T0 + rng.integers(0, 4 * 3600, n),
            "action": rng.choice(["view", "purchase", "favorite", "search"], n, p=[0.6, 0.1, 0.2, 0.1]),
            "listing_id": rng.choice(["a", "b", "c", "d", "e"], n),
        }
    ).with_columns(pl.when(pl.col("action") != "search").then(pl.col("listing_id")))
    targets = ev.sample(150, seed=seed).select("user_id", "listing_id", "ts")
    window = int(rng.integers(60, 3600))
    assert touched_before(targets, ev, window).to_list() == _brute(targets, ev, window)


@pytest.fixture(scope="module")
def quarter_demo():
    return generate(QUARTER_DEMO)


def test_default_shares_within_calibration(quarter_demo):
    """The simulator's own re-engagement shares are within a factor 1.5 of the real logs' (the targets its
    defaults are calibrated to), and the summary in truth.json is the same computation."""
    ds, truth = quarter_demo
    shares = {r["kind"]: r["share"] for r in reengagement_shares(ds)}
    assert truth.params["summary"]["reengagement"] == shares
    for kind, (_, target) in REENGAGEMENT_TARGETS.items():
        assert target / 1.5 < shares[kind] < target * 1.5, (kind, shares[kind], target)
    s = truth.params["summary"]
    assert s["ctr_touched"] > 3 * s["ctr_untouched"] and s["cvr_touched"] > 1.5 * s["cvr_untouched"]


def test_truth_touch_columns_agree_with_the_log(quarter_demo):
    """An ad the truth calls touched within the hour is one the statistic calls touched (the truth sees
    browsing touches only; the statistic also sees ad clicks' views, so it may find more)."""
    ds, truth = quarter_demo
    t = truth.impressions
    age = t["touch_age_s"]
    assert ((age == -1) | (age > 0)).all()
    assert ((t["touch_recency"] == 0) | (age > 0)).all()  # old touches' recency underflows to 0
    expected = np.exp(-age.to_numpy().clip(0) / QUARTER_DEMO.touch_decay_s)
    np.testing.assert_allclose(
        np.where(age > 0, t["touch_recency"], 0), np.where(age > 0, expected, 0), rtol=1e-5, atol=1e-7
    )
    in_hour = ((age > 0) & (age <= 3600)).to_numpy()
    stat = touched_before(ds.impressions, ds.events).to_numpy()
    assert in_hour.sum() > 1000 and stat[in_hour].all()
    assert stat.mean() < 1.5 * in_hour.mean()


def test_configured_rates_move_the_shares():
    """The knobs act as documented: later purchases are the configured share, returns raise the view share,
    recalled and rewarded touches raise the click share; switched off, returns happen only by chance."""
    base = QUARTER_DEMO.with_overrides(n_users=500)
    ds, _ = generate(base.with_overrides(purchase_later_share=0.5))
    carts = ds.events.filter(pl.col("action") == "cart_add").select(
        "user_id", "listing_id", pl.col("ts").alias("cts")
    )
    buys = ds.events.filter(pl.col("action") == "purchase").with_row_index("buy")
    gap = (
        buys.join(carts, on=["user_id", "listing_id"])
        .filter(pl.col("cts") <= pl.col("ts"))
        .group_by("buy")
        .agg((pl.col("ts").first() - pl.col("cts").max()).alias("gap"))
    )
    assert gap.height == buys.height  # every purchase follows a cart_add of its listing
    later = (gap["gap"] >= 600).mean()
    sd = (0.25 / buys.height) ** 0.5
    assert abs(later - 0.5) < 4 * sd + 0.02, (later, buys.height)

    def shares(**kw: float) -> dict[str, float]:
        d, _ = generate(base.with_overrides(**kw))
        return {r["kind"]: r["share"] for r in reengagement_shares(d)}

    off = shares(revisit_prob=0.0, ad_touch_recall=0.0, w_touch=0.0, pw_touch=0.0)
    on = shares(revisit_prob=0.5, revisit_shop_share=0.0)
    assert off["views"] < 0.05 and off["clicks"] < 0.08
    assert on["views"] > 3 * off["views"] and on["views"] > 0.3
    assert shares()["clicks"] > 3 * off["clicks"]


def test_deterministic_for_a_seed():
    cfg = SimulatorConfig.preset("tiny").with_overrides(seed=5, images=False)
    (a, ta), (b, tb) = generate(cfg), generate(cfg)
    assert a.events.equals(b.events) and a.impressions.equals(b.impressions)
    assert ta.impressions.equals(tb.impressions)
    assert ta.params["summary"]["reengagement"] == tb.params["summary"]["reengagement"]
    c, _ = generate(cfg.with_overrides(seed=6))
    assert not c.events.equals(a.events)


def test_stats_command(tmp_path):
    from typer.testing import CliRunner

    from adsformer.cli import app
    from adsformer.data.schema import write_dataset

    ds, _ = generate(SimulatorConfig.preset("tiny").with_overrides(images=False))
    d = write_dataset(ds, tmp_path / "ds")
    res = CliRunner().invoke(
        app, ["stats", "reengagement", str(d), "--action", "cart_add", "--out", str(tmp_path / "r.json")]
    )
    assert res.exit_code == 0, res.output
    for kind in ("clicks", "views", "purchases", "impressions", "cart_add"):
        assert kind in res.output
    got = json.loads((tmp_path / "r.json").read_text())
    assert got["window_s"] == 3600 and got["shares"] == reengagement_shares(ds, 3600, ("cart_add",))
    res = CliRunner().invoke(app, ["stats", "reengagement", str(tmp_path / "nope")])
    assert res.exit_code == 1 and "not a dataset directory" in res.output
