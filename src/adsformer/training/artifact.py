"""A run on disk: everything needed to score new data exactly as the model was trained.

RUN_DIR/
  config.yaml          the ExperimentConfig (sequence pairs resolved)
  model.pt             {"format_version", "state_dict", "spec", "config"}; frozen tables inside state_dict
  features.json        dense feature names and training statistics, pairs, down-sampling rate
  calibration.json     down-sampling correction and Platt scale / bias fit on the validation split
  vocab/               the vocabularies (adsformer.data.vocab)
  train_summary.json   examples/s, epochs with validation metrics, best epoch
  history.csv, curves.png
  metrics.json         written by ``adsformer evaluate`` (with test_predictions.parquet for reports)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from adsformer.config import from_dict, to_dict
from adsformer.data.vocab import Vocabularies
from adsformer.models.ranker import Ranker
from adsformer.models.registry import ModelSpec, build_model
from adsformer.training.calibration import Calibrator

FORMAT_VERSION = 1


@dataclass
class RunArtifact:
    config: Any  # ExperimentConfig
    spec: ModelSpec
    model: Ranker
    vocabs: Vocabularies
    features: dict[str, Any]  # dense_stats, dense_names, pairs, neg_keep_rate
    calibrator: Calibrator = field(default_factory=Calibrator)  # applied to every served probability

    @property
    def dense_stats(self) -> dict[str, tuple[float, float]]:
        return {k: (float(v[0]), float(v[1])) for k, v in self.features["dense_stats"].items()}


def save_artifact(directory: Path, art: RunArtifact) -> None:
    """Write the artifact files into an existing directory (use inside ``atomic_dir``)."""
    (directory / "config.yaml").write_text(yaml.safe_dump(to_dict(art.config), sort_keys=False))
    torch.save(
        {
            "format_version": FORMAT_VERSION,
            "state_dict": art.model.state_dict(),
            "spec": art.spec.to_json(),
            "config": to_dict(art.config),
        },
        directory / "model.pt",
    )
    (directory / "features.json").write_text(json.dumps(art.features, indent=2, default=_np) + "\n")
    art.vocabs.save(directory / "vocab")
    (directory / "calibration.json").write_text(json.dumps(art.calibrator.to_dict(), indent=2) + "\n")


def load_artifact(run_dir: str | Path) -> RunArtifact:
    from adsformer.experiments.config import ExperimentConfig

    run_dir = Path(run_dir)
    path = run_dir / "model.pt"
    if not path.exists():
        raise FileNotFoundError(
            f"{run_dir}: not a run directory (no model.pt); train one with `adsformer train`"
        )
    blob = torch.load(path, map_location="cpu", weights_only=False)
    config = from_dict(ExperimentConfig, blob["config"])
    spec = ModelSpec.from_json(blob["spec"])
    tables = _tables_from_state(blob["state_dict"])
    model = build_model(config.model, spec, tables)
    model.load_state_dict(blob["state_dict"])
    model.eval()
    features = json.loads((run_dir / "features.json").read_text())
    calib_path = run_dir / "calibration.json"
    if calib_path.exists():
        calibrator = Calibrator.from_dict(json.loads(calib_path.read_text()))
    else:  # runs written before calibration existed: the down-sampling correction alone
        calibrator = Calibrator(float(features["neg_keep_rate"]) if config.task == "ctr" else 1.0)
    return RunArtifact(config, spec, model, Vocabularies.load(run_dir / "vocab"), features, calibrator)


def _tables_from_state(state: dict[str, torch.Tensor]) -> list:
    """Rebuild the frozen tables from the saved buffers (the table files are not needed at serving)."""
    from adsformer.adpm.pretrained import FrozenTable

    tables = []
    i = 0
    while f"user.pretrained.tables.{i}.vectors" in state:
        tables.append(
            FrozenTable(
                f"table{i}",
                state[f"user.pretrained.tables.{i}.vectors"],
                state[f"user.pretrained.tables.{i}.present"],
                state.get(f"user.pretrained.tables.{i}.index"),  # big tables read through a row index
            )
        )
        i += 1
    return tables


def _np(obj: Any) -> Any:
    if isinstance(obj, np.generic | np.ndarray):
        return obj.tolist()
    raise TypeError(type(obj).__name__)
