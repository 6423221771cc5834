"""Shared fixtures: a tiny hand-made canonical dataset."""

from __future__ import annotations

import pytest
import torch

from adsformer.data.schema import Dataset
from tinydata import make_tiny_dataset

# pytest -n 2 runs two workers on two cores: one torch thread each, or OpenMP oversubscription makes every
# training test many times slower.
torch.set_num_threads(1)


@pytest.fixture
def tiny_dataset() -> Dataset:
    return make_tiny_dataset()
