"""Pictures a person can read: labelled sample grids, the before/after picture of the final evaluation,
the held-out monitor's interval and the reward curve."""
import json

import numpy as np
import pytest
from PIL import Image

from lasro.evaluation import mean_interval, render_samples, score_samples, spread_samples
from lasro.images import format_change, format_score, grid_layout, labelled_grid
from lasro.training import Trainer

from .conftest import tiny_train_config

FINAL_PROMPTS = ["a red square", "a blue circle", "a green tree", "two yellow stars", "a purple triangle"]


def _dark_pixels(picture: Image.Image, box) -> int:
    return int((np.asarray(picture.crop(box).convert("L")) < 128).sum())


def _noise_images(n, size, seed=0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(n)]


def test_labelled_grid_upscales_small_images_and_writes_prompts_and_scores():
    images = _noise_images(6, 64)
    prompts = ["a red square", "three blue circles next to a green triangle on the left"]
    scores = [0.62, 0.1, -3.58, 1.0, 0.0, 123.4]
    grid = labelled_grid(images, rows=2, row_labels=prompts, captions=[format_score(s) for s in scores])
    layout = grid_layout((64, 64), 6, 2, row_labels=True, captions=True)
    assert layout.scale == 3 and layout.tile == (192, 192) and (layout.rows, layout.cols) == (2, 3)
    assert grid.size == layout.size
    tw, th = layout.tile
    assert grid.width == layout.label_w + 3 * tw + 4 * 4 and grid.height == 2 * (th + layout.caption_h + 4) + 4
    # each image, upscaled nearest-neighbour x3, where the layout says
    for i, im in enumerate(images):
        assert np.array_equal(np.asarray(grid.crop(layout.tile_box(i))), np.asarray(im.resize((192, 192), Image.NEAREST)))
    # text where the prompts and the scores go
    for r in range(2):
        assert _dark_pixels(grid, layout.label_box(r)) > 50
    for i in range(6):
        assert _dark_pixels(grid, layout.caption_box(i)) > 10
    assert [format_score(s) for s in scores] == ["0.62", "0.10", "-3.58", "1.00", "0.00", "123"]
    assert format_change(0.061) == "+0.06" and format_change(-0.0025) == "-2.5e-03"


def test_large_images_are_not_upscaled_and_headers_span_their_columns():
    images = _noise_images(4, 512)
    grid = labelled_grid(images, rows=2, row_labels=["a", "b"], captions=["1", "2", "3", "4"],
                         column_headers=["initial", "tuned"])
    layout = grid_layout((512, 512), 4, 2, row_labels=True, captions=True, headers=True)
    assert layout.scale == 1 and layout.tile == (512, 512) and grid.size == layout.size
    assert layout.font_size > 20  # text grows with the images
    assert np.array_equal(np.asarray(grid.crop(layout.tile_box(3))), np.asarray(images[3]))
    for c in range(2):
        assert _dark_pixels(grid, layout.header_box(c)) > 20


def test_spread_samples_span_the_initial_scores():
    prompts = [f"p{i}" for i in range(20) for _ in range(2)]
    values = np.repeat(np.arange(20.0)[::-1], 2)  # p0 scores highest
    idx = spread_samples(prompts, values, count=5)
    assert len(idx) == 5 and all(i % 2 == 0 for i in idx)  # each prompt's first sample
    picked = [values[i] for i in idx]
    assert picked == sorted(picked) and picked[0] == 0 and picked[-1] == 19  # lowest to highest
    assert spread_samples(["a", "b", "a"], np.array([1.0, 0.0, 1.0]), count=8) == [1, 0]


def test_mean_interval_resamples_prompts_and_falls_back_to_samples_for_one_prompt():
    values = np.random.default_rng(0).normal(size=40)
    lo, hi = mean_interval(values, [f"p{i % 4}" for i in range(40)])
    assert lo <= values.mean() <= hi and lo < hi
    lo1, hi1 = mean_interval(values, ["p"] * 40)  # one prompt: its samples are resampled instead
    assert lo1 < values.mean() < hi1
    assert mean_interval(np.full(6, 0.3), ["a", "b"] * 3) == pytest.approx([0.3, 0.3])


