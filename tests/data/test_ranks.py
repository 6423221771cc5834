"""Request-relative rank features: the rank against a brute-force reference, the offline feature, config."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adsformer.config import ConfigError, DataConfig, SplitConfig, apply_overrides
from adsformer.data.features import build_features
from adsformer.data.ranks import rank_name, ranked_column, resolve_rank_columns, within_request_rank


def _reference(values: np.ndarray, request: np.ndarray) -> np.ndarray:
    out = np.empty(len(values))
    for i in range(len(values)):
        group = values[request == request[i]]
        if len(group) == 1:
            out[i] = 0.5
            continue
        below = (group < values[i]).sum()
        ties = (group == values[i]).sum()
        out[i] = (below + (ties - 1) / 2) / (len(group) - 1)
    return out


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 4), st.sampled_from([-1.0, 0.0, 0.5, 2.0, 7.25])),
        min_size=0,
        max_size=40,
    )
)
def test_rank_matches_brute_force(rows):
    request = np.array([r for r, _ in rows], np.int64)
    values = np.array([v for _, v in rows], np.float32)
    got = within_request_rank(values, request)
    np.testing.assert_allclose(got, _reference(values, request), atol=1e-6)
    assert ((got >= 0) & (got <= 1)).all()


def test_rank_golden():
    values = np.array([30.0, 10.0, 20.0, 10.0, 5.0, 99.0], np.float32)
    request = np.array([0, 0, 0, 0, 1, 2])
    # request 0: 10, 10 tie for ranks 0 and 1 (-> 0.5 / 3), 20 -> 2/3, 30 -> 1; singletons 0.5
    np.testing.assert_allclose(within_request_rank(values, request), [1.0, 1 / 6, 2 / 3, 1 / 6, 0.5, 0.5])


def test_names_and_auto():
    assert ranked_column(rank_name("f_price")) == "f_price" and ranked_column("f_price") is None
    dense = ["price", "bid", "f_price", "f_log_price", "f_rating"]
    assert resolve_rank_columns(("auto",), dense) == ["price", "f_price"]
    assert resolve_rank_columns(("f_rating", "auto"), dense) == ["f_rating", "price", "f_price"]
    assert resolve_rank_columns((), dense) == []
    with pytest.raises(ConfigError, match=r"data\.request_ranks: 'nope'"):
        resolve_rank_columns(("nope",), dense)


def _cfg(**over):
    cfg = DataConfig(split=SplitConfig(mode="fraction", val_fraction=0.2, test_fraction=0.2))
    return apply_overrides(cfg, over)


def test_offline_rank_feature_is_the_price_rank_in_its_request(tiny_dataset):
    fs = build_features(tiny_dataset, _cfg())
    j = fs.dense_names.index("rank(price)")
    mean, std = fs.info.dense_stats["rank(price)"]
    rank = fs.dense[:, j] * std + mean  # undo the standardization
    price = fs.dense[:, fs.dense_names.index("price")]
    np.testing.assert_allclose(rank, within_request_rank(price, fs.request), atol=1e-5)
    # cheaper within the same request -> lower rank
    for r in np.unique(fs.request):
        rows = np.flatnonzero(fs.request == r)
        if rows.size > 1:
            order = np.argsort(price[rows], kind="stable")
            assert np.all(np.diff(rank[rows][order]) >= -1e-6)


def test_request_ranks_can_be_switched_off_and_scoring_keeps_the_trained_order(tiny_dataset):
    assert build_features(tiny_dataset, _cfg(request_ranks=[])).dense_names == ["price"]
    fs = build_features(tiny_dataset, _cfg())
    scoring = _cfg(**{"sequences.pairs": fs.info.pairs})
    again = build_features(tiny_dataset, scoring, fs.vocabs, fs.info.dense_stats, score_all=True)
    # scoring: the trained run's features, in the same order, with the same values
    assert again.dense_names == fs.dense_names
    np.testing.assert_allclose(again.dense, fs.dense, atol=1e-6)
