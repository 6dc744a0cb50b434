"""``shapes_spatial``: the relation a prompt states, checked on rendered scenes; the pair prompt sets."""
import numpy as np
import pytest

from lasro import shapes
from lasro.prompts import resolve_prompts
from lasro.rewards import build_reward
from lasro.rewards.shapes_spatial import parse_relation

RED_TOP_LEFT = [shapes.SceneObject("red", "circle", 16, 16, 16), shapes.SceneObject("blue", "square", 48, 44, 16)]


def _score(prompts, objects=RED_TOP_LEFT):
    reward = build_reward("shapes_spatial")
    image = shapes.render(objects)
    out = reward([image] * len(prompts), prompts, [{}] * len(prompts))
    return out.scores, out.info["relation_holds"]


def test_the_relation_the_prompt_states_decides_the_score():
    scores, holds = _score(["a red circle and a blue square", "a red circle to the left of a blue square",
                            "a red circle above a blue square", "a blue square below a red circle",
                            "a blue square and a red circle", "a red circle right of a blue square",
                            "a blue square above a red circle"])
    assert (scores[:4] > 0.95).all() and (holds[:4] == 1).all()
    assert (scores[4:] < 0.05).all() and (holds[4:] == 0).all()


def test_side_by_side_scores_half_and_a_missing_object_scores_zero():
    level = [shapes.SceneObject("red", "circle", 16, 32, 14), shapes.SceneObject("blue", "square", 48, 32, 14)]
    scores, _ = _score(["a red circle above a blue square"], level)
    assert scores[0] == pytest.approx(0.5, abs=0.05)
    scores, holds = _score(["a green triangle and a blue square"])
    assert scores[0] == 0 and holds[0] == 0


def test_a_prompt_without_two_objects_is_a_clear_error():
    with pytest.raises(ValueError, match="relates no two different shapes-domain objects.*pairs-train"):
        parse_relation("a red circle")
    with pytest.raises(ValueError, match="relates no two"):
        parse_relation("a red circle and a red circle")


def test_pair_prompts_name_each_pair_in_both_orders_and_split_like_the_compositions():
    train, test = resolve_prompts("shapes:pairs-train", "k"), resolve_prompts("shapes:pairs-test", "k")
    assert len(train) + len(test) == 12 * 11 and not set(train) & set(test)
    for p in test:
        first, _, second = parse_relation(p)
        assert f"a {second[0]} {second[1]} and a {first[0]} {first[1]}" in test
        assert shapes.is_test_composition(shapes.parse_prompt(p))
    assert resolve_prompts("shapes:pairs-test:4", "k") == test[:4]


def test_random_layouts_satisfy_about_half():
    rng = np.random.default_rng(0)
    prompts = resolve_prompts("shapes:pairs-train", "k")[:48]
    images = [shapes.render(shapes.layout(shapes.parse_prompt(p), rng)) for p in prompts]
    out = build_reward("shapes_spatial")(images, prompts, [{}] * len(prompts))
    assert 0.3 < out.scores.mean() < 0.7
