"""A user's own method, one file named by dotted path: it trains on the shared loop, its config section is
validated like the built-in ones, and it checkpoints and resumes."""
import json

import pytest
import torch

from lasro.cli import main
from lasro.config import ConfigError
from lasro.methods import list_methods, load_config, method_class

TOY = "tests.toy_method:BestOfRound"
TINY = ["--set", "model.pretrained=tiny:sdxl", "--set", "reward=jpeg_compressibility",
        "--set", "prompts.train=[a red circle, a blue square]", "--set", "prompts.eval=[a red square]",
        "--set", "prompts.eval_seeds=1", "--set", "prompts.final_eval=null", "--set", "lora.rank=4",
        "--set", "exploration.samples_per_prompt=2", "--set", "exploration.prompts_per_round=2",
        "--set", "algorithm.rounds=2", "--set", "algorithm.generator_steps=2", "--set", "optim.batch_size=2",
        "--set", "logging.progress=false", "--set", "logging.tensorboard=false", "--set", "logging.eval_every=1"]


def _lora(path):
    from safetensors.torch import load_file

    return load_file(str(path / "lora" / "pytorch_lora_weights.safetensors"))


def test_a_method_named_by_path_trains_checkpoints_and_resumes(tmp_path):
    out = tmp_path / "run"
    args = ["train", "configs/tiny-jpeg.yaml", "--set", f"algorithm.method={TOY}", "--set", f"logging.output_dir={out}",
            "--set", "best_of_round.weight=2.0", *TINY]
    assert main(args) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [0, 1, 2] and rows[-1]["reward_queries"] == 16
    assert "best_of_round/mse" in rows[-1] and "generator/loss" in rows[-1]
    state = json.loads((out / "checkpoints" / "round-000002" / "state.json").read_text())
    assert state["method"] == "best_of_round" and state["config"]["best_of_round"]["weight"] == 2.0
    assert "best_of_round" in list_methods() and method_class("best_of_round").__module__ == "tests.toy_method"
    before = _lora(out)
    assert main(args + ["--set", "algorithm.rounds=3", "--resume", "latest"]) == 0
    after = _lora(out)
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the resumed round moved the LoRA


@pytest.mark.parametrize("override, message", [
    ("best_of_round.timesteps=late", "best_of_round.timesteps: 'late' is not a valid choice; valid choices: "
                                     "'sampler', 'uniform'"),
    ("best_of_round.wieght=2", "unknown config key 'best_of_round.wieght'. Did you mean 'weight'?"),
    ("best_of_round.weight=0", "best_of_round.weight must be positive"),
    ("best_of_round.weight=heavy", "best_of_round.weight: expected a number, got str 'heavy'"),
])
def test_a_user_methods_section_gets_the_same_clear_errors(override, message):
    with pytest.raises(ConfigError) as e:
        load_config("configs/tiny-jpeg.yaml", [f"algorithm.method={TOY}", override])
    assert message in str(e.value)


def test_a_bad_method_path_or_name_is_a_clear_error():
    with pytest.raises(ConfigError, match="could not import it"):
        load_config(None, ["algorithm.method=tests.no_such_module:Thing"])
    with pytest.raises(ConfigError, match="not a lasro.methods.Method subclass"):
        load_config(None, ["algorithm.method=tests.toy_method:BestOfRoundConfig"])
    with pytest.raises(ConfigError, match="unknown method 'ppx'. Did you mean 'ppo'?"):
        load_config(None, ["algorithm.method=ppx"])
