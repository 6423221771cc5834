import pytest

from adsformer.config import ConfigError, DataConfig, apply_overrides, load_yaml, parse_overrides, to_dict


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
    assert load_yaml(DataConfig, path).sequences.max_len == 7
    path.write_text("sequences: {windw_s: 3}\n")
    with pytest.raises(ConfigError, match=r"c.yaml: unknown config key 'sequences.windw_s'"):
        load_yaml(DataConfig, path)


def test_exponent_without_a_dot_is_a_number():
    # YAML 1.1 reads "1e-4" as a string; a float field must still take it, and refuse real text
    from adsformer.training.loop import TrainConfig

    assert apply_overrides(TrainConfig(), parse_overrides(["lr=1e-4"])).lr == pytest.approx(1e-4)
    with pytest.raises(ConfigError, match="expected a number"):
        apply_overrides(TrainConfig(), parse_overrides(["lr=fast"]))
