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

``model.pt`` holds tensors and plain data only (dicts, lists, strings, numbers) and is read with
``torch.load(weights_only=True)``: opening a run directory never unpickles arbitrary objects, so a run from
elsewhere cannot run code in ``serve``, ``evaluate`` or ``predict``. Every run written so far has this form.
A missing, truncated or altered file is an :class:`~adsformer.errors.ArtifactError` naming it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
import yaml

from adsformer.config import ConfigError, from_dict, to_dict
from adsformer.data.vocab import Vocabularies
from adsformer.errors import ArtifactError
from adsformer.models.ranker import Ranker
from adsformer.models.registry import ModelSpec, build_model
from adsformer.run.calibration import Calibrator
from adsformer.run.config import ExperimentConfig

#: 2: the encoder's ``sequence_sees_target`` (default false) is in the config; a version-1 run predates it and
#: was trained with the paper's encoder, whose sequence sees the target (:func:`_upgrade_config`).
FORMAT_VERSION = 2


@dataclass
class RunArtifact:
    config: ExperimentConfig
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
    """The run in ``run_dir``; :class:`ArtifactError` names the file that is corrupt or not a run's."""
    run_dir = Path(run_dir)
    path = run_dir / "model.pt"
    if not path.is_file():
        raise FileNotFoundError(
            f"{run_dir}: not a run directory (no model.pt); train one with `adsformer train`"
        )
    blob = read_model_file(path)
    try:
        config = from_dict(ExperimentConfig, _upgrade_config(blob["config"], blob.get("format_version", 1)))
    except ConfigError as exc:
        raise ArtifactError(
            f"{path}: the config it holds is not valid ({exc.one_line()}); retrain the run"
        ) from exc
    try:
        spec = ModelSpec.from_json(blob["spec"])
        tables = _tables_from_state(blob["state_dict"])
        model = build_model(config.model, spec, tables)
        model.load_state_dict(blob["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
        raise ArtifactError(
            f"{path}: its weights do not fit the model its config describes ({_short(exc)}); retrain the run"
        ) from exc
    model.eval()
    features = _read_json(run_dir / "features.json", dict)
    calib_path = run_dir / "calibration.json"
    calibration = _read_json(calib_path, dict) if calib_path.exists() else None
    try:
        if calibration is not None:
            calibrator = Calibrator.from_dict(calibration)
        else:  # runs written before calibration existed: the down-sampling correction alone
            calibrator = Calibrator(float(features["neg_keep_rate"]) if config.task == "ctr" else 1.0)
    except (KeyError, TypeError, ValueError) as exc:
        where = calib_path if calib_path.exists() else run_dir / "features.json"
        raise ArtifactError(f"{where}: not a valid calibration ({_short(exc)}); retrain the run") from exc
    try:
        vocabs = Vocabularies.load(run_dir / "vocab")
    except (OSError, KeyError, TypeError, ValueError, AttributeError, pl.exceptions.PolarsError) as exc:
        raise ArtifactError(
            f"{run_dir / 'vocab'}: not readable vocabularies ({_short(exc)}); retrain the run"
        ) from exc
    for key in ("dense_stats", "dense_names", "pairs"):
        if key not in features:
            raise ArtifactError(f"{run_dir / 'features.json'}: no {key!r}; retrain the run")
    return RunArtifact(config, spec, model, vocabs, features, calibrator)


def _upgrade_config(config: dict[str, Any], version: int) -> dict[str, Any]:
    """A saved run's config with the settings its version predates set to what it was trained with (a
    default that changed since must not change an old run's model)."""
    if version >= 2:
        return config
    # a level the file lacks would take today's defaults: it gets the old value all the same
    model = config.get("model", {})
    adpm = model.get("adpm", {}) if isinstance(model, dict) else None
    encoder = adpm.get("encoder", {}) if isinstance(adpm, dict) else None
    if not isinstance(model, dict) or not isinstance(adpm, dict) or not isinstance(encoder, dict):
        return config  # a malformed config is refused, with its key, by the loader that follows
    if "sequence_sees_target" in encoder:
        return config
    encoder = {**encoder, "sequence_sees_target": True}
    return {**config, "model": {**model, "adpm": {**adpm, "encoder": encoder}}}


def read_model_file(path: Path) -> dict[str, Any]:
    """``model.pt`` read as tensors and plain data only (``weights_only=True``): a file holding any other
    pickled object is refused, never unpickled. :class:`ArtifactError` for a corrupt or foreign file."""
    import pickle

    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower() or "weights_only" in str(exc):
            raise ArtifactError(
                f"{path}: holds pickled objects other than tensors and plain data; adsformer does not "
                f"unpickle them (that could run code): use a run written by `adsformer train`"
            ) from None
        raise ArtifactError(f"{path}: not a readable model file ({_short(exc)}); retrain the run") from None
    except (
        RuntimeError,
        EOFError,
        OSError,
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        IndexError,
    ) as exc:
        raise ArtifactError(
            f"{path}: not a readable model file ({_short(exc)}); it may be truncated or corrupt: retrain the run"
        ) from None
    if not isinstance(blob, dict) or not {"state_dict", "spec", "config"} <= set(blob):
        raise ArtifactError(f"{path}: not an adsformer model file (expected state_dict, spec and config)")
    version = blob.get("format_version", 1)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ArtifactError(
            f"{path}: format version {version!r}, newer than this adsformer reads; upgrade it"
        )
    state = blob["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ArtifactError(f"{path}: state_dict is not a mapping of tensors")
    if not isinstance(blob["spec"], dict) or not isinstance(blob["config"], dict):
        raise ArtifactError(f"{path}: spec and config must be mappings")
    return blob


def _read_json(path: Path, kind: type) -> Any:
    """A JSON file of the run (``kind``: the type of its top level), or :class:`ArtifactError` naming it."""
    try:
        obj = json.loads(path.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"{path}: missing from the run directory; retrain the run") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path}: not valid JSON ({_short(exc)}); retrain the run") from None
    if not isinstance(obj, kind):
        expected = "object" if kind is dict else kind.__name__
        raise ArtifactError(f"{path}: expected a JSON {expected}, found {type(obj).__name__}")
    return obj


def _short(exc: BaseException, limit: int = 160) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