def test_render_samples_redraws_scored_samples_from_their_noises(tiny_dirs):
    import torch

    from lasro.generators import FewStepGenerator, load_pipeline
    from lasro.rewards import build_reward

    gen = FewStepGenerator(load_pipeline(tiny_dirs["sdxl"], torch.float32))
    prompts = [p for p in ("a red square", "a blue circle", "a tree") for _ in range(3)]
    _, images = score_samples(gen, build_reward("jpeg_compressibility"), prompts, seed=5, chunk=4)
    for k in (1, 2):
        again = render_samples(gen, prompts, 5, [7, 0, 4], k, chunk=2)
        for im, i in zip(again, [7, 0, 4]):  # other batches: at most a level of rounding apart
            assert np.abs(np.asarray(im, dtype=int) - np.asarray(images[k][i], dtype=int)).max() <= 2


@pytest.fixture(scope="module")
def run_with_final_eval(tiny_dirs, tmp_path_factory):
    out = tmp_path_factory.mktemp("pictures") / "run"
    cfg = tiny_train_config(out, tiny_dirs["sdxl"], algorithm={"rounds": 1}, eval_rewards=["saturation"],
                            prompts={"final_eval": FINAL_PROMPTS, "final_eval_seeds": 1})
    Trainer(cfg).train()
    return out


def test_eval_grids_are_labelled(run_with_final_eval):
    grid = Image.open(run_with_final_eval / "samples" / "eval_2step_round-0001.png")
    layout = grid_layout((64, 64), 2, 1, row_labels=True, captions=True)  # 1 eval prompt x 2 seeds
    assert grid.size == layout.size
    assert _dark_pixels(grid, layout.label_box(0)) > 50
    assert all(_dark_pixels(grid, layout.caption_box(i)) > 10 for i in range(2))


def test_before_after_picture_after_a_run_with_final_eval(run_with_final_eval):
    for k in (1, 2):
        picture = Image.open(run_with_final_eval / "samples" / f"before_after_{k}step.png")
        layout = grid_layout((64, 64), 2 * len(FINAL_PROMPTS), len(FINAL_PROMPTS), row_labels=True, captions=True,
                             headers=True)
        assert picture.size == layout.size  # one row per prompt (5 < 8), initial | tuned
        assert all(_dark_pixels(picture, layout.header_box(c)) > 20 for c in range(2))
        assert all(_dark_pixels(picture, layout.label_box(r)) > 50 for r in range(len(FINAL_PROMPTS)))
    # final_eval.json keeps its keys and adds each mean's interval
    result = json.loads((run_with_final_eval / "final_eval.json").read_text())
    assert {"prompts", "samples", "seed", "round", "reward_queries", "tuned", "initial", "gain"} <= set(result)
    for which in ("tuned", "initial"):
        for key, (lo, hi) in result["ci95"][which].items():
            assert lo <= result[which][f"{key}_mean"] <= hi


def test_monitor_interval_is_logged_and_contains_the_mean(run_with_final_eval):
    rows = [json.loads(line) for line in (run_with_final_eval / "metrics.jsonl").read_text().splitlines()]
    evaluated = [r for r in rows if "eval/reward_2step_mean" in r]
    assert len(evaluated) == 2
    for r in evaluated:
        for prefix in ("eval/reward", "eval/saturation/reward"):
            for k in (1, 2):
                lo, mean, hi = (r[f"{prefix}_{k}step_{s}"] for s in ("ci95_low", "mean", "ci95_high"))
                assert lo <= mean <= hi
        assert r["eval/reward_2step_ci95_low"] < r["eval/reward_2step_ci95_high"]  # 2 seeds differ
    assert (run_with_final_eval / "reward_curve.png").read_bytes()[:4] == b"\x89PNG"
