"""The pydantic config schema (lasro/config.py): method sections registered at run time, and errors
that name the full key, the bad value and what is allowed. Fast: no model is loaded."""
import json

import pytest

from lasro.config import ConfigError, TrainConfig, config_from_dict, config_to_dict, read_config_data
from lasro.methods.dpo import DPOConfig
from lasro.methods.gors import GORSConfig, check_gors_step_counts
from lasro.methods.lasro import LaSROConfig
from lasro.methods.ppo import PPOConfig

METHODS = {"lasro": LaSROConfig, "ppo": PPOConfig, "dpo": DPOConfig, "gors": GORSConfig}


def error(data, method_sections=METHODS) -> str:
    with pytest.raises(ConfigError) as e:
        config_from_dict(data, method_sections)
    return str(e.value)


def test_defaults_round_trip_through_a_plain_dict():
    cfg = config_from_dict({}, METHODS)
    data = config_to_dict(cfg)
    assert json.loads(json.dumps(data)) == data  # JSON-able: written into state.json
    assert data["lasro"]["reg_weight"] == 1.0 and data["ppo"]["clip_range"] == 1e-4
    again = config_from_dict(data, METHODS)
    assert again == cfg and config_to_dict(again) == data


def test_method_sections_are_filled_with_defaults_and_validated():
    cfg = config_from_dict({"lasro": {"reg_weight": 2, "anchor": "round"}, "gors": None}, METHODS)
    assert isinstance(cfg.lasro, LaSROConfig) and cfg.lasro.reg_weight == 2.0 and cfg.lasro.anchor == "round"
    assert cfg.lasro.ema_decay == 0.99 and cfg.ppo == PPOConfig() and cfg.gors == GORSConfig()
    assert "lasro" not in TrainConfig.model_fields  # registered at run time, not a field
    assert not hasattr(config_from_dict({}), "lasro")
    assert error({"lasro": {"reg_weight": "x"}}) == "lasro.reg_weight: expected a number, got str 'x'"
    assert error({"lasro": 3}) == "lasro: expected a mapping of keys, got int 3"
    assert error({"ppo": {"clip_rang": 0.1}}).startswith(
        "unknown config key 'ppo.clip_rang'. Did you mean 'clip_range'? Valid keys in ppo: output_std, clip_range")


def test_unknown_top_level_key_lists_the_registered_method_sections():
    msg = error({"optimm": {}})
    assert msg.startswith("unknown config key 'optimm'. Did you mean 'optim'? Valid keys: seed, mixed_precision")
    assert msg.endswith("logging, lasro, ppo, dpo, gors")
    assert error({"lasro": {}}, None).startswith("unknown config key 'lasro'.")  # not registered
    assert "did you mean 'lasro.reg_weight'?" in error({"reg_weight": 1.0})


@pytest.mark.parametrize("key", ["reg_weight", "surrogate_steps", "ema_decay", "anchor"])
def test_an_old_algorithm_key_says_it_lives_in_the_method_section(key):
    msg = error({"algorithm": {key: 1}})
    assert msg.startswith(f"unknown config key 'algorithm.{key}'. It is in another section: "
                          f"did you mean 'lasro.{key}'? Valid keys in algorithm: method, rounds")


def test_literal_choice_error():
    assert error({"model": {"dtype": "float64"}}) == (
        "model.dtype: 'float64' is not a valid choice; valid choices: 'float32', 'bfloat16', 'float16'")
    assert error({"lasro": {"anchor": "x"}}).endswith("valid choices: 'initial', 'round'")


@pytest.mark.parametrize("data, message", [
    ({"optim": {"batch_size": "four"}}, "optim.batch_size: expected an integer, got str 'four'"),
    ({"optim": {"batch_size": 2.5}}, "optim.batch_size: expected an integer, got float 2.5"),
    ({"optim": {"batch_size": True}}, "optim.batch_size: expected an integer, got bool True"),
    ({"optim": {"lr": True}}, "optim.lr: expected a number, got bool True"),
    ({"optim": {"lr": "0.1"}}, "optim.lr: expected a number, got str '0.1'"),  # strings are not numbers
    ({"logging": {"tensorboard": "yes"}}, "logging.tensorboard: expected true or false, got str 'yes'"),
    ({"model": {"unet": 3}}, "model.unet: expected a string, got int 3"),
    ({"model": {"timesteps": 999}}, "model.timesteps: expected a list, got int 999"),
    ({"model": {"timesteps": [999, "x"]}}, "model.timesteps[1]: expected an integer, got str 'x'"),
    ({"model": 3}, "model: expected a mapping of keys, got int 3"),
    ({"prompts": {"train": 3}}, "prompts.train: expected a list or a string, got int 3"),
    ({"prompts": {"train": ["a", 3]}}, "prompts.train[1]: expected a string, got int 3"),
    ({"seed": "1"}, "seed: expected an integer, got str '1'"),
])
def test_type_errors_name_the_key_the_value_and_what_was_expected(data, message):
    assert error(data) == message


