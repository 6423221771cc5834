"""faiss IVF indexes with the live budget bitmap inside the search."""

import numpy as np
import pytest

from adsformer.retrieval.ann import AnnIndex, AnnLayout
from adsformer.retrieval.budget import BudgetState
from adsformer.retrieval.config import AnnConfig, RetrievalError


def _clustered(n, d=16, clusters=20, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, d))
    x = centers[rng.integers(0, clusters, n)] + 0.4 * rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _exact(x, rows, q, k, allowed):
    """Brute force over the allowed global rows: (Q, k) rows and scores."""
    s = q @ x.T
    s[:, ~allowed] = -np.inf
    top = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return rows[top], np.take_along_axis(s, top, 1)


@pytest.mark.parametrize("kind", ["ivf_flat", "flat"])
def test_full_probe_equals_exact_search_with_the_same_budget_filter(kind):
    n = 3000
    x = _clustered(n)
    rows = np.arange(n) * 2 + 1  # global rows need not be 0..n-1 (a table covers part of the catalogue)
    ids = [f"l{i}" for i in range(2 * n + 2)]
    budgets = np.random.default_rng(1).uniform(-1, 3, len(ids))  # about a quarter out of budget
    budget = BudgetState(ids, budgets)
    index = AnnIndex.build(x, rows, AnnConfig(kind=kind, nlist=16))
    q = _clustered(50, seed=7)
    got, scores = index.search(q, 20, budget, nprobe=index.layout.nlist)
    want, want_scores = _exact(x, rows, q, 20, budgets[rows] > 0)
    assert (budgets[got] > 0).all()
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)


def test_a_budget_change_is_seen_by_the_very_next_search_without_a_rebuild():
    x = _clustered(2000)
    ids = [f"l{i}" for i in range(2000)]
    budget = BudgetState(ids, np.full(2000, 10.0))
    index = AnnIndex.build(x, np.arange(2000), AnnConfig(nlist=8, nprobe=8))
    q = x[[5]]
    top = index.search(q, 10, budget)[0][0]
    assert top[0] == 5
    for r in top[:3]:
        budget.set(ids[r], 0.0)
    after = index.search(q, 10, budget)[0][0]
    assert not set(top[:3].tolist()) & set(after.tolist())
    np.testing.assert_array_equal(after[:7], top[3:])  # the rest moved up, in order
    budget.set(ids[5], 0.01)  # budget back: back in the next query
    assert index.search(q, 10, budget)[0][0][0] == 5
    assert index.search(q, 10, None)[0][0][0] == 5  # no budget state: nothing filtered


def test_fewer_in_budget_listings_than_k_pad_with_minus_one():
    x = _clustered(200)
    ids = [f"l{i}" for i in range(200)]
    budgets = np.zeros(200)
    budgets[:3] = 1.0
    index = AnnIndex.build(x, np.arange(200), AnnConfig(kind="flat"))
    got = index.search(x[:1], 10, BudgetState(ids, budgets))[0][0]
    assert sorted(got[:3].tolist()) == [0, 1, 2] and (got[3:] == -1).all()


def test_save_load_round_trip_and_stored_vectors(tmp_path):
    x = _clustered(1500)
    index = AnnIndex.build(x, np.arange(1500) + 10, AnnConfig(nlist=10, nprobe=3))
    index.save(tmp_path / "i.faiss")
    back = AnnIndex.load(tmp_path / "i.faiss", index.layout)
    q = _clustered(20, seed=3)
    for a, b in zip(index.search(q, 15, None), back.search(q, 15, None), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(back.vector(10 + 42), x[42])
    assert back.vector(5) is None  # not indexed
    with pytest.raises(RetrievalError, match="missing"):
        AnnIndex.load(tmp_path / "nope.faiss", index.layout)


def test_layout_defaults_and_pq():
    lay = AnnLayout.resolve(AnnConfig(), 1_000_000, 256)
    assert (lay.kind, lay.nlist, lay.nprobe) == ("ivf_flat", 4000, 125)
    assert AnnLayout.resolve(AnnConfig(), 5000, 64).nlist == 5000 // 39  # >= 39 training vectors per list
    assert AnnLayout.resolve(AnnConfig(pq_above=1000), 5000, 64).kind == "ivf_pq"
    assert AnnLayout.resolve(AnnConfig(sq8_above=1000), 5000, 64).kind == "ivf_sq8"
    assert AnnLayout.resolve(AnnConfig(), 3_000_000, 64).kind == "ivf_sq8"
    assert AnnLayout.resolve(AnnConfig(), 60_000_000, 64).kind == "ivf_pq"
    assert AnnLayout.resolve(AnnConfig(kind="flat"), 5000, 64).nlist == 1
    with pytest.raises(RetrievalError, match="divide"):
        AnnLayout.resolve(AnnConfig(kind="ivf_pq", pq_m=5), 5000, 64)


def test_ivf_pq_filters_and_finds_near_neighbours():
    x = _clustered(4000, d=32)
    ids = [f"l{i}" for i in range(4000)]
    budgets = np.where(np.arange(4000) % 3 == 0, 0.0, 1.0)
    index = AnnIndex.build(
        x, np.arange(4000), AnnConfig(kind="ivf_pq", nlist=16, nprobe=16, pq_m=8, pq_bits=6)
    )
    assert index.layout.kind == "ivf_pq" and index.layout.pq_m == 8
    q = _clustered(30, d=32, seed=5)
    got = index.search(q, 10, BudgetState(ids, budgets))[0]
    assert (budgets[got] > 0).all()
    want = _exact(x, np.arange(4000), q, 10, budgets > 0)[0]
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got.tolist(), want.tolist(), strict=True)])
    assert overlap > 0.3  # 6-byte codes of 32-d vectors: approximate (0.45 here), chance is 10 / 2667


def test_ivf_sq8_full_probe_is_nearly_exact_with_the_budget_filter(tmp_path):
    """int8 vectors: a quarter of the memory, the same neighbours up to near-ties."""
    n = 3000
    x = _clustered(n)
    rows = np.arange(n) * 2 + 1
    ids = [f"l{i}" for i in range(2 * n + 2)]
    budgets = np.random.default_rng(1).uniform(-1, 3, len(ids))
    budget = BudgetState(ids, budgets)
    index = AnnIndex.build(x, rows, AnnConfig(kind="ivf_sq8", nlist=16))
    assert index.layout.kind == "ivf_sq8"
    q = _clustered(50, seed=7)
    got, scores = index.search(q, 20, budget, nprobe=16)
    want, want_scores = _exact(x, rows, q, 20, budgets[rows] > 0)
    assert (budgets[got] > 0).all()
    overlap = np.mean([len(set(a) & set(b)) / 20 for a, b in zip(got.tolist(), want.tolist(), strict=True)])
    assert overlap > 0.95  # measured 0.983
    np.testing.assert_allclose(scores, want_scores, atol=1e-2)
    index.save(tmp_path / "i.faiss")
    back = AnnIndex.load(tmp_path / "i.faiss", index.layout)
    np.testing.assert_array_equal(back.search(q, 20, budget, nprobe=16)[0], got)
    np.testing.assert_allclose(back.vector(2 * 42 + 1), x[42], atol=1e-2)
