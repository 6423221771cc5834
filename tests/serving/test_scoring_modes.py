"""A served run scores in the mode it is given: exact (the plain forward's probabilities) or the cached
sequence (the same for a user without history, and for a run of the default encoder, whose sequence never
sees the target; for the paper's encoder close, not equal: tests/models/test_fast_scorer.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from adsformer.data.vocab import Vocabularies
from adsformer.serving.online_features import RequestMemo, _sequence_key
from adsformer.serving.scoring import ServingModel
from adsformer.serving.store import UserState


def _request(model: ServingModel, catalog, history: int):
    ids = catalog.ids[:40]
    bids = catalog.bids[[catalog.row[i] for i in ids]]
    now = 2_000_000_000
    views = [(now - 1 - i, ids[(7 * i) % len(ids)]) for i in range(history)]
    state = UserState(1, {p: views for p in model.pairs if p.startswith("listing:view")})
    return model.features(ids, query=None, state=state, now=now, bids=bids)


def test_exact_and_cached_sequence_modes(ctr_run, catalog):
    exact = ServingModel.load(ctr_run, catalog)
    cached = ServingModel.load(ctr_run, catalog, mode="cached-sequence")
    assert cached.scorer.mode == "cached-sequence" and exact.scorer.mode == "exact"
    new_user, busy = _request(exact, catalog, 0), _request(exact, catalog, 12)
    assert int(busy.seq_len["listing:view"][0]) == min(12, exact.online.max_len) > 1
    plain = exact.probabilities(busy, fast=False)
    np.testing.assert_allclose(exact.probabilities(busy), plain, rtol=0, atol=1e-6)
    np.testing.assert_allclose(cached.probabilities(new_user), exact.probabilities(new_user), atol=1e-6)
    # the run's encoder keeps its sequence from the target (the default): the cached sequence is the model
    assert exact.predictor.model.user.encoder.cfg.sequence_sees_target is False
    np.testing.assert_allclose(cached.probabilities(busy), plain, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="mode"):
        ServingModel.load(ctr_run, catalog, mode="int4")  # type: ignore[arg-type]


def test_the_service_setting_picks_the_mode_of_both_runs(make_service, make_settings):
    assert {m.scorer.mode for m in make_service().models} == {"exact"}
    service = make_service(scoring_mode="cached-sequence")
    assert [m.scorer.mode for m in service.models] == ["cached-sequence", "cached-sequence"]
    with pytest.raises(ValueError, match="scoring_mode"):
        make_settings(scoring_mode="int4")


def test_the_runs_of_a_request_share_sequences_and_touch_signals_without_changing_them(
    ctr_run, pccvr_run, catalog
):
    ctr, pccvr = ServingModel.load(ctr_run, catalog), ServingModel.load(pccvr_run, catalog)
    ids = catalog.ids[:40]
    bids = catalog.bids[[catalog.row[i] for i in ids]]
    now = 2_000_000_000
    state = UserState(1, {p: [(now - 1 - i, ids[(3 * i) % 40]) for i in range(6)] for p in ctr.pairs})
    shared = RequestMemo()
    one = [m.features(ids, query=None, state=state, now=now, bids=bids, shared=shared) for m in (ctr, pccvr)]
    alone = [m.features(ids, query=None, state=state, now=now, bids=bids) for m in (ctr, pccvr)]
    assert len(shared.touch) > 0 and float(one[0].touch[..., 0].sum()) > 0  # some candidate was touched
    for a, b in zip(one, alone, strict=True):
        assert torch.equal(a.touch, b.touch)
        assert a.seq_ids.keys() == b.seq_ids.keys()
        assert all(torch.equal(a.seq_ids[p], b.seq_ids[p]) for p in a.seq_ids)
        assert all(torch.equal(a.seq_len[p], b.seq_len[p]) for p in a.seq_len)
    assert len(shared.touch) == len({(p, tuple(e)) for p, e in alone[0].sequences.items() if e})
    # two runs of one dataset encode the user's sequences once: their sequence keys are equal
    assert len(shared.sequences) == 1 and one[0].seq_ids is one[1].seq_ids
    vocabs = ctr.predictor.artifact.vocabs
    window, length = ctr.online.window_s, ctr.online.max_len
    key = _sequence_key(ctr.pairs, window, length, vocabs)
    assert key == ctr.online.sequence_key == pccvr.online.sequence_key
    # ... and differ when anything that encodes them does: an id, the window, the pairs
    listing = vocabs["listing"]
    changed = Vocabularies({**vocabs.by_name, "listing": dataclasses.replace(listing, ids=listing.ids[::-1])})
    assert _sequence_key(ctr.pairs, window, length, changed) != key
    assert _sequence_key(ctr.pairs, window + 1, length, vocabs) != key
    assert _sequence_key(ctr.pairs[:-1], window, length, vocabs) != key


def test_a_bad_service_setting_is_one_line_naming_it(ctr_run, sim_data):
    from typer.testing import CliRunner

    from adsformer.cli import app

    base = ["serve", "--run", str(ctr_run), "--catalog", str(sim_data)]
    res = CliRunner().invoke(app, [*base, "--set", "scoring_mode=int4", "--set", "max_bid=-1"])
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert res.exit_code == 1 and len(lines) == 1, res.output
    assert (
        "service setting scoring_mode: Input should be 'exact' or 'cached-sequence', got 'int4'" in lines[0]
    )
    assert "service setting max_bid:" in lines[0] and "pydantic.dev" not in lines[0]
    res = CliRunner().invoke(app, [*base, "--set", "default_bid=500"])
    assert res.exit_code == 1 and "service settings: default_bid 500.0 is above max_bid 100.0" in res.output
