"""The paired before/after evaluation: ``paired_gain``, the trainer's final_eval.json and ``lasro eval --against-base``."""
import json

import numpy as np
import pytest
import torch

from lasro.cli import main
from lasro.evaluation import mean_metrics, paired_gain, score_samples, summary_lines
from lasro.generators import FewStepGenerator, load_pipeline
from lasro.rewards import build_reward
from lasro.training import Trainer

from .conftest import tiny_train_config

FINAL_PROMPTS = ["a red square", "a blue circle"]


def test_paired_gain_of_a_constant_shift_is_exact():
    before = np.random.default_rng(0).random(40)
    gain = paired_gain(before + 0.1, before, [f"p{i % 8}" for i in range(40)])
    assert gain["mean"] == pytest.approx(0.1)
    assert gain["ci95"] == pytest.approx([0.1, 0.1])


def test_paired_gain_resamples_prompts_not_samples():
    # one prompt gained 1 on all its 50 samples, the other nothing: with two prompts the gain is anywhere
    # in [0, 1]; resampling single samples would claim 0.5 +- 0.07
    after = np.r_[np.ones(50), np.zeros(50)]
    gain = paired_gain(after, np.zeros(100), ["a"] * 50 + ["b"] * 50)
    assert gain["mean"] == pytest.approx(0.5)
    assert gain["ci95"] == pytest.approx([0.0, 1.0])


def test_the_end_of_run_summary_shows_reward_parts_judges_and_exact_match_not_every_extra_metric():
    def entry(before, after):
        return before, after, {"mean": after - before, "ci95": [after - before - 0.01, after - before + 0.01]}

    rows = {"reward_2step": entry(0.670, 0.713), "reward/shapes_fidelity_2step": entry(0.748, 0.807),
            "shapes_detector/exact_match_2step": entry(0.124, 0.152), "shapes_judge/reward_2step": entry(0.5, 0.4),
            "shapes_fidelity/ghost_share_2step": entry(0.04, 0.03)}
    result = {"initial": {f"{k}_mean": b for k, (b, _, _) in rows.items()},
              "tuned": {f"{k}_mean": a for k, (_, a, _) in rows.items()}, "gain": {k: g for k, (_, _, g) in rows.items()}}
    lines = summary_lines(result)
    assert [line.split()[0] for line in lines] == ["reward_2step", "reward/shapes_fidelity_2step",
                                                   "shapes_detector/exact_match_2step", "shapes_judge/reward_2step"]
    assert lines[0].split()[1:] == ["0.670", "->", "0.713", "gain", "+0.043", "[+0.033,", "+0.053]"]
    assert "-0.100 [-0.110, -0.090]" in lines[3]


@pytest.fixture(scope="module")
def finished_run(tiny_dirs, tmp_path_factory):
    out = tmp_path_factory.mktemp("final") / "run"
    cfg = tiny_train_config(out, tiny_dirs["sdxl"], algorithm={"rounds": 1},
                            prompts={"final_eval": FINAL_PROMPTS, "final_eval_seeds": 3})
    Trainer(cfg).train()
    return out


def test_final_eval_pairs_the_tuned_model_with_the_initial_one(finished_run, tiny_dirs):
    result = json.loads((finished_run / "final_eval.json").read_text())
    assert result["samples"] == 6 and result["round"] == 1 and result["prompts"] == FINAL_PROMPTS
    for k in (1, 2):
        gain = result["gain"][f"reward_{k}step"]
        assert gain["mean"] == pytest.approx(result["tuned"][f"reward_{k}step_mean"]
                                             - result["initial"][f"reward_{k}step_mean"])
        assert gain["ci95"][0] <= gain["mean"] <= gain["ci95"][1]
    # "initial" is the model as loaded (the LoRA switched off), on the same noises as "tuned"
    fresh = FewStepGenerator(load_pipeline(tiny_dirs["sdxl"], torch.float32))
    prompts = [p for p in FINAL_PROMPTS for _ in range(3)]
    initial, _ = score_samples(fresh, build_reward("jpeg_compressibility"), prompts, seed=result["seed"])
    assert mean_metrics(initial) == pytest.approx(result["initial"])
    fresh.pipe.load_lora_weights(str(finished_run / "lora"))
    tuned, _ = score_samples(fresh, build_reward("jpeg_compressibility"), prompts, seed=result["seed"])
    assert mean_metrics(tuned) == pytest.approx(result["tuned"])
    assert result["tuned"] != pytest.approx(result["initial"])  # the LoRA moved the samples


def test_a_bad_final_eval_set_fails_before_training(tiny_dirs, tmp_path):
    cfg = tiny_train_config(tmp_path / "run", tiny_dirs["sdxl"], prompts={"final_eval": "missing-prompts.txt"})
    with pytest.raises(FileNotFoundError, match="prompts.final_eval"):
        Trainer(cfg)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_eval_against_base_reports_the_paired_gain(finished_run, tiny_dirs, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(FINAL_PROMPTS))
    args = ["eval", "--model", tiny_dirs["sdxl"], "--reward", "jpeg_compressibility", "--prompts", str(prompts),
            "--seeds", "3", "--seed", "20000", "--device", "cpu"]
    assert main(args + ["--against-base"]) == 2
    assert "give --lora too" in capsys.readouterr().err
    assert main(args + ["--lora", str(finished_run / "lora"), "--against-base"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    result = json.loads((finished_run / "final_eval.json").read_text())
    # the trainer's final evaluation (seed 20000 + config seed 0) is this command's
    assert row["base"] == pytest.approx(result["initial"])
    assert {k: row[k] for k in result["tuned"]} == pytest.approx(result["tuned"])
    assert row["gain"]["reward_2step"]["mean"] == pytest.approx(result["gain"]["reward_2step"]["mean"])
