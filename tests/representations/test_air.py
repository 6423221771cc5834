"""AIR: related pairs without leakage, the in-batch softmax with masked duplicates, recall@k, end to end."""

import json

import numpy as np
import polars as pl
import pytest
import torch

from adsformer.representations.air import (
    AIRConfig,
    build_inputs,
    recall_at_k,
    related_pairs,
    represent_air,
)
from adsformer.representations.contrastive import fit_pairs, in_batch_softmax_loss
from adsformer.representations.table import RepresentationTable, TableError
from adsformer.simulator import SimulatorConfig, simulate


def test_related_pairs_from_sessions_and_requests_before_the_cutoff():
    events = pl.DataFrame(
        {
            "user_id": ["u", "u", "u", "u", "v"],
            "ts": [0, 10, 20, 5000, 30],
            "listing_id": ["a", "a", "b", "c", "d"],
        }
    )
    impressions = pl.DataFrame(
        {
            "request_id": ["r1", "r1", "r1", "r2", "r2"],
            "ts": [40, 40, 40, 9000, 9000],
            "listing_id": ["x", "y", "z", "x", "z"],
            "clicked": [1, 1, 0, 1, 1],
        }
    )
    pairs = related_pairs(events, impressions, gap_s=1800, cutoff_ts=6000)
    got = sorted(zip(pairs["a"], pairs["b"], strict=True))
    # a->a is a repeat, b -> c crosses a 30-minute gap, r2 is after the cutoff, z was not clicked
    assert got == [("a", "b"), ("x", "y")]


def test_related_pairs_keep_the_requests_order_so_training_is_reproducible():
    # many requests: a hash-ordered group-by would list them in a different order from run to run, and
    # the seeded training order (a permutation of the pairs' rows) with them
    n = 300
    impressions = pl.DataFrame(
        {
            "request_id": [f"r{i:03d}" for i in range(n) for _ in range(2)],
            "ts": [i for i in range(n) for _ in range(2)],
            "listing_id": [f"l{(i + k) % 17}" for i in range(n) for k in range(2)],
            "clicked": [1] * (2 * n),
        }
    )
    events = pl.DataFrame(schema={"user_id": pl.String, "ts": pl.Int64, "listing_id": pl.String})
    pairs = related_pairs(events, impressions, gap_s=1800, cutoff_ts=None)
    assert pairs["group"].to_list() == [f"rr{i:03d}" for i in range(n)]
    assert pairs["a"].to_list()[:3] == ["l0", "l1", "l2"] and pairs["b"].to_list()[:3] == ["l1", "l2", "l3"]


def test_in_batch_softmax_masks_copies_of_the_positive():
    z = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), dim=1)
    a, b = torch.tensor([0, 0, 2]), torch.tensor([1, 1, 3])  # pairs 0 and 1 are the same pair
    loss = in_batch_softmax_loss(z, z, a, b, temperature=0.01)
    assert loss.item() < 1e-3  # without the mask the duplicate would cost log 2 per direction
    shuffled = in_batch_softmax_loss(z, z.flip(0), a, b, temperature=0.01)
    assert shuffled.item() > 10


def test_recall_at_k_ranks_against_every_listing_and_skips_missing_vectors():
    v = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.0, 0.0]], np.float32)
    a, b = np.array([0, 0, 0]), np.array([1, 2, 3])
    r = recall_at_k(v, a, b, (1, 2))
    assert r == {"recall@1": pytest.approx(1 / 3), "recall@2": pytest.approx(2 / 3)}


def test_inputs_concatenate_tables_flags_and_numeric():
    listings = pl.DataFrame(
        {"listing_id": ["a", "b", "c"], "f_x": [1.0, None, 3.0], "price": [1.0, 2.0, 3.0]}
    )
    t1 = RepresentationTable("t1", "test", ["a", "b"], np.array([[3.0, 4.0], [1.0, 0.0]], np.float32))
    t2 = RepresentationTable("t2", "test", ["c"], np.array([[2.0]], np.float32))
    inp = build_inputs(listings, [t1, t2])
    assert inp.ids == ["a", "b", "c"] and inp.x.shape == (3, 2 + 1 + 1 + 1 + 2)
    np.testing.assert_allclose(inp.x[0, :3], [0.6, 0.8, 1.0])  # unit vector, present
    np.testing.assert_allclose(inp.x[2, :3], [0.0, 0.0, 0.0])  # missing in t1
    assert inp.x[1, 5] == 0.0  # missing numeric -> the mean (0 after standardizing)
    with pytest.raises(TableError, match="at least one content table"):
        build_inputs(listings, [])


def test_air_end_to_end_beats_its_input_on_related_pairs(tmp_path):
    data = tmp_path / "data"
    simulate(SimulatorConfig.preset("tiny").with_overrides(images=False), data)
    listings = pl.read_parquet(data / "listings.parquet")
    rng = np.random.default_rng(0)
    taxa = listings["taxonomy_id"].to_numpy()
    codes = {t: i for i, t in enumerate(sorted(set(taxa)))}
    onehot = np.eye(len(codes), dtype=np.float32)[[codes[t] for t in taxa]]
    noisy = onehot + rng.normal(scale=0.7, size=onehot.shape).astype(np.float32)
    table = RepresentationTable("content", "test", listings["listing_id"].to_list(), noisy).save(
        tmp_path / "content"
    )
    cfg = AIRConfig(tables=(str(table),), dim=32, hidden=64, epochs=20, lr=3e-3, batch_size=128, ks=(10, 50))
    report = represent_air(data, tmp_path / "air", cfg)
    recall = json.loads((tmp_path / "air" / "recall.json").read_text())["recall"]
    assert set(recall) == {"air", "content"} and report["retrieval"]["recall"] == recall
    assert recall["air"]["recall@50"] > recall["content"]["recall@50"]
    loaded = RepresentationTable.load(tmp_path / "air")
    np.testing.assert_allclose(np.linalg.norm(loaded.vectors, axis=1), 1.0, atol=1e-5)
    assert (tmp_path / "air" / "quality.json").exists()


def test_bad_settings_are_refused():
    with pytest.raises(TableError, match="temperature"):
        AIRConfig(temperature=0)
    with pytest.raises(TableError, match="eval_fraction"):
        AIRConfig(eval_fraction=1.0)


def test_fit_pairs_takes_seeded_permutations_in_full_batches_one_step_each():
    w = torch.nn.Parameter(torch.tensor(2.0))
    seen, epochs = [], []

    def batch_loss(rows):
        seen.append(rows.tolist())
        return w**2

    losses = fit_pairs(
        batch_loss,
        torch.optim.SGD([w], lr=0.1),
        10,
        epochs=2,
        batch_size=4,
        rng=np.random.default_rng(0),
        on_epoch=lambda epoch, _loss: epochs.append(epoch),
    )
    rng = np.random.default_rng(0)
    perms = [rng.permutation(10), rng.permutation(10)]
    assert seen == [p[s * 4 : (s + 1) * 4].tolist() for p in perms for s in range(2)]  # 2 rows dropped
    assert epochs == [0, 1]
    # SGD on w^2 multiplies w by 0.8 a step: each epoch's mean of w^2 before its two steps
    assert losses == pytest.approx([(4 + 4 * 0.64) / 2, (4 * 0.64**2 + 4 * 0.64**3) / 2])
