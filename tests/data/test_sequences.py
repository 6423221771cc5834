import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adsformer.data.sequences import build_sequences, in_window, reference_sequences


def _to_lists(col):
    ids, lengths = col.padded()
    return [list(row[:n]) for row, n in zip(ids, lengths, strict=True)], ids, lengths


def test_window_cap_order_and_strictly_before():
    # user 0 events at t = 100..104 with ids 1..5; user 1 one event
    ev_user = np.array([0, 0, 0, 0, 0, 1])
    ev_ts = np.array([100, 101, 102, 103, 104, 100])
    ev_val = np.array([1, 2, 3, 4, 5, 9])
    imp_user = np.array([0, 0, 0, 1, 2])
    imp_ts = np.array([104, 200, 103, 100, 150])
    col = build_sequences(ev_user, ev_ts, ev_val, imp_user, imp_ts, window_s=3, max_len=2)
    seqs, ids, lengths = _to_lists(col)
    assert seqs[0] == [4, 3]  # ts 103, 102 (104 not strictly before; cap 2)
    assert seqs[1] == []  # everything older than the window
    assert seqs[2] == [3, 2]  # window [100, 103) -> 102, 101, 100 capped to 2 newest
    assert seqs[3] == []  # same-second event is not "before"
    assert seqs[4] == []  # user without events
    assert ids.shape == (5, 2) and ids.dtype == np.int32
    assert (ids[lengths == 0] == 0).all()  # padding is 0


def test_window_boundary_is_inclusive_at_t_minus_window():
    col = build_sequences(
        np.array([0]),
        np.array([100]),
        np.array([7]),
        np.array([0, 0]),
        np.array([160, 161]),
        window_s=60,
        max_len=5,
    )
    seqs, _, _ = _to_lists(col)
    assert seqs == [[7], []]


def test_in_window_is_the_vectorized_rule_for_one_event():
    # [now - window, now): the oldest second counts, the request's own second does not
    assert [in_window(ts, 160, 60) for ts in (99, 100, 159, 160, 161)] == [False, True, True, False, False]
    assert not in_window(100, 100, 0)  # an empty window


def test_same_second_events_newest_first_means_reverse_input_order():
    col = build_sequences(
        np.array([0, 0, 0]),
        np.array([5, 5, 5]),
        np.array([1, 2, 3]),
        np.array([0]),
        np.array([6]),
        window_s=10,
        max_len=5,
    )
    assert _to_lists(col)[0] == [[3, 2, 1]]


def test_no_events_at_all():
    empty = np.array([], dtype=np.int64)
    col = build_sequences(empty, empty, empty, np.array([0, 1]), np.array([10, 20]), window_s=10, max_len=4)
    seqs, ids, lengths = _to_lists(col)
    assert seqs == [[], []] and ids.shape == (2, 4) and lengths.tolist() == [0, 0]


def test_take_and_padded_rows_agree():
    rng = np.random.default_rng(0)
    ev_user = rng.integers(0, 5, 200)
    ev_ts = rng.integers(0, 1000, 200)
    col = build_sequences(
        ev_user,
        ev_ts,
        np.arange(1, 201),
        rng.integers(0, 6, 50),
        rng.integers(0, 1100, 50),
        window_s=300,
        max_len=7,
    )
    rows = np.array([3, 1, 49, 3])
    a, la = col.padded(rows)
    b, lb = col.take(rows).padded()
    assert (a == b).all() and (la == lb).all()


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="window_s"):
        build_sequences(
            np.array([0]), np.array([1]), np.array([1]), np.array([0]), np.array([2]), window_s=-1, max_len=5
        )


@settings(max_examples=150, deadline=None)
@given(
    n_events=st.integers(0, 60),
    n_imps=st.integers(1, 30),
    n_users=st.integers(1, 5),
    window=st.integers(0, 50),
    max_len=st.integers(1, 8),
    seed=st.integers(0, 2**31 - 1),
)
def test_matches_reference_on_random_data(n_events, n_imps, n_users, window, max_len, seed):
    rng = np.random.default_rng(seed)
    ev_user = rng.integers(0, n_users, n_events)
    ev_ts = rng.integers(0, 100, n_events)  # many ties on purpose
    ev_val = rng.integers(1, 1000, n_events)
    imp_user = rng.integers(0, n_users + 1, n_imps)  # includes a user with no events
    imp_ts = rng.integers(0, 120, n_imps)
    col = build_sequences(ev_user, ev_ts, ev_val, imp_user, imp_ts, window_s=window, max_len=max_len)
    got, ids, lengths = _to_lists(col)
    expected = reference_sequences(ev_user, ev_ts, ev_val, imp_user, imp_ts, window_s=window, max_len=max_len)
    assert got == expected
    # invariants: no leakage, window respected, cap respected, padding zero
    assert (lengths <= max_len).all()
    assert all((ids[i, lengths[i] :] == 0).all() for i in range(n_imps))
