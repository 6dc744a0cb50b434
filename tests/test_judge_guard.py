"""Held-out judges as constraints (eval_rewards max_drop): the run stops once a guarded judge falls past
its tolerance and keeps the LoRA of the last evaluation where every guarded judge held."""
import json
import os

import pytest
import torch
from safetensors.torch import load_file

from lasro.rewards import build_judges, judge_tolerances
from lasro.training import Trainer
from lasro.training.judge_guard import JudgeGuard

from .conftest import tiny_train_config


def test_max_drop_is_a_judges_tolerance_not_a_reward_argument():
    specs = [{"name": "saturation", "max_drop": 0.02}, "jpeg_compressibility", {"name": "saturation"}]
    assert judge_tolerances(specs) == {"saturation": 0.02}
    assert list(build_judges(specs)) == ["saturation", "jpeg_compressibility", "saturation#2"]
    for bad in (-0.1, "a lot", True):
        with pytest.raises(ValueError, match="max_drop must be a number >= 0"):
            judge_tolerances([{"name": "saturation", "max_drop": bad}])


def test_guard_compares_each_step_count_with_round_0():
    guard, params = JudgeGuard({"judge": 0.05}), [torch.zeros(2)]
    m = lambda one, two: {"eval/judge/reward_1step_mean": one, "eval/judge/reward_2step_mean": two}  # noqa: E731
    assert guard.observe(0, m(0.5, 0.6), params) == [] and guard.last_held == 0
    params[0] += 1
    assert guard.observe(1, m(0.46, 0.6), params) == []  # 0.04 below: held
    params[0] += 1
    (violation,) = guard.observe(2, m(0.5, 0.5), params)
    assert "'judge' at 2step" in violation and "0.1000 below round 0's 0.6000 (max_drop 0.05)" in violation
    assert guard.tripped == {"round": 2, "kept_round": 1, "violations": [violation]}
    guard.restore(params)
    assert params[0].tolist() == [1.0, 1.0]  # round 1's weights
    with pytest.raises(ValueError, match="no evaluation figures for judge"):
        JudgeGuard({"other": 0.1}).observe(0, m(0.5, 0.6), params)


def test_a_falling_judge_stops_the_run_and_its_lora_is_the_last_that_held(tiny_dirs, tmp_path):
    """The judge's figures are replaced by a script (0.5, 0.5, then 0.3): the run stops at round 2's
    evaluation, its LoRA and final evaluation are round 1's, and a resume of it trains no further."""
    out = tmp_path / "run"
    cfg = tiny_train_config(out, tiny_dirs["sdxl"], algorithm={"rounds": 4, "generator_steps": 2},
                            logging={"checkpoint_every": 1, "checkpoints_total_limit": 0},
                            prompts={"final_eval": ["a red square"], "final_eval_seeds": 1})
    script = {0: 0.5, 1: 0.5, 2: 0.3, 3: 0.3, 4: 0.3}

    def scripted(trainer):
        real = trainer.evaluate
        trainer.evaluate = lambda r: {**real(r), "eval/judge/reward_2step_mean": script[r]}
        trainer.guard = JudgeGuard({"judge": 0.1})
        return trainer

    t = scripted(Trainer(cfg))
    rows = t.train()
    assert [r["round"] for r in rows] == [0, 1, 2] and rows[-1]["judge_guard/tripped"] == 1.0
    kept = load_file(str(out / "checkpoints" / "round-000001" / "generator_lora" / "pytorch_lora_weights.safetensors"))
    final = load_file(str(out / "lora" / "pytorch_lora_weights.safetensors"))
    assert kept.keys() == final.keys() and all(torch.equal(kept[k], final[k]) for k in kept)
    start = load_file(str(out / "checkpoints" / "round-000000" / "generator_lora" / "pytorch_lora_weights.safetensors"))
    assert not all(torch.equal(start[k], kept[k]) for k in kept)  # round 1 had moved
    result = json.load(open(out / "final_eval.json"))
    assert result["judge_guard"]["round"] == 2 and result["judge_guard"]["kept_round"] == 1
    assert os.path.exists(out / "checkpoints" / "round-000002" / "judge_guard_lora.safetensors")

    again = scripted(Trainer(cfg))
    assert again.train(resume="latest") == []  # stopped by the judge: nothing more to train
    assert again.guard.tripped["kept_round"] == 1
    final_again = load_file(str(out / "lora" / "pytorch_lora_weights.safetensors"))
    assert all(torch.equal(final[k], final_again[k]) for k in final)
