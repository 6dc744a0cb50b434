"""The shapes domain and the OpenCV shapes_detector reward."""
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from lasro import shapes
from lasro.rewards import RewardError, build_reward
from lasro.rewards.shapes_detector import detect, match_score


def test_prompts_round_trip_and_splits_are_disjoint():
    train, test = shapes.split_prompts("train"), shapes.split_prompts("test")
    assert len(train) + len(test) == len(shapes.all_compositions()) == 1819
    assert not set(train) & set(test)
    assert 0.15 < len(test) / 1819 < 0.25
    for p in train[:50] + test[:50]:
        assert shapes.prompt_for(shapes.parse_prompt(p)) == p
    assert shapes.parse_prompt("a blue square and two red triangles") == Counter(
        {("blue", "square"): 1, ("red", "triangle"): 2})
    assert shapes.prompt_for(Counter({("red", "triangle"): 2, ("blue", "square"): 1, ("green", "circle"): 1})) == \
        "two red triangles, a green circle and a blue square"


def test_sample_prompts_balances_object_counts_and_is_deterministic():
    ps = shapes.sample_prompts("test", 40, seed=3)
    assert ps == shapes.sample_prompts("test", 40, seed=3)
    counts = Counter(sum(shapes.parse_prompt(p).values()) for p in ps)
    assert counts == {1: 10, 2: 10, 3: 10, 4: 10}
    assert set(ps) <= set(shapes.split_prompts("test"))


def test_balanced_prompts_are_distinct_and_spread_over_object_counts():
    ps = shapes.balanced_prompts("test", 64)
    assert len(set(ps)) == 64 and ps == shapes.balanced_prompts("test", 64)
    counts = Counter(sum(shapes.parse_prompt(p).values()) for p in ps)
    sizes = Counter(sum(shapes.parse_prompt(p).values()) for p in shapes.split_prompts("test"))
    # every object count gets its whole group or an equal share (the test split has 1 single-object prompt)
    assert all(counts[k] == sizes[k] or counts[k] >= max(counts.values()) - 1 for k in sizes)
    assert counts[1] == sizes[1] == 1
    assert len(shapes.balanced_prompts("test", 10_000)) == len(shapes.split_prompts("test"))


def test_scenes_match_their_prompt_and_stay_in_their_split():
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for _ in range(20):
            img, prompt = shapes.sample_scene(rng, split)
            assert img.size == (64, 64) and img.mode == "RGB"
            assert prompt in set(shapes.split_prompts(split))


def test_layout_puts_each_object_in_its_own_grid_cell():
    rng = np.random.default_rng(1)
    counts = Counter({("yellow", "triangle"): 1, ("red", "circle"): 2})
    used = Counter()
    for _ in range(200):
        objs = shapes.layout(counts, rng)
        assert sorted((o.colour, o.shape) for o in objs) == [("red", "circle")] * 2 + [("yellow", "triangle")]
        cells = []
        for o in objs:
            half, col, row = o.size / 2, int(o.cx // 32), int(o.cy // 32)
            assert col * 32 <= o.cx - half and o.cx + half <= (col + 1) * 32  # inside one cell
            assert row * 32 <= o.cy - half and o.cy + half <= (row + 1) * 32
            cells.append((row, col))
        assert len(set(cells)) == 3
        used[next(c for o, c in zip(objs, cells) if o.shape == "triangle")] += 1
    assert len(used) == 4 and min(used.values()) > 20  # any object can land in any cell
    with pytest.raises(ValueError, match="1-4 objects"):
        shapes.layout(Counter({("red", "circle"): 5}), rng)


def test_detector_exact_match_on_clean_scenes_is_at_least_98_percent():
    rng = np.random.default_rng(123)
    n, exact = 400, 0
    for _ in range(n):
        counts = shapes.random_composition(rng)
        exact += match_score(counts, detect(shapes.render(shapes.layout(counts, rng))))[1]
    assert exact / n >= 0.98


def test_score_penalises_missing_wrong_and_extra_objects():
    asked = Counter({("red", "circle"): 2})
    assert match_score(asked, Counter({("red", "circle"): 2})) == (1.0, True)
    assert match_score(asked, Counter({("red", "circle"): 1})) == (0.5, False)
    assert match_score(asked, Counter({("red", "circle"): 2, ("blue", "square"): 2})) == (0.5, False)
    assert match_score(asked, Counter({("red", "square"): 2})) == (0.0, False)
    assert match_score(asked, Counter()) == (0.0, False)


def test_reward_scores_images_against_prompts_with_exact_match_info():
    rng = np.random.default_rng(5)
    counts = Counter({("blue", "square"): 1, ("yellow", "triangle"): 2})
    img = shapes.render(shapes.layout(counts, rng))
    blank = Image.new("RGB", (64, 64), "white")
    reward = build_reward("shapes_detector")
    prompts = [shapes.prompt_for(counts), "a green circle", shapes.prompt_for(counts)]
    out = reward([img, img, blank], prompts)
    np.testing.assert_allclose(out.scores, [1.0, 0.0, 0.0])
    np.testing.assert_allclose(out.info["exact_match"], [1.0, 0.0, 0.0])


def test_reward_rejects_prompts_outside_the_domain():
    with pytest.raises(RewardError, match="names no shapes-domain objects"):
        build_reward("shapes_detector")([Image.new("RGB", (64, 64))], ["a photo of a cat"])


def test_builtin_prompt_sets_resolve_and_bad_ones_explain():
    from lasro.prompts import resolve_prompts

    assert resolve_prompts("shapes:test", "k") == shapes.split_prompts("test")
    assert len(resolve_prompts("shapes:train:12", "k")) == 12
    with pytest.raises(ValueError, match="shapes:train"):
        resolve_prompts("shapes:validation", "prompts.eval")
