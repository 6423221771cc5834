"""The shallow position tower: zero at start, reads its context, clamps, hides positions only in training."""

import pytest
import torch

from adsformer.layers.position import PositionTower


def _randomized(tower: PositionTower) -> PositionTower:
    with torch.no_grad():
        tower.out.weight.normal_()
        tower.out.bias.normal_()
    return tower


def test_starts_at_zero_and_gives_one_logit_per_row():
    torch.manual_seed(0)
    tower = PositionTower(10, {"c_device": 4})
    out = tower(torch.tensor([0, 1, 5, 10]), {"c_device": torch.tensor([1, 2, 3, 1])})
    assert out.shape == (4,) and torch.equal(out, torch.zeros(4))


def test_golden_values():
    torch.manual_seed(0)
    tower = _randomized(PositionTower(4, {"c_device": 3}, dim=2, hidden=3)).eval()
    out = tower(torch.tensor([1, 2, 3]), {"c_device": torch.tensor([1, 2, 1])})
    torch.testing.assert_close(out, torch.tensor([-1.8173, -1.5677, -1.7005]), atol=1e-4, rtol=0)


def test_positions_beyond_max_share_the_last_slot():
    torch.manual_seed(0)
    tower = _randomized(PositionTower(5, {})).eval()
    out = tower(torch.tensor([5, 6, 50]), {})
    assert torch.equal(out, out[:1].expand(3))


def test_context_changes_the_logit_and_other_fields_are_ignored():
    torch.manual_seed(0)
    tower = _randomized(PositionTower(5, {"c_device": 3})).eval()
    pos = torch.tensor([2, 2])
    a = tower(pos, {"c_device": torch.tensor([1, 2]), "query": torch.tensor([4, 4])})
    b = tower(pos, {"c_device": torch.tensor([1, 2]), "query": torch.tensor([9, 1])})
    assert torch.equal(a, b) and a[0] != a[1]


def test_linear_tower_is_additive_in_position_and_context():
    """hidden = 0: the position effect is the same on every device (no interaction)."""
    torch.manual_seed(0)
    tower = _randomized(PositionTower(5, {"c_device": 3}, hidden=0)).eval()
    dev = {"c_device": torch.tensor([1, 2])}
    gap = tower(torch.tensor([1, 1]), dev) - tower(torch.tensor([4, 4]), dev)
    torch.testing.assert_close(gap[0], gap[1])


def test_dropout_hides_positions_in_training_only():
    torch.manual_seed(0)
    tower = _randomized(PositionTower(5, {}, dropout=0.5))
    pos = torch.full((4000,), 3)
    unknown, known = tower.eval()(torch.zeros(1, dtype=torch.long), {}), tower(pos[:1], {})
    trained = tower.train()(pos, {})
    hidden = torch.isclose(trained, unknown.expand_as(trained))
    assert torch.isclose(trained[~hidden], known.expand_as(trained[~hidden])).all()
    assert 0.45 < hidden.float().mean().item() < 0.55
    assert torch.equal(tower.eval()(pos, {}), known.expand(4000))


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="max_position"):
        PositionTower(0, {})
    with pytest.raises(ValueError, match="dropout"):
        PositionTower(5, {}, dropout=1.0)
