"""The one config loader: presets by name from any directory, files that extend them, where each value came
from, kinds, and pydantic's checks over every config dataclass."""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adsformer.cli import app
from adsformer.config import (
    ENGINES,
    ConfigError,
    DataConfig,
    apply_overrides,
    from_dict,
    load_config,
    one_of,
    parse_overrides,
    preset_names,
    resolve_config,
    to_dict,
)
from adsformer.retrieval.config import IndexConfig
from adsformer.run.config import ExperimentConfig, load_experiment

ROOT = Path(__file__).resolve().parents[1]

#: What each preset changes from the defaults: the presets are small overlays, and this pins them
PRESET_CHANGES = {
    "ctr": {},
    "pccvr": {"task": "pccvr", "model.adpm.encoder.heads": 2},
    "ctr_test": {
        "data.sequences.max_len": 10,
        "data.vocab.listing_top_k": 1000,
        "data.split.mode": "fraction",
        "model.adpm.encoder.enabled": True,
        "model.adpm.encoder.dim": 8,
        "model.adpm.encoder.head_dim": 4,
        "model.adpm.learned.listing_dim": 8,
        "model.bst.k": 5,
        "model.bst.dim": 8,
        "model.bst.head_dim": 2,
        "model.lastk.dim": 8,
        "model.ranker.deep": [16],
        "model.ranker.listing_dim": 8,
        "train.batch_size": 64,
        "train.eval_batch_size": 4096,
        "train.epochs": 1,
    },
    "data": {},
    "data_test": {
        "sequences.window_s": 1800,
        "sequences.max_len": 10,
        "vocab.listing_top_k": 1000,
        "split.mode": "fraction",
    },
}
PRESET_CHANGES["pccvr_test"] = {**PRESET_CHANGES["ctr_test"], **PRESET_CHANGES["pccvr"]}


def _changes(cls: type, name: str) -> dict[str, object]:
    """The keys preset ``name`` sets to other values than the defaults."""
    default = {key: value for key, value, _ in resolve_config(cls).rows()}
    return {key: value for key, value, _ in resolve_config(cls, name).rows() if value != default[key]}


def test_every_preset_ships_and_changes_only_what_it_says():
    assert preset_names() == sorted(PRESET_CHANGES)
    for name, changes in PRESET_CHANGES.items():
        cls = DataConfig if name.startswith("data") else ExperimentConfig
        assert _changes(cls, name) == changes, name


def test_presets_load_by_name_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_experiment("pccvr_test", ["lr=0.01"])
    assert (cfg.task, cfg.model.adpm.encoder.heads, cfg.data.sequences.max_len, cfg.train.lr) == (
        "pccvr",
        2,
        10,
        0.01,
    )
    assert load_config(DataConfig, "data_test").sequences.window_s == 1800


def test_the_repository_configs_are_the_presets():
    for name in PRESET_CHANGES:
        cls = DataConfig if name.startswith("data") else ExperimentConfig
        assert to_dict(load_config(cls, ROOT / "configs" / f"{name}.yaml")) == to_dict(load_config(cls, name))


def test_a_file_extends_a_preset_or_a_file_and_says_where_each_value_came_from(tmp_path):
    (tmp_path / "sub").mkdir()
    base = tmp_path / "sub" / "base.yaml"
    base.write_text("extends: ctr_test\ntrain: {epochs: 3, lr: 0.01}\n")
    mine = tmp_path / "mine.yaml"
    mine.write_text("extends: sub/base.yaml\ntrain: {epochs: 4}\n")  # relative to the extending file
    resolved = resolve_config(ExperimentConfig, mine, ["seed=7"], {"model": "bst"})
    cfg, origin = resolved.config, {k: o for k, _, o in resolved.rows()}
    assert (cfg.train.epochs, cfg.train.lr, cfg.train.seed, cfg.model.user) == (4, 0.01, 7, "bst")
    assert origin["train.epochs"] == str(mine)
    assert origin["train.lr"] == str(base)
    assert origin["data.sequences.max_len"] == "preset ctr_test"
    assert origin["train.seed"] == "--set"
    assert origin["model.user"] == "--model"
    assert origin["data.sequences.window_s"] == "default"


