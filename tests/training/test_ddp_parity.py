"""Two processes under torchrun (gloo, CPU) take the same steps as one process on the same global batches.

Tolerance: with dropout 0 (dropout masks are per-rank random draws) and the same seed, the first step's
training loss agrees within 1e-6, every later one within 1e-3 and every trained weight within 5e-2 (see
below): the only
difference is floating-point summation order (gradients summed over two ranks, batch-norm statistics and
losses reduced across processes). Batch 63 splits unevenly (31 + 32 rows), which exercises the loss scaling.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from adsformer.cli import app
from adsformer.simulator import SimulatorConfig, simulate

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "ctr_test.yaml"
SETS = ["model.ranker.dropout=0", "train.log_every=1", "epochs=2", "batch_size=63", "window_s=1800"]


def _args(data: Path, out: Path) -> list[str]:
    args = ["train", "--data", str(data), "--config", str(CONFIG), "--out", str(out)]
    for s in SETS:
        args += ["--set", s]
    return args


def _history(run: Path, name: str = "history.csv") -> list[dict[str, float]]:
    with (run / name).open() as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _epochs(run: Path) -> list[dict[str, float]]:
    return _history(run, "epochs.csv")


@pytest.mark.slow
def test_two_ranks_match_one_process(tmp_path):
    data = tmp_path / "data"
    simulate(SimulatorConfig.preset("tiny").with_overrides(images=False), data)
    single = tmp_path / "single"
    res = CliRunner().invoke(app, _args(data, single))
    assert res.exit_code == 0, res.output

    ddp = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    proc = subprocess.run(
        [*launch, "-m", "adsformer.cli", *_args(data, ddp)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("wrote") == 1  # only rank 0 speaks and writes

    one, two = _history(single), _history(ddp)
    assert len(one) == len(two) > 10
    for i, (a, b) in enumerate(zip(one, two, strict=True)):
        assert a["step"] == b["step"] and a["lr"] == pytest.approx(b["lr"], abs=1e-12)
        # the first logged loss comes from identical weights, so a sharding error shows there at once
        # (measured: 3e-8); later ones carry the rounding drift Adam amplifies (below): up to 2.4e-4 on the
        # tiny simulator since its re-engagement (issue 16), whose touched ads give large, rare gradients
        assert abs(a["train_loss"] - b["train_loss"]) < (1e-6 if i == 0 else 1e-3), (a, b)

    w1 = torch.load(single / "model.pt", weights_only=False)["state_dict"]
    w2 = torch.load(ddp / "model.pt", weights_only=False)["state_dict"]
    assert w1.keys() == w2.keys()
    # A linear layer's bias right before batch norm has a zero gradient in exact arithmetic (the norm
    # subtracts it again); Adam scales its rounding noise up to full lr-sized steps, so it drifts apart
    # (here by ~4e-3) along with the norm's running mean. Outputs barely notice: the validation log loss of
    # every epoch agrees within 1e-5. Every other weight agrees within 1e-4.
    free = {
        k for k in w1 if k.startswith("deep.net.") and k.endswith(".bias") and int(k.split(".")[2]) % 4 == 0
    }
    skip = free | {f"deep.net.{int(k.split('.')[2]) + 1}.running_mean" for k in free}
    # With ADPM's touch component on, several of its input columns are constant over most batches (pairs
    # the tiny data rarely has: "never touched" everywhere); the weights reading them get near-zero true
    # gradients, whose rounding noise Adam scales up to lr-sized steps, and the drift spreads: weights agree
    # within ~2e-2 while every step's loss (above) agrees within ~2.5e-4 and every epoch's validation log
    # loss (below) within ~3e-5 (measured on the tiny simulator of issue 16). A real sharding error moves
    # the first step's loss already, by orders of magnitude more.
    differ = [
        k
        for k in w1
        if w1[k].is_floating_point() and k not in skip and not torch.allclose(w1[k], w2[k], atol=5e-2, rtol=0)
    ]
    assert not differ, [(k, float((w1[k] - w2[k]).abs().max())) for k in differ]
    e1, e2 = _epochs(single), _epochs(ddp)
    assert [abs(a["val_log_loss"] - b["val_log_loss"]) < 1e-4 for a, b in zip(e1, e2, strict=True)] == [
        True
    ] * 2
