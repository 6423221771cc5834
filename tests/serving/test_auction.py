"""Value scores and the generalized second-price auction."""

from __future__ import annotations

import numpy as np
import pytest

from adsformer.serving.auction import AuctionConfig, pccvr_factor, run_auction

CFG = AuctionConfig(reserve_price=0.05, pccvr_exponent=0.5, pccvr_reference=0.1)


def test_golden_auction():
    bids = np.array([1.0, 0.5, 2.0, 0.04, 0.8])
    p_ctr = np.array([0.02, 0.05, 0.01, 0.9, 0.02])
    factor = np.ones(5)
    res = run_auction(bids, p_ctr, factor, 3, CFG)
    # values 0.02, 0.025, 0.02, (0.036: bid under reserve), 0.016; ties keep retrieval order
    assert res.winners.tolist() == [1, 0, 2] and res.eligible == 4
    np.testing.assert_allclose(res.value, bids * p_ctr)
    # each pays the next value / own pCTR: 0.02/0.05, 0.02/0.02, 0.016/0.01 capped at the bid
    np.testing.assert_allclose(res.cpc, [0.4, 1.0, 1.6])


def test_last_ad_pays_the_reserve_and_cpc_is_bounded():
    rng = np.random.default_rng(0)
    for _ in range(50):
        B = int(rng.integers(1, 30))
        bids = rng.uniform(0.01, 2, B)
        p = rng.uniform(0.001, 0.2, B)
        f = pccvr_factor(rng.uniform(0.01, 0.3, B), B, CFG)
        res = run_auction(bids, p, f, B, CFG)
        w = res.winners
        assert np.all(bids[w] >= CFG.reserve_price)
        assert np.all(np.diff(res.value[w]) <= 0)  # ranked by value
        assert np.all(res.cpc >= CFG.reserve_price - 1e-12) and np.all(res.cpc <= bids[w] + 1e-12)
        if w.size:
            assert res.cpc[-1] == pytest.approx(CFG.reserve_price)
        # the price keeps the rank: at cpc the ad's value still reaches the next one's
        assert np.all(res.cpc[:-1] * p[w[:-1]] * f[w[:-1]] >= res.value[w[1:]] - 1e-12)


def test_pccvr_factor():
    assert np.array_equal(pccvr_factor(None, 3, CFG), np.ones(3))
    np.testing.assert_allclose(pccvr_factor(np.array([0.1, 0.4]), 2, CFG), [1.0, 2.0])
    assert np.array_equal(pccvr_factor(np.array([0.3]), 1, AuctionConfig(pccvr_exponent=0)), [1.0])
    # the reference scales values but never ranks or prices
    p, bids, q = np.array([0.02, 0.03, 0.01]), np.array([1.0, 0.5, 2.0]), np.array([0.05, 0.2, 0.1])
    a = run_auction(bids, p, pccvr_factor(q, 3, CFG), 3, CFG)
    b = run_auction(bids, p, pccvr_factor(q, 3, AuctionConfig(0.05, 0.5, 0.37)), 3, CFG)
    assert a.winners.tolist() == b.winners.tolist()
    np.testing.assert_allclose(a.cpc, b.cpc)


def test_bad_settings_and_shapes():
    with pytest.raises(ValueError):
        AuctionConfig(reserve_price=-1)
    with pytest.raises(ValueError, match="must be"):
        run_auction(np.ones(2), np.ones(3), np.ones(2), 1, CFG)
