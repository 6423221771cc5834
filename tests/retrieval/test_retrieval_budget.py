"""The budget bitmap: the layout faiss reads, live updates, unknown ids and missing budgets."""

import numpy as np
import pytest

from adsformer.retrieval.budget import BudgetState
from adsformer.retrieval.config import RetrievalError


def test_bitmap_layout_matches_faiss_idselectorbitmap():
    ids = [f"l{i}" for i in range(19)]
    budgets = np.array([1.0, 0.0, -2.0, np.nan] + [5.0] * 15)
    state = BudgetState(ids, budgets)
    assert state.bitmap.size == 3  # ceil(19 / 8) bytes
    assert (
        state.has_rows(np.arange(19)).tolist() == [True, False, False, True] + [True] * 15
    )  # NaN = no limit
    sel = state.selector()
    assert [sel.is_member(i) for i in range(5)] == [True, False, False, True, True]
    state.set("l0", 0.0)
    state.set("l2", 0.5)
    assert not sel.is_member(0) and sel.is_member(2)  # the selector reads the live bitmap
    assert state.in_budget == 17 == int(np.unpackbits(state.bitmap, bitorder="little")[:19].sum())
    state.set("l2", 3.0)  # already in budget: the count does not move
    state.set("l1", -1.0)
    assert state.in_budget == 17
    assert state.has("l2") and not state.has("l0")
    assert state.selector() is sel


def test_no_budgets_means_everything_is_in_budget():
    state = BudgetState(["a", "b", "c"])
    assert state.in_budget == 3 and state.has("b")


def test_bad_input_is_a_clear_error():
    state = BudgetState(["a", "b"], np.array([1.0, 2.0]))
    with pytest.raises(RetrievalError, match=r"unknown listing id 'zz'.*2 listings"):
        state.set("zz", 1.0)
    with pytest.raises(RetrievalError, match="NaN"):
        state.set("a", float("nan"))
    with pytest.raises(RetrievalError, match="unique"):
        BudgetState(["a", "a"])
    with pytest.raises(RetrievalError, match="expected 2 values"):
        BudgetState(["a", "b"], np.array([1.0]))
