"""Profile adSformer training steps: where the time goes, per phase, per component and per operator.

    python benchmarks/profile_training.py --data DIR [--batch-size 1024] [--steps 20] [--top 15]
        [--config configs/ctr.yaml] [--set KEY=VALUE ...]

On the training rows of ``DIR`` (features from the config's data settings), one torch thread:

1. ``steps`` training steps as :func:`adsformer.training.loop.train` takes them, timed per phase (batch
   gathering, forward, backward, optimizer) in process CPU time -- steadier than wall time on a shared
   machine -- with examples/s;
2. each ADPM component and the ranker's cross network alone, forward + backward on the same batches;
3. ``torch.profiler`` over a few steps: the operators with the most self CPU time.

To compare code versions, run it with ``PYTHONPATH=OTHER_CHECKOUT/src`` (the first import wins).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile, record_function

import adsformer
from adsformer.data.batching import Batch, make_batch
from adsformer.data.features import build_features
from adsformer.data.validate import read_dataset
from adsformer.experiments.runs import resolve_for_data
from adsformer.run.config import load_experiment
from adsformer.run.model import seeded_model
from adsformer.run.scoring import forward
from adsformer.training.loop import make_optimizers

ROOT = Path(__file__).resolve().parents[1]


def cpu_ms(fn: Callable[[], None], repeats: int) -> float:
    start = time.process_time()
    for _ in range(repeats):
        fn()
    return (time.process_time() - start) / repeats * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "ctr.yaml")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"adsformer from {Path(adsformer.__file__).parent}")

    cfg = load_experiment(args.config, [f"batch_size={args.batch_size}", *args.overrides])
    fs = build_features(read_dataset(args.data), cfg.data)
    cfg = resolve_for_data(cfg, fs)  # the auto settings as training decides them (CTR: rank-64 cross layers)
    model = seeded_model(cfg, fs)
    model.train()
    optimizers = make_optimizers(model, cfg.train, "ctr")
    loss_fn = torch.nn.BCEWithLogitsLoss()
    rows = fs.rows("train", "ctr")
    rows = rows[np.random.default_rng(0).permutation(rows.size)]
    bs = args.batch_size
    need = args.steps + 8
    chunks = [rows[(i * bs) % (rows.size - bs) :][:bs] for i in range(need)]

    phases = dict.fromkeys(("batch", "forward", "backward", "optimizer"), 0.0)
    batches: list[Batch] = []
    for i, r in enumerate(chunks[: args.steps + 3]):
        t0 = time.process_time()
        batch = make_batch(fs, r, "ctr", pairs=model.pairs)
        t1 = time.process_time()
        loss = loss_fn(forward(model, batch, with_position=True), batch.label)
        t2 = time.process_time()
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        t3 = time.process_time()
        for opt in optimizers:
            opt.step()
        t4 = time.process_time()
        if i >= 3:  # warm-up steps excluded
            for key, dt in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                phases[key] += dt
            batches.append(batch)
    total = sum(phases.values())
    print(f"\n{args.steps} steps of batch {bs}: {args.steps * bs / total:,.0f} examples/s (process CPU time)")
    for key, dt in phases.items():
        print(f"  {key:10s} {dt / args.steps * 1000:8.1f} ms/step  {100 * dt / total:5.1f}%")

    user = model.user
    parts: dict[str, Callable[[Batch], torch.Tensor]] = {}
    if getattr(user, "encoder", None) is not None:
        pair = user.encoder_pair
        parts["ADPM encoder (component 1)"] = lambda b: user.encoder(
            b.target["listing"], b.seq_ids[pair], b.seq_len[pair]
        )
    if getattr(user, "pretrained", None) is not None:
        parts["ADPM pretrained (component 2)"] = lambda b: user.pretrained(b.seq_ids, b.seq_len)
    if getattr(user, "learned", None) is not None:
        parts["ADPM learned (component 3)"] = lambda b: user.learned(b.seq_ids, b.seq_len)
    width = model.cross.dim if len(model.cross.layers) else 0
    if width:
        parts["ranker cross network"] = lambda b: model.cross(torch.randn(len(b), width, requires_grad=True))
    print("\ncomponents alone, forward + backward:")
    for name, fn in parts.items():

        def run(fn: Callable[[Batch], torch.Tensor] = fn) -> None:
            for b in batches:
                out = fn(b)
                out.sum().backward() if out.requires_grad else None

        run()
        print(f"  {name:32s} {cpu_ms(run, 2) / len(batches):8.2f} ms/step")
    model.zero_grad(set_to_none=True)

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for r in chunks[-4:]:
            with record_function("make_batch"):
                batch = make_batch(fs, r, "ctr", pairs=model.pairs)
            loss = loss_fn(forward(model, batch, with_position=True), batch.label)
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            loss.backward()
            for opt in optimizers:
                opt.step()
    print()
    print(
        prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top, max_name_column_width=50)
    )


if __name__ == "__main__":
    main()
