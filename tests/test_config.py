import pytest

from lasro.config import ConfigError
from lasro.methods import build_config, load_config


def test_defaults_follow_the_method():
    cfg = build_config({})
    assert cfg.model.timesteps == [999, 499] and cfg.exploration.samples_per_prompt == 4
    assert (cfg.algorithm.generator_steps, cfg.lasro.surrogate_steps) == (5, 20)
    assert cfg.lasro.ema_decay == 0.99 and cfg.lasro.regularizer == "anchor"
    assert cfg.optim.lr == 1e-4 and cfg.surrogate.lr_backbone == 1e-5


def test_yaml_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("optim:\n  lr: 3.0e-5\nmodel:\n  timesteps: [999]\n")
    cfg = load_config(str(p), ["optim.batch_size=2", "exploration.t1_range=[300, 700]", "reward=[a, b]"])
    assert cfg.optim.lr == 3e-5 and cfg.optim.batch_size == 2 and cfg.model.timesteps == [999]
    assert cfg.exploration.t1_range == [300, 700] and cfg.reward == ["a", "b"]


@pytest.mark.parametrize("data, message", [
    ({"optimm": {}}, "unknown config key 'optimm'. Did you mean 'optim'?"),
    ({"optim": {"batch_size": 2.5}}, "optim.batch_size: expected an integer"),
    ({"optim": {"batch_size": 0}}, "optim.batch_size must be at least 1"),
    ({"logging": {"tensorboard": "yes"}}, "logging.tensorboard: expected true or false"),
    ({"model": {"dtype": "fp8"}}, "valid choices: 'float32', 'bfloat16', 'float16'"),
    ({"model": {"timesteps": [999, 499, 200]}}, "1 or 2 timesteps"),
    ({"exploration": {"t1_range": [700, 300]}}, "t1_range"),
    ({"model": 3}, "model: expected a mapping"),
    ({"gors": {"step_counts": [3]}}, "gors.step_counts must be a non-empty subset of [1, 2]"),
    ({"algorithm": {"method": "gors"}, "gors": {"step_counts": [2]}, "model": {"timesteps": [999]}},
     "use gors.step_counts: [1]"),
])
def test_validation_names_key_and_valid_values(data, message):
    with pytest.raises(ConfigError) as e:
        build_config(data)
    assert message in str(e.value)


def test_missing_file_and_bad_set():
    with pytest.raises(ConfigError, match="not found"):
        load_config("nope.yaml")
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["optim.lr"])


def test_yaml_scientific_notation_without_a_dot_is_a_number(tmp_path):

    path = tmp_path / "c.yaml"
    path.write_text("optim: {lr: 1e-5}\nsurrogate: {lr_head: 3E-4}\n")
    cfg = load_config(str(path))
    assert cfg.optim.lr == 1e-5 and cfg.surrogate.lr_head == 3e-4
    path.write_text("optim: {lr: fast}\n")
    with pytest.raises(ConfigError, match="optim.lr: expected a number, got str 'fast'"):
        load_config(str(path))