def test_a_run_config_gives_a_data_config_its_data_section():
    cfg = load_config(DataConfig, "ctr_test", ["window_s=60"])
    assert (cfg.sequences.max_len, cfg.split.mode, cfg.sequences.window_s) == (10, "fraction", 60)


@pytest.mark.parametrize(
    "files, config, message",
    [
        ({}, "nope", "--config nope: no such preset; expected one of ['ctr', 'ctr_test', 'data'"),
        ({}, "data_test", "--config data_test: a data config; this command needs a run config"),
        ({"a.yaml": "extends: b.yaml\n", "b.yaml": "extends: a.yaml\n"}, "a.yaml", "a.yaml: extends itself"),
        ({"a.yaml": "extends: [ctr]\n"}, "a.yaml", "a.yaml: extends must be a preset name or a file path"),
        ({"a.yaml": "- 1\n"}, "a.yaml", "a.yaml: expected a mapping at the top level"),
        ({"a.yaml": "train: {epochs: [\n"}, "a.yaml", "a.yaml: not valid YAML"),
        (
            {"a.yaml": "extends: ctr\ntrain: {epoch: 2}\n"},
            "a.yaml",
            "a.yaml: unknown config key 'train.epoch'",
        ),
        (
            {"a.yaml": "extends: ctr\ntrain: {patience: -2}\n"},
            "a.yaml: train.patience must be >= 0, got -2",
            "",
        ),
        ({}, "missing.yaml", "missing.yaml: cannot read the config file"),
    ],
)
def test_config_file_errors_are_one_line_naming_the_file(tmp_path, monkeypatch, files, config, message):
    monkeypatch.chdir(tmp_path)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError) as info:
        load_experiment(config or "a.yaml")
    text = info.value.one_line()
    assert "\n" not in str(info.value).strip() and (message or config) in text, text


def _config_classes(cls: type) -> list[type]:
    """``cls`` and every config dataclass reachable through its fields."""
    found = [cls]
    for hint in typing.get_type_hints(cls).values():
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            found += _config_classes(hint)
    return found


@pytest.mark.parametrize("kind", ["run", "data", "index", "simulator", "skipgram", "text", "air", "visual"])
def test_every_config_dataclass_refuses_unknown_keys(kind):
    from adsformer.cli.config import config_class

    for cls in _config_classes(config_class(kind)):
        assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen, cls  # type: ignore[attr-defined]
        with pytest.raises(ConfigError, match=r"^unknown config key 'nope'; expected one of \["):
            from_dict(cls, {"nope": 1})


@pytest.mark.parametrize(
    "cls, data, message",
    [
        (
            ExperimentConfig,
            {"model": {"adpm": {"encoder": {"pooling": "sum"}}}},
            "model.adpm.encoder.pooling must be one of ['max', 'mean'], got 'sum'",
        ),
        (ExperimentConfig, {"task": "cvr"}, "task must be one of ['ctr', 'pccvr'], got 'cvr'"),
        (
            ExperimentConfig,
            {"train": {"device": "tpu"}},
            "train.device must be one of ['cpu', 'cuda', 'auto']",
        ),
        (
            IndexConfig,
            {"ann": {"kind": "hnsw"}},
            "ann.kind must be one of ['auto', 'flat', 'ivf_flat', 'ivf_sq8', 'ivf_pq'], got 'hnsw'",
        ),
        (DataConfig, {"sequences": {"max_len": 2.5}}, "sequences.max_len: expected an integer, got 2.5"),
        (DataConfig, {"sequences": 5}, "sequences: expected a mapping, got 5"),
        (DataConfig, {"sequences": {"pairs": 3}}, "sequences.pairs: expected a list, got 3"),
    ],
)
def test_enumerated_strings_and_types_are_checked_by_pydantic(cls, data, message):
    with pytest.raises(ConfigError) as info:
        from_dict(cls, data)
    assert str(info.value).startswith(message), str(info.value)


