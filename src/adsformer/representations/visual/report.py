"""The nearest-neighbour image grid (paper figure 4)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

# --- reports ---------------------------------------------------------------------------------------------


def plot_neighbours(
    paths: Sequence[Path],
    captions: Sequence[str],
    vectors: np.ndarray,
    out: Path,
    *,
    queries: int,
    k: int = 5,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """A grid: each row a query image, then its top-``k`` neighbours by cosine (``vectors`` (N, D) are unit
    norm). Queries are drawn seeded, with distinct captions where possible. Returns the rows shown."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    n = vectors.shape[0]
    k = min(k, n - 1)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    picked: list[int] = []
    seen: set[str] = set()
    for i in order:  # distinct captions first, then fill up
        if len(picked) < queries and captions[i] not in seen:
            picked.append(int(i))
            seen.add(captions[i])
    picked += [int(i) for i in order if int(i) not in picked][: queries - len(picked)]
    rows: list[dict[str, Any]] = []
    fig, axes = plt.subplots(
        len(picked), k + 1, figsize=(1.9 * (k + 1), 2.15 * len(picked)), dpi=100, squeeze=False
    )
    for r, q in enumerate(picked):
        sims = vectors @ vectors[q]  # (N,)
        sims[q] = -np.inf
        nn_ = np.argsort(-sims, kind="stable")[:k]
        rows.append({"query": q, "neighbours": nn_.tolist(), "cosine": [float(sims[j]) for j in nn_]})
        for c, (j, label) in enumerate([(q, "query"), *((int(j), f"cos {sims[j]:.2f}") for j in nn_)]):
            ax = axes[r, c]
            with Image.open(paths[j]) as im:
                ax.imshow(np.asarray(im.convert("RGB").resize((112, 112))))
            ax.set_title(f"{label}\n{captions[j][:26]}", fontsize=7, color="black" if c else "darkblue")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                for side in ax.spines.values():
                    side.set_color("darkblue")
                    side.set_linewidth(2.5)
    fig.suptitle(f"visual vectors: query (left) and its top-{k} neighbours by cosine", fontsize=10)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return rows
