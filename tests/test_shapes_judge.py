"""``shapes_judge``: the learned judge builds from the demo's own data, loads, scores and has a gradient."""
import json
import os

import numpy as np
import pytest
import torch

from lasro import shapes
from lasro.cli import main
from lasro.rewards import build_reward
from lasro.rewards.shapes_judge import SHIPPED, WEIGHTS, load_judge


def test_build_judge_writes_weights_and_its_record_and_the_reward_reads_them(tmp_path, capsys):
    out = tmp_path / "judge"
    assert main(["demo", "build-judge", "--out", str(out), "--scale", "0.01"]) == 0
    build = json.loads((out / "BUILD.json").read_text())
    assert build["held_out"]["items"] > 0 and -1 <= build["held_out"]["pearson_r"] <= 1
    assert '"held_out"' in capsys.readouterr().out
    assert build["command"] == f"lasro demo build-judge --out {out} --scale 0.01"
    reward = build_reward({"name": "shapes_judge", "kwargs": {"path": str(out)}})
    prompts = ["a red circle and a blue square", "two green triangles"]
    images = [shapes.render(shapes.layout(shapes.parse_prompt(p), np.random.default_rng(0)))
              for p in prompts]
    scores = reward(images, prompts, [{}, {}]).scores
    assert scores.shape == (2,) and ((scores > 0) & (scores < 1)).all()
    pixels = torch.rand(2, 3, 64, 64, requires_grad=True)
    reward.differentiable(pixels, prompts).sum().backward()
    assert pixels.grad.abs().sum() > 0


def test_a_missing_judge_names_the_build_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="lasro demo build-judge --out"):
        load_judge(str(tmp_path))


def test_the_shipped_judge_is_small_and_orders_held_out_pairs_well():
    assert os.path.getsize(os.path.join(SHIPPED, WEIGHTS)) <= 5 * 2**20
    with open(os.path.join(SHIPPED, "BUILD.json")) as f:
        build = json.load(f)
    assert build["held_out"]["pair_accuracy"] > 0.85 and build["held_out"]["pearson_r"] > 0.8
    assert build["command"] == "lasro demo build-judge"


def test_the_shipped_judge_scores_a_faithful_render_above_a_wrong_one():
    rng = np.random.default_rng(1)
    reward = build_reward("shapes_judge")
    prompt = "a red circle and two blue squares"
    right = [shapes.render(shapes.layout(shapes.parse_prompt(prompt), rng)) for _ in range(8)]
    wrong = [shapes.render(shapes.layout(shapes.parse_prompt("a green triangle"), rng)) for _ in range(8)]
    scores = reward(right + wrong, [prompt] * 16, [{}] * 16).scores
    assert scores[:8].mean() > scores[8:].mean() + 0.3
