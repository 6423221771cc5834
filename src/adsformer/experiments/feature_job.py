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

import yaml

from adsformer.config import ConfigError, DataConfig, apply_overrides, from_dict, parse_overrides
from adsformer.console import stage
from adsformer.data.features import build_features
from adsformer.data.stream import write_store
from adsformer.data.validate import read_dataset
from adsformer.experiments.runs import check_task


def data_config(path: Path | None, overrides: list[str] | None = None) -> DataConfig:
    """The data config from a data YAML (``configs/data.yaml``) or a run YAML's ``data`` section
    (``configs/ctr.yaml``), so a store and the runs trained on it share one file; then ``--set`` keys."""
    cfg = DataConfig()
    if path is not None:
        raw = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        is_run = bool(set(raw) & {"task", "data", "model", "train", "eval"})
        section = (raw.get("data") or {}) if is_run else raw
        try:
            cfg = from_dict(DataConfig, section)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
    return apply_overrides(cfg, parse_overrides(overrides))


def run_feature_job(
    data_dir: Path, cfg: DataConfig, out: Path, *, engine: str = "local", row_group_rows: int = 65_536
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
