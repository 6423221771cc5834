import pytest

from adsformer.config import ConfigError, DataConfig, apply_overrides, load_config, parse_overrides, to_dict


def test_short_and_dotted_overrides():
    cfg = apply_overrides(
        DataConfig(), parse_overrides(["window_s=600", "split.mode=days", "pairs=[listing:view]"])
    )
    assert cfg.sequences.window_s == 600 and cfg.split.mode == "days"
    assert cfg.sequences.pairs == ("listing:view",)
    assert DataConfig().sequences.window_s == 3600  # frozen originals untouched


@pytest.mark.parametrize(
    "item, match", [("nope=1", "unknown config key"), ("window_s=abc", "integer"), ("window_s", "key=value")]
)
def test_bad_overrides_are_named(item, match):
    with pytest.raises(ConfigError, match=match):
        apply_overrides(DataConfig(), parse_overrides([item]))


def test_yaml_round_trip(tmp_path):
    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(to_dict(apply_overrides(DataConfig(), {"max_len": 7}))))
    assert load_config(DataConfig, path).sequences.max_len == 7
    path.write_text("sequences: {windw_s: 3}\n")
    with pytest.raises(ConfigError, match=r"c.yaml: unknown config key 'sequences.windw_s'"):
        load_config(DataConfig, path)


def test_exponent_without_a_dot_is_a_number():
    # YAML 1.1 reads "1e-4" as a string; a float field must still take it, and refuse real text
    from adsformer.run.config import TrainConfig

    assert apply_overrides(TrainConfig(), parse_overrides(["lr=1e-4"])).lr == pytest.approx(1e-4)
    with pytest.raises(ConfigError, match="expected a number"):
        apply_overrides(TrainConfig(), parse_overrides(["lr=fast"]))


# every value is range-checked when the config is built (issue 18): the error names the full dotted key
@pytest.mark.parametrize(
    "item, message",
    [
        ("window_s=-10", "data.sequences.window_s must be in [0, 157680000] seconds, got -10"),
        ("max_len=-1", "data.sequences.max_len must be in [1, 10000], got -1"),
        ("max_len=.nan", "data.sequences.max_len: expected an integer, got nan"),
        (
            "neg_keep_rate=0",
            "data.sampling.neg_keep_rate must be in (0, 1] (1 = keep every negative), got 0.0",
        ),
        ("listing_top_k=-3", "data.vocab.listing_top_k must be in [0, "),
        ("num_oov=0", "data.vocab.num_oov must be in [1, 1024], got 0"),
        ("split_mode=weekly", "data.split.mode must be one of ['auto', 'days', 'fraction'], got 'weekly'"),
        ("test_days=.inf", "data.split.test_days must be a number of days in (0, 36500], got inf"),
        ("pairs=[view]", "data.sequences.pairs must be 'all' or entity:action names"),
        ("batch_size=-5", "train.batch_size must be >= 0 (0 = auto), got -5"),
        ("lr=nan", "train.lr must be a finite number > 0, got nan"),
        ("epochs=0", "train.epochs (the most epochs to run) must be >= 1, got 0"),
        ("seed=-1", "train.seed must be an integer >= 0, got -1"),
        ("heads=0", "model.adpm.encoder.heads must be in [1, 64], got 0"),
        ("model.adpm.encoder.dropout=1", "model.adpm.encoder.dropout must be in [0, 1), got 1.0"),
        ("encoder_pair=shop:view", "model.adpm.encoder.pair must be auto or a listing sequence"),
        ("model.adpm.learned.listing_dim=0", "model.adpm.learned.listing_dim must be in [1, 4096], got 0"),
        ("model.bst.k=0", "model.bst.k must be in [1, 10000], got 0"),
        ("model.lastk.dim=100000", "model.lastk.dim must be in [1, 4096], got 100000"),
        ("deep=[64, 0]", "model.ranker.deep must be layer widths in [1, 65536]"),
        ("model.ranker.embedding_std=-1", "model.ranker.embedding_std must be in (0, 10], got -1.0"),
        (
            "model=transformer",
            "model.user must be one of ['adsformer', 'bst', 'lastk', 'baseline'], got 'transformer'",
        ),
        ("ece_bins=0", "eval.ece_bins must be in [1, 10000], got 0"),
        (
            "model.ranker.cross_rank=0",
            "model.ranker.cross_rank must be in [1, 4096], null (full rank) or auto",
        ),
        (
            "model.ranker.cross_rank=low",
            "model.ranker.cross_rank: expected an integer, 'auto', null; got 'low'",
        ),
        ("pairs=[a", "--set 'pairs=[a': the value is not a YAML scalar or list"),
    ],
)
def test_every_value_is_range_checked_when_built(item, message):
    from adsformer.run.config import load_experiment

    with pytest.raises(ConfigError) as info:
        load_experiment(None, [item])
    assert str(info.value).startswith(message), str(info.value)


def test_batch_size_zero_is_auto_and_user_names_match_the_registry():
    from adsformer.models.config import USER_NAMES
    from adsformer.models.registry import USER_MODULES
    from adsformer.run.config import load_experiment

    assert load_experiment(None, ["batch_size=0"]).train.batch_size == 0
    assert set(USER_NAMES) == set(USER_MODULES)


def test_direct_construction_is_checked_too():
    from adsformer.config import SequenceConfig

    with pytest.raises(ConfigError, match=r"^max_len must be in \[1, 10000\], got 0$"):
        SequenceConfig(max_len=0)


def test_two_bad_top_level_keys_are_one_line_naming_the_first():
    from adsformer.config import from_dict
    from adsformer.models.config import RankerConfig

    with pytest.raises(ConfigError, match="cross_layers: expected an integer, got 'x'"):
        from_dict(RankerConfig, {"cross_layers": "x", "dropout": "y"})
    with pytest.raises(ConfigError, match="unknown config key"):
        from_dict(RankerConfig, {"foo": 1, "bar": 2})


def test_a_config_saved_without_cross_rank_rebuilds_full_rank_layers():
    """Runs saved before ``cross_rank: auto`` existed have no such key; unresolved, ``auto`` reads as full
    rank -- the layers they were trained with -- whatever their task (training resolves it by task)."""
    from torch import nn

    from adsformer.config import from_dict, to_dict
    from adsformer.layers.dcn import CrossNetwork
    from adsformer.run.config import ExperimentConfig

    for task in ("ctr", "pccvr"):
        data = to_dict(ExperimentConfig())
        del data["model"]["ranker"]["cross_rank"]
        data["task"] = task
        ranker = from_dict(ExperimentConfig, data).model.ranker
        assert ranker.cross_rank == "auto" and ranker.rank is None
        assert all(isinstance(layer, nn.Linear) for layer in CrossNetwork(443, 2, ranker.rank).layers)
    assert from_dict(ExperimentConfig, data).model.ranker.for_task("ctr").rank == 64