@pytest.mark.parametrize("data, message", [
    ({"exploration": {"samples_per_prompt": 0}}, "exploration.samples_per_prompt must be at least 1, got 0"),
    ({"model": {"timesteps": [999, 499, 200]}}, "model.timesteps must hold 1 or 2 timesteps in [0, 999]"),
    ({"model": {"timesteps": [499, 999]}}, "model.timesteps must decrease (e.g. [999, 499]); got [499, 999]"),
    ({"exploration": {"t1_range": [700, 300]}}, "exploration.t1_range must be [low, high]"),
    ({"surrogate": {"pessimism": -1}}, "surrogate.pessimism must be >= 0"),
    ({"surrogate": {"pessimism": 0.5}}, "surrogate.pessimism 0.5 needs the members' spread"),
    ({"surrogate": {"ensemble": 0}}, "surrogate.ensemble must be at least 1, got 0"),
    ({"lasro": {"ema_decay": 1.0}}, "lasro.ema_decay must be in (0, 1); got 1.0"),
    ({"lasro": {"pair_accuracy_window": 0}}, "lasro.pair_accuracy_window must be at least 1, got 0"),
    ({"ppo": {"output_std": 0}}, "ppo.output_std must be positive; got 0"),
    ({"dpo": {"beta": -1.0}}, "dpo.beta must be positive; got -1.0"),
    ({"gors": {"top_fraction": 1.5}}, "gors.top_fraction must be in (0, 1]; got 1.5"),
    ({"gors": {"step_counts": [3]}}, "gors.step_counts must be a non-empty subset of [1, 2]; got [3]"),
])
def test_range_errors_name_the_key_and_the_value(data, message):
    assert message in error(data)


def test_gors_step_counts_against_model_timesteps():
    check_gors_step_counts(config_from_dict({}, METHODS))
    cfg = config_from_dict({"gors": {"step_counts": [2]}, "model": {"timesteps": [999]}}, METHODS)
    with pytest.raises(ConfigError, match=r"use gors.step_counts: \[1\]"):
        check_gors_step_counts(cfg)


def test_coercion_rules(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim: {lr: 1e-5, max_grad_norm: 2}\nsurrogate: {lr_head: 3E-4}\nlasro: {reg_weight: 5e-2}\n")
    cfg = config_from_dict(read_config_data(str(path), ["prompts.train=[a, b]"]), METHODS)
    assert cfg.optim.lr == 1e-5 and cfg.surrogate.lr_head == 3e-4 and cfg.lasro.reg_weight == 0.05
    assert cfg.optim.max_grad_norm == 2.0 and isinstance(cfg.optim.max_grad_norm, float)  # int for a float
    assert cfg.prompts.train == ["a", "b"] and config_from_dict({"prompts": {"train": "x.txt"}}).prompts.train == "x.txt"


def test_validate_assignment_raises_a_config_error():
    cfg = config_from_dict({}, METHODS)
    cfg.exploration.overlap_scoring = False
    cfg.lasro.reg_weight = 3  # an int for a float
    assert cfg.exploration.overlap_scoring is False and cfg.lasro.reg_weight == 3.0
    assert config_from_dict({}).exploration.overlap_scoring is True  # defaults are not shared
    # a ConfigError (not a pydantic ValidationError), keyed by the section's class: it has no config path
    with pytest.raises(ConfigError, match="ExplorationConfig.samples_per_prompt must be at least 1, got 0"):
        cfg.exploration.samples_per_prompt = 0
    with pytest.raises(ConfigError, match="LaSROConfig.ema_decay: expected a number, got str 'x'"):
        cfg.lasro.ema_decay = "x"
    with pytest.raises(ConfigError, match="unknown config key 'OptimConfig.lrr'. Did you mean 'lr'?"):
        cfg.optim.lrr = 1.0
    assert cfg.exploration.samples_per_prompt == 4 and cfg.lasro.ema_decay == 0.99
