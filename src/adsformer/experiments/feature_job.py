"""``adsformer features``: the feature job. A canonical dataset in, a feature store out.

Builds every model input once (split, vocabularies fit on the training period, encodings, standardized
dense features, the windowed sequences -- on the local engine or on Spark) and writes them as Parquet row
groups (:mod:`adsformer.data.stream`), which ``adsformer train --data FEAT_DIR`` streams with bounded memory
and ``adsformer evaluate RUN_DIR --data FEAT_DIR`` reads the test split of.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from adsformer.config import DataConfig, Engine
from adsformer.console import stage
from adsformer.data.features import build_features
from adsformer.data.stream import write_store
from adsformer.data.validate import read_dataset
from adsformer.experiments.runs import check_task


def run_feature_job(
    data_dir: Path, cfg: DataConfig, out: Path, *, engine: Engine = "local", row_group_rows: int = 65_536
) -> dict[str, Any]:
    """Build the features of ``data_dir`` with ``engine`` (local | spark) and write the store ``out``."""
    start = time.perf_counter()
    with stage("read the dataset"):
        ds = read_dataset(data_dir)
        check_task(ds, "ctr")
    with stage(f"build features ({engine} engine)"):
        fs = build_features(ds, cfg, engine=engine)
    built = time.perf_counter()
    with stage(f"write the feature store {out}"):
        write_store(fs, out, cfg, dataset=ds.meta.name, engine=engine, row_group_rows=row_group_rows)
    size = sum(p.stat().st_size for p in Path(out).rglob("*") if p.is_file())
    return {
        "dataset": ds.meta.name,
        "engine": engine,
        "impressions": fs.n,
        "pairs": len(fs.sequences),
        "row_groups": -(-fs.n // row_group_rows),
        "features_seconds": built - start,
        "write_seconds": time.perf_counter() - built,
        "store_bytes": size,
    }