def test_one_of_types_a_choice():
    assert one_of(ENGINES, "spark", "--engine") == "spark"
    with pytest.raises(ConfigError, match=r"^--engine must be one of \['local', 'spark'\], got 'dask'$"):
        one_of(ENGINES, "dask", "--engine")


def test_a_list_key_given_a_text_is_split_at_commas():
    cfg = apply_overrides(DataConfig(), parse_overrides(["pairs=listing:view, shop:view"]))
    assert cfg.sequences.pairs == ("listing:view", "shop:view")


def test_simulator_overrides_go_through_the_same_loader():
    from adsformer.simulator.config import SimulatorConfig

    tiny = SimulatorConfig.preset("tiny")
    cfg = apply_overrides(
        tiny, parse_overrides(["n_users=50", "images=false", "price_band_multipliers=0.5,1,3"])
    )
    assert (cfg.n_users, cfg.images, cfg.price_band_multipliers) == (50, False, (0.5, 1.0, 3.0))
    with pytest.raises(ConfigError, match="unknown config key 'nope'"):
        apply_overrides(tiny, parse_overrides(["nope=1"]))
    with pytest.raises(ConfigError, match="need at least two price bands"):
        apply_overrides(tiny, parse_overrides(["price_band_multipliers=[2]"]))


def test_config_show_prints_every_value_and_its_origin(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    res = runner.invoke(app, ["config", "show", "--config", "pccvr_test", "--set", "lr=0.01"])
    assert res.exit_code == 0, res.output
    lines = {line.split(":")[0]: line for line in res.output.splitlines() if not line.startswith("#")}
    assert lines["task"].split("#")[1].strip() == "preset pccvr_test"
    assert lines["train.lr"].split("#")[1].strip() == "--set" and "0.01" in lines["train.lr"]
    assert lines["data.sequences.max_len"].split("#")[1].strip() == "preset ctr_test"
    assert len(lines) == len(resolve_config(ExperimentConfig).rows())

    res = runner.invoke(app, ["config", "show", "--config", "ctr_test", "--kind", "data", "--json"])
    assert res.exit_code == 0, res.output
    shown = json.loads(res.output)
    assert shown["kind"] == "data" and shown["config"]["sequences.max_len"] == 10
    assert shown["origin"]["sequences.max_len"] == "preset ctr_test"

    res = runner.invoke(app, ["config", "show", "--config", "nope"])
    assert res.exit_code == 1 and res.output.count("\n") == 1 and "no such preset" in res.output


def test_index_build_and_represent_take_a_config_file(tmp_path):
    bad = tmp_path / "index.yaml"
    bad.write_text("ann: {nprobe: -1}\n")
    runner = CliRunner()
    args = ["index", "build", "--data", str(tmp_path), "--out", str(tmp_path / "i"), "--config", str(bad)]
    res = runner.invoke(app, args)
    assert res.exit_code == 1 and "index.yaml: retrieval setting ann.nprobe=-1: must be >= 0" in res.output
    (tmp_path / "text.yaml").write_text("dim: 0\n")
    args = ["represent", "text", "--data", str(tmp_path), "--out", str(tmp_path / "t"), "--config"]
    res = runner.invoke(app, [*args, str(tmp_path / "text.yaml")])
    assert res.exit_code == 1 and "text.yaml: text setting dim=0: must be >= 1" in res.output, res.output


def test_serve_settings_come_from_a_file_and_set(tmp_path):
    from adsformer.cli.serve import file_settings
    from adsformer.serving import ServingSettings

    base = tmp_path / "base.yaml"
    base.write_text("max_ads: 20\ncache_ttl_s: 1.5\n")
    mine = tmp_path / "serve.yaml"
    mine.write_text("extends: base.yaml\nmax_ads: 30\n")
    fields = ServingSettings.model_fields
    assert file_settings(str(mine), ["cache_ttl_s=0"], fields) == {"max_ads": 30, "cache_ttl_s": 0}
    with pytest.raises(ConfigError, match=r"--set: unknown service setting 'max_adz'; expected one of \["):
        file_settings(None, ["max_adz=3"], fields)
    with pytest.raises(ConfigError, match="a run config; adsformer serve needs service settings"):
        file_settings("ctr", None, fields)
