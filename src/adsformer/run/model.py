"""The model a run trains, built for a feature set: its sizes from the data, its frozen tables from disk."""

from __future__ import annotations

import torch

from adsformer.adpm.pretrained import FrozenTable
from adsformer.data.features import FeatureSet
from adsformer.models.ranker import Ranker
from adsformer.models.registry import ModelSpec, build_model
from adsformer.representations.table import RepresentationTable, align_to_vocabulary, vocabulary_rows
from adsformer.run.config import ExperimentConfig


def spec_from_features(fs: FeatureSet) -> ModelSpec:
    """The model's input sizes for ``fs``: vocabulary sizes, dense width, sequence pairs, window."""
    entities = {"listing", "shop", "taxonomy", "query"} | {p.split(":", 1)[0] for p in fs.sequences}
    entities |= {"action"} & set(fs.vocabs.by_name)  # the merged listing sequence's action tokens
    sizes = {e: fs.vocabs[e].size for e in sorted(entities)}
    return ModelSpec(
        sizes,
        {k: fs.vocabs[k].size for k in fs.categorical},
        int(fs.dense.shape[1]),
        list(fs.sequences),
        fs.info.window_s,
    )


def pretrained_tables(cfg: ExperimentConfig, fs: FeatureSet) -> list[FrozenTable]:
    """Load and align the configured representation tables (only when the model uses component 2)."""
    adpm = cfg.model.adpm
    if cfg.model.user != "adsformer" or not adpm.pretrained.enabled:
        return []
    tables = []
    for path in adpm.pretrained.tables:
        table = RepresentationTable.load(path)
        if table.memory_mapped:  # a big npy table is read in place through a row index, never copied
            rows = vocabulary_rows(table, fs.vocabs["listing"])
            tables.append(FrozenTable(table.name, table.vectors, rows >= 0, index=rows))
            continue
        vectors, present = align_to_vocabulary(table, fs.vocabs["listing"])
        tables.append(FrozenTable(table.name, vectors, present))
    return tables


def seeded_model(cfg: ExperimentConfig, fs: FeatureSet) -> Ranker:
    """The configured model for ``fs``, its weights drawn from ``cfg.train.seed``."""
    torch.manual_seed(cfg.train.seed)
    return build_model(cfg.model, spec_from_features(fs), pretrained_tables(cfg, fs))
