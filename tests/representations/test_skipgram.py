import json

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from adsformer.cli import app
from adsformer.config import SplitConfig
from adsformer.data.schema import write_dataset
from adsformer.data.splits import time_split
from adsformer.representations.skipgram import SkipGramConfig, build_sessions, cutoff, train_skipgram
from adsformer.representations.table import RepresentationTable, TableError
from tinydata import make_tiny_dataset


def _events(rows):
    return pl.DataFrame(rows, schema=["user_id", "ts", "action", "listing_id"], orient="row")


def test_sessions_split_on_gap_collapse_repeats_and_upsample_purchases():
    ev = _events(
        [
            ("u1", 0, "view", "a"),
            ("u1", 10, "view", "a"),  # repeat: collapsed
            ("u1", 20, "view", "b"),
            ("u1", 20 + 1801, "view", "c"),  # gap > 1800 s: new session of one listing, dropped
            ("u2", 5, "view", "c"),
            ("u2", 6, "search", None),  # no listing: ignored
            ("u2", 7, "purchase", "d"),  # purchase session: repeated
            ("u3", 1, "view", "e"),
            ("u3", 2, "view", "f"),  # after the cutoff below
        ]
    )
    s = build_sessions(ev, SkipGramConfig(purchase_upsample=3), cutoff_ts=None)
    assert s.n_sessions == 3 and s.n_purchase_sessions == 1
    assert sorted(map(tuple, s.sentences)) == [("a", "b"), ("c", "d"), ("c", "d"), ("c", "d"), ("e", "f")]
    early = build_sessions(ev, SkipGramConfig(purchase_upsample=1), cutoff_ts=2)
    assert early.sentences == [] and early.n_sessions == 0  # only ("u3", 1, "e") is before ts 2


def test_no_events_from_the_test_period_are_read():
    ds = make_tiny_dataset()
    cfg = SkipGramConfig(split=SplitConfig(mode="fraction", val_fraction=0.2, test_fraction=0.4))
    cut = cutoff(ds, "test", cfg.split)
    assert cut == time_split(ds.impressions["ts"].to_numpy(), cfg.split).test_start
    late = _events([("u9", cut, "view", "z1"), ("u9", cut + 1, "view", "z2")])
    events = pl.concat([ds.events.select(late.columns), late])
    s = build_sessions(events, cfg, cut)
    assert s.n_sessions > 0 and not {"z1", "z2"} & {i for sent in s.sentences for i in sent}
    assert cutoff(ds, "val", cfg.split) < cut
    assert cutoff(ds, "all", cfg.split) is None
    with pytest.raises(TableError, match="until='tomorrow'"):
        cutoff(ds, "tomorrow", cfg.split)


def test_seeded_training_is_reproducible_and_clusters_co_viewed_listings():
    rng = np.random.default_rng(0)
    rows = []
    for u in range(200):  # two worlds: users browse within {a0..a9} or within {b0..b9}
        world = "ab"[u % 2]
        for t in range(8):
            rows.append((f"u{u}", t * 60, "view", f"{world}{rng.integers(10)}"))
    ds = make_tiny_dataset()
    ds = ds.__class__(ds.listings, _events(rows), ds.impressions, ds.meta)
    cfg = SkipGramConfig(dim=16, epochs=20, until="all", seed=3)
    t1, t2 = train_skipgram(ds, cfg), train_skipgram(ds, cfg)
    assert t1.ids == t2.ids and np.array_equal(t1.vectors, t2.vectors)
    assert t1.vectors.shape == (20, 16) and t1.vectors.dtype == np.float32
    v = t1.vectors / np.linalg.norm(t1.vectors, axis=1, keepdims=True)
    world = np.array([i[0] for i in t1.ids])
    sims = v @ v.T
    same = sims[world[:, None] == world[None, :]].mean()
    diff = sims[world[:, None] != world[None, :]].mean()
    assert same > diff + 0.3
    assert t1.settings["algorithm"].startswith("gensim Word2Vec sg=1 hs=1")


def test_represent_command_writes_table_and_quality_report(tmp_path):
    write_dataset(make_tiny_dataset(), tmp_path / "data")
    out = tmp_path / "sg"
    r = CliRunner().invoke(
        app,
        [
            "represent",
            "skipgram",
            "--data",
            str(tmp_path / "data"),
            "--out",
            str(out),
            "--set",
            "dim=8",
            "--set",
            "until=all",
        ],
    )
    assert r.exit_code == 0, r.output
    table = RepresentationTable.load(out)
    assert table.dim == 8 and set(table.ids) <= {"l1", "l2", "l3", "l4"}
    q = json.loads((out / "quality.json").read_text())
    assert q["kind"] == "skipgram" and q["n"] == len(table.ids)
    assert (out / "similarity.png").stat().st_size > 0
    bad = CliRunner().invoke(
        app,
        [
            "represent",
            "skipgram",
            "--data",
            str(tmp_path / "data"),
            "--out",
            str(tmp_path / "x"),
            "--set",
            "gap_s=0",
        ],
    )
    assert bad.exit_code == 1 and "nothing to learn" in bad.output and not (tmp_path / "x").exists()
    neg = CliRunner().invoke(
        app,
        [
            "represent",
            "skipgram",
            "--data",
            str(tmp_path / "data"),
            "--out",
            str(tmp_path / "y"),
            "--set",
            "dim=0",
        ],
    )
    assert neg.exit_code == 1 and "dim=0: must be >= 1" in neg.output and not (tmp_path / "y").exists()
