"""Multi-process data-parallel training: the process group, batch sharding, DDP wrapping, collectives.

Launch any training command under ``torchrun`` (``torchrun --standalone --nproc-per-node 2 -m adsformer.cli
train ...``): :func:`context` reads torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) and
joins the process group -- gloo on CPU, nccl on GPU. Without that environment everything is one process and
every function here is the identity, so the single-process path runs exactly the code it always ran.

The protocol (see :mod:`adsformer.training.loop`):

* every rank builds the same data and the same seeded model (DDP also broadcasts rank 0's weights);
* every rank draws the same shuffled order, so all ranks agree on each *global* batch of ``batch_size``
  rows; rank ``r`` takes the ``r``-th of ``world`` contiguous, near-equal slices of it (:func:`shard`);
* each rank's loss is ``sum of its rows' losses * world / global batch rows``; DDP averages gradients over
  ranks, so the step follows the gradient of the global batch's mean loss exactly, even when the slices
  differ in size (the last batch of an epoch);
* batch norm uses the global batch's statistics (:class:`SyncBatchNorm1d`), so the forward pass matches too.

With dropout 0 a run on W ranks therefore takes the same steps as one process on the same global batch, up
to floating-point summation order. Only rank 0 shows progress, prints, and writes the run directory.

Letters: B global batch rows, B_r rows of rank r, C channels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from adsformer.layers.user import FrozenState


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: ``rank`` of ``world`` processes, and the device it trains on."""

    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str = ""

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def sparse_gradients(self) -> bool:
        """Whether the id tables may keep sparse gradients (nccl cannot all-reduce sparse tensors)."""
        return self.backend != "nccl"


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``cpu`` | ``cuda`` | ``auto`` (cuda when available); under torchrun ``cuda`` means this rank's GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            from adsformer.config import ConfigError

            raise ConfigError("train.device=cuda but torch sees no CUDA device (use cpu or auto)")
        return torch.device("cuda", local_rank)
    if name != "cpu":
        raise ValueError(f"train.device must be cpu, cuda or auto, got {name!r}")
    return torch.device("cpu")


def context(device: str = "cpu") -> DistContext:
    """This process's place; joins the process group once when launched by torchrun with WORLD_SIZE > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world <= 1:
        return DistContext(device=dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend)
    from adsformer.console import console

    rank = dist.get_rank()
    console.quiet = rank != 0  # one voice: rank 0 prints, shows progress and writes
    return DistContext(rank, dist.get_world_size(), dev, dist.get_backend())


def is_main_process() -> bool:
    """Rank 0 of the process group, or a single process."""
    return not dist.is_initialized() or dist.get_rank() == 0


def shutdown() -> None:
    """Leave the process group (a no-op for a single process)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def shard(rows: np.ndarray, ctx: DistContext) -> np.ndarray:
    """This rank's contiguous slice of a global batch's rows (B,) -> (B_r,); all of it for one process."""
    if not ctx.distributed:
        return rows
    bounds = np.linspace(0, rows.shape[0], ctx.world + 1).astype(np.int64)
    return rows[bounds[ctx.rank] : bounds[ctx.rank + 1]]


def all_sum(values: list[float], ctx: DistContext) -> list[float]:
    """Element-wise sum of small float lists over ranks (float64)."""
    if not ctx.distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t)
    return [float(v) for v in t.cpu()]


def gather_rows(part: np.ndarray, ctx: DistContext) -> np.ndarray:
    """Every rank's ``part`` concatenated in rank order (the inverse of :func:`shard`)."""
    if not ctx.distributed:
        return part
    parts: list[Any] = [None] * ctx.world
    dist.all_gather_object(parts, part)
    return np.concatenate(parts)


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks, differentiable: the gradient of each rank's input is the sum of every rank's
    output gradient (each rank's output depends on every rank's input)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        g = grad.clone()
        dist.all_reduce(g)
        return g


def differentiable_all_reduce(x: torch.Tensor) -> torch.Tensor:
    out: torch.Tensor = _AllReduceSum.apply(x)
    return out


class SyncBatchNorm1d(nn.BatchNorm1d):
    """``BatchNorm1d`` whose training statistics are those of the global batch over all ranks.

    torch's ``nn.SyncBatchNorm`` runs on GPUs only; this one runs on any device with two differentiable
    all-reduces (count and sum, then the sum of squared deviations), so gradients flow to every rank's rows.
    Evaluation and a single process use the plain ``BatchNorm1d`` path.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(input)
        x = input  # (B_r, C)
        count_sum = torch.cat([x.new_full((1,), float(x.shape[0])), x.sum(dim=0)])  # (1 + C,)
        count_sum = differentiable_all_reduce(count_sum)
        n = count_sum[0]
        mean = count_sum[1:] / n  # (C,)
        var = differentiable_all_reduce(((x - mean) ** 2).sum(dim=0)) / n  # (C,) biased
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                m = self.momentum if self.momentum is not None else 0.1
                unbiased = var * n / (n - 1).clamp_min(1.0)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(unbiased.detach(), alpha=m)
                if self.num_batches_tracked is not None:
                    self.num_batches_tracked.add_(1)
        y = (x - mean) / torch.sqrt(var + self.eps)  # (B_r, C)
        return y * self.weight + self.bias if self.affine else y


def sync_batchnorm(model: nn.Module) -> nn.Module:
    """Swap every ``BatchNorm1d`` of ``model`` for :class:`SyncBatchNorm1d` in place (same parameters and
    buffers); returns ``model``. The state_dict keys are unchanged, so checkpoints load either way."""
    for name, child in list(model.named_children()):
        if type(child) is nn.BatchNorm1d:
            sync = SyncBatchNorm1d(
                child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats
            )
            sync.load_state_dict(child.state_dict())
            sync.to(next(child.buffers(), torch.empty(0)).device)
            setattr(model, name, sync)
        else:
            sync_batchnorm(child)
    return model


def unsync_batchnorm(model: nn.Module) -> nn.Module:
    """Undo :func:`sync_batchnorm` (the trained model is handed back with plain ``BatchNorm1d``)."""
    for name, child in list(model.named_children()):
        if isinstance(child, SyncBatchNorm1d):
            plain = nn.BatchNorm1d(
                child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats
            )
            plain.load_state_dict(child.state_dict())
            plain.to(next(child.buffers(), torch.empty(0)).device)
            plain.train(child.training)
            setattr(model, name, plain)
        else:
            unsync_batchnorm(child)
    return model


def frozen_state_keys(model: nn.Module) -> set[str]:
    """State-dict keys of modules marked ``frozen`` (pretrained tables): never changed by training, so never
    broadcast between ranks nor copied into the best-epoch snapshot."""
    prefixes = [f"{name}." for name, m in model.named_modules() if isinstance(m, FrozenState) and m.frozen]
    return {k for k in model.state_dict() if any(k.startswith(p) for p in prefixes)}


def wrap(model: nn.Module, ctx: DistContext) -> nn.Module:
    """The model as trained on this rank: DDP with global batch norm when distributed, else itself."""
    if not ctx.distributed:
        return model
    # pretrained tables are identical on every rank and never change: not broadcast (nor written into)
    ignore = sorted(frozen_state_keys(model))
    nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, ignore)
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)
