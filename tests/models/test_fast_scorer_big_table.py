"""The fast one-user scorer reads big (memory-mapped, indexed, float16) pretrained tables like the model."""

from __future__ import annotations

import numpy as np
import torch

from adsformer.adpm.config import ADPMConfig, PretrainedConfig
from adsformer.adpm.pretrained import FrozenTable
from adsformer.data.inputs import ModelInputs
from adsformer.models.config import ModelConfig
from adsformer.models.fast import FastScorer
from adsformer.models.registry import ModelSpec, build_model

PAIRS = ["listing:view", "shop:view", "query:search"]
VOCAB = {"listing": 61, "shop": 13, "taxonomy": 7, "query": 17}
SPEC = ModelSpec(VOCAB, {"query": 17}, n_dense=2, pairs=PAIRS)
B = 19


def test_indexed_float16_table_in_the_fast_path():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(200, 6)).astype(np.float16)  # the table's own rows, not vocabulary order
    index = rng.choice(200, VOCAB["listing"], replace=False).astype(np.int64)
    index[:2] = -1  # padding and OOV have no vector
    index[rng.random(VOCAB["listing"]) < 0.2] = -1  # listings the table lacks
    torch.manual_seed(0)
    cfg = ModelConfig(adpm=ADPMConfig(pretrained=PretrainedConfig(tables=("big",))))
    model = build_model(cfg, SPEC, [FrozenTable("big", vectors, index >= 0, index=index)]).eval()
    g = torch.Generator().manual_seed(1)
    target = {e: torch.randint(1, VOCAB[e], (B,), generator=g) for e in ("listing", "shop", "taxonomy")}
    categorical = {"query": torch.randint(1, 17, (B,), generator=g)}
    dense = torch.randn(B, 2, generator=g)
    seq_ids = {p: torch.randint(1, VOCAB[p.split(":")[0]], (1, 9), generator=g) for p in PAIRS}
    seq_len = {p: torch.tensor([7]) for p in PAIRS}
    count = torch.randint(0, 3, (B, len(PAIRS)), generator=g).float()  # (B, P) each candidate's touches
    touch = torch.stack([count, torch.where(count > 0, 60.0, -1.0)], dim=2)  # (B, P, 2)
    inputs = ModelInputs(target, categorical, dense, seq_ids, seq_len, touch)  # the one-user form
    with torch.no_grad():
        ref = model(inputs.repeated())
    got = FastScorer(model).logits(inputs)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
