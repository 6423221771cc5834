"""Value scores and the second-price auction (paper section 4.1: ads ranked by bid x pCTR x a PCCVR factor).

* value score ``v_i = bid_i * pCTR_i * f_i`` with the PCCVR factor ``f_i = (pPCCVR_i / reference) ** exponent``
  (``f = 1`` without a PCCVR model; ``exponent = 0`` ignores PCCVR; the reference only scales the reported
  values: ranks and prices do not depend on it);
* ads whose bid is below the reserve price take no part;
* the eligible ads are sorted by value (ties: retrieval order) and the top ``n`` win;
* generalized second price: the ad at rank r pays per click the least bid that keeps its rank,
  ``cpc_r = v_{r+1} / (pCTR_r * f_r)``, at least the reserve price and at most its own bid; the last
  eligible ad pays the reserve price.

Letters: B candidates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AuctionConfig:
    reserve_price: float = 0.01  # dollars per click
    pccvr_exponent: float = 0.5
    pccvr_reference: float = 0.1  # a typical P(purchase | click); only scales the value scores

    def __post_init__(self) -> None:
        if self.reserve_price < 0 or self.pccvr_exponent < 0 or self.pccvr_reference <= 0:
            raise ValueError(f"bad auction settings {self}: reserve and exponent >= 0, reference > 0")


@dataclass(frozen=True)
class AuctionResult:
    winners: np.ndarray  # (n,) candidate indices, best first
    value: np.ndarray  # (B,) value scores of every candidate
    factor: np.ndarray  # (B,) PCCVR factors
    cpc: np.ndarray  # (n,) cost per click of each winner
    eligible: int  # candidates whose bid reaches the reserve price


def pccvr_factor(p_pccvr: np.ndarray | None, n: int, cfg: AuctionConfig) -> np.ndarray:
    """(B,) factors: ``(p / reference) ** exponent``, ones without PCCVR predictions."""
    if p_pccvr is None or cfg.pccvr_exponent == 0:
        return np.ones(n)
    p = np.clip(np.asarray(p_pccvr, np.float64), 1e-12, 1.0)
    return (p / cfg.pccvr_reference) ** cfg.pccvr_exponent


def run_auction(
    bids: np.ndarray, p_ctr: np.ndarray, factor: np.ndarray, n: int, cfg: AuctionConfig
) -> AuctionResult:
    """Rank candidates by value score and price the top ``n`` by generalized second price."""
    bids = np.asarray(bids, np.float64)
    p_ctr = np.asarray(p_ctr, np.float64)
    if not (bids.shape == p_ctr.shape == factor.shape) or bids.ndim != 1:
        raise ValueError(f"bids {bids.shape}, p_ctr {p_ctr.shape}, factor {factor.shape} must be (B,)")
    value = bids * p_ctr * factor  # (B,)
    eligible = np.flatnonzero((bids >= cfg.reserve_price) & (p_ctr > 0))
    ranked = eligible[np.argsort(-value[eligible], kind="stable")]  # best first; ties keep retrieval order
    winners = ranked[: max(0, int(n))]
    next_value = np.append(value[ranked[1:]], 0.0)[: winners.size]  # the value each winner had to beat
    quality = p_ctr[winners] * factor[winners]
    cpc = np.minimum(bids[winners], np.maximum(cfg.reserve_price, next_value / quality))
    return AuctionResult(winners, value, factor, cpc, int(eligible.size))
