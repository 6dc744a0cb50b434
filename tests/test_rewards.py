"""Behaviour tests for the reward interface, validation, registry and JPEG rewards."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from lasro.rewards import (
    CheckedReward,
    Reward,
    RewardError,
    WeightedReward,
    build_reward,
    list_rewards,
    register_reward,
)


def _flat() -> Image.Image:
    return Image.new("RGB", (64, 64), (120, 30, 200))


def _noise(seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))


IMAGES = [_flat(), _noise()]
PROMPTS = ["a flat image", "noise"]


# --- rewards referenced by dotted path ---------------------------------------------------------


def my_reward(images, prompts, metadata):
    """Mean brightness in [0, 1], plus a per-image 'is_bright' metric."""
    scores = [np.asarray(im, dtype=np.float64).mean() / 255.0 for im in images]
    return scores, {"is_bright": [s > 0.5 for s in scores]}


def scaled_reward(images, prompts, metadata, scale: float = 1.0):
    return torch.tensor([scale * len(p) for p in prompts])


class LengthReward(Reward):
    name = "length"
    description = "prompt length"

    def __init__(self, offset: float = 0.0):
        self.offset = offset

    def __call__(self, images, prompts, metadata):
        return np.array([len(p) + self.offset for p in prompts])


# --- JPEG ---------------------------------------------------------------------------------------


def test_jpeg_compressibility_prefers_flat_images_with_kb_magnitude():
    out = build_reward("jpeg_compressibility")(IMAGES, PROMPTS)
    flat, noise = out.scores
    assert out.scores.dtype == np.float64 and out.scores.shape == (2,)
    assert flat > noise
    assert -2.0 < flat < -0.2  # a 64x64 flat JPEG is well under 2 kB (mostly header)
    assert -20.0 < noise < -3.0  # 64x64 RGB noise is several kB even with chroma subsampling


def test_jpeg_incompressibility_is_the_reverse():
    comp = build_reward("jpeg_compressibility")(IMAGES, PROMPTS).scores
    incomp = build_reward("jpeg_incompressibility")(IMAGES, PROMPTS).scores
    assert incomp[1] > incomp[0] > 0
    np.testing.assert_allclose(incomp, -comp)


def test_jpeg_quality_kwarg_changes_size():
    hi = build_reward({"name": "jpeg_incompressibility", "kwargs": {"quality": 95}})
    lo = build_reward({"name": "jpeg_incompressibility", "kwargs": {"quality": 20}})
    assert lo([_noise()], ["x"]).scores[0] < 0.7 * hi([_noise()], ["x"]).scores[0]
    with pytest.raises(ValueError, match="quality"):
        build_reward({"name": "jpeg_compressibility", "kwargs": {"quality": 0}})


def test_list_rewards_contains_jpeg_rewards_sorted():
    listed = list_rewards()
    names = [n for n, _, _ in listed]
    assert "jpeg_compressibility" in names and "jpeg_incompressibility" in names
    assert names == sorted(names)
    desc = dict((n, d) for n, d, _ in listed)
    assert "JPEG" in desc["jpeg_compressibility"] and "\n" not in desc["jpeg_compressibility"]
    assert all(nw is False for n, _, nw in listed if n.startswith("jpeg_"))


# --- registry -----------------------------------------------------------------------------------


def test_build_by_name_returns_checked_reward():
    r = build_reward("jpeg_compressibility")
    assert isinstance(r, CheckedReward) and r.name == "jpeg_compressibility"


def test_build_by_dotted_path_function_with_info():
    r = build_reward("tests.test_rewards:my_reward")
    out = r([Image.new("RGB", (8, 8), (255, 255, 255)), Image.new("RGB", (8, 8))], ["a", "b"])
    np.testing.assert_allclose(out.scores, [1.0, 0.0])
    np.testing.assert_array_equal(out.info["is_bright"], [1.0, 0.0])


def test_build_dotted_path_function_with_kwargs_and_torch_scores():
    r = build_reward({"name": "tests.test_rewards:scaled_reward", "kwargs": {"scale": 0.5}})
    out = r(IMAGES, ["abcd", "ab"])
    np.testing.assert_allclose(out.scores, [2.0, 1.0])
    assert out.scores.dtype == np.float64


def test_build_dotted_path_class_is_instantiated_with_kwargs():
    r = build_reward({"name": "tests.test_rewards:LengthReward", "kwargs": {"offset": 10}})
    np.testing.assert_allclose(r(IMAGES, ["abc", ""]).scores, [13.0, 10.0])


def test_list_spec_is_weighted_sum_with_component_info():
    r = build_reward(
        [
            {"name": "jpeg_compressibility", "weight": 2.0},
            "tests.test_rewards:my_reward",
            {"name": "tests.test_rewards:LengthReward", "kwargs": {"offset": 1}, "weight": -0.5},
        ]
    )
    assert isinstance(r, WeightedReward)
    out = r(IMAGES, PROMPTS)
    jpeg = build_reward("jpeg_compressibility")(IMAGES, PROMPTS).scores
    bright = build_reward("tests.test_rewards:my_reward")(IMAGES, PROMPTS).scores
    length = np.array([len(p) + 1 for p in PROMPTS], dtype=np.float64)
    np.testing.assert_allclose(out.scores, 2.0 * jpeg + bright - 0.5 * length)
    np.testing.assert_allclose(out.info["reward/jpeg_compressibility"], jpeg)
    np.testing.assert_allclose(out.info["reward/tests.test_rewards:my_reward"], bright)
    assert "tests.test_rewards:my_reward/is_bright" in out.info


def test_duplicate_registration_raises():
    @register_reward("_test_dup_reward", description="x")
    def factory():
        return lambda images, prompts, metadata: [0.0] * len(images)

    with pytest.raises(ValueError, match="_test_dup_reward"):
        register_reward("_test_dup_reward", description="y")(factory)
    assert ("_test_dup_reward", "x", False) in list_rewards()


def test_unknown_name_suggests_closest_and_dotted_path():
    with pytest.raises(ValueError) as e:
        build_reward("jpeg_compresibility")
    msg = str(e.value)
    assert "jpeg_compresibility" in msg and "Did you mean 'jpeg_compressibility'" in msg
    assert "jpeg_incompressibility" in msg and "package.module:attr" in msg


def test_bad_dotted_path_and_unknown_dict_key():
    with pytest.raises(ValueError, match="no_such_module_xyz"):
        build_reward("no_such_module_xyz:fn")
    with pytest.raises(ValueError, match="no_such_attr"):
        build_reward("tests.test_rewards:no_such_attr")
    with pytest.raises(ValueError) as e:
        build_reward({"name": "jpeg_compressibility", "kwarg": {}})
    assert "'kwarg'" in str(e.value) and "kwargs" in str(e.value)


# --- validation errors --------------------------------------------------------------------------


def _check(fn, name: str = "bad_reward") -> CheckedReward:
    return CheckedReward(fn, name)


def test_reward_that_raises_is_chained_and_named():
    def boom(images, prompts, metadata):
        raise KeyError("missing_field")

    with pytest.raises(RewardError) as e:
        _check(boom)(IMAGES, PROMPTS)
    msg = str(e.value)
    assert "bad_reward" in msg and "KeyError" in msg and "missing_field" in msg and "2 image" in msg
    assert isinstance(e.value.__cause__, KeyError)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_scores_list_index_and_value(bad):
    with pytest.raises(RewardError) as e:
        _check(lambda i, p, m: [1.0, bad])(IMAGES, PROMPTS)
    msg = str(e.value)
    assert "bad_reward" in msg and "non-finite" in msg and f"[1]={bad!r}" in msg
    assert "one finite float per image" in msg


def test_wrong_length_says_counts():
    with pytest.raises(RewardError) as e:
        _check(lambda i, p, m: [1.0, 2.0, 3.0])(IMAGES, PROMPTS)
    msg = str(e.value)
    assert "bad_reward" in msg and "3 scores for 2 images" in msg


def test_two_d_array_says_shape():
    with pytest.raises(RewardError) as e:
        _check(lambda i, p, m: np.zeros((2, 3)))(IMAGES, PROMPTS)
    msg = str(e.value)
    assert "bad_reward" in msg and "(2, 3)" in msg and "(2,)" in msg


def test_non_numeric_and_none_say_type():
    with pytest.raises(RewardError, match=r"bad_reward.*str"):
        _check(lambda i, p, m: ["high", "low"])(IMAGES, PROMPTS)
    with pytest.raises(RewardError, match=r"bad_reward.*None.*return"):
        _check(lambda i, p, m: None)(IMAGES, PROMPTS)


def test_info_of_wrong_length_is_named():
    with pytest.raises(RewardError) as e:
        _check(lambda i, p, m: ([0.0, 1.0], {"exact": [1]}))(IMAGES, PROMPTS)
    msg = str(e.value)
    assert "bad_reward" in msg and "'exact'" in msg and "(1,)" in msg and "2 images" in msg


def test_weighted_error_names_failing_component():
    good = build_reward("jpeg_compressibility")
    bad = _check(lambda i, p, m: [float("nan")] * len(i), name="flaky")
    with pytest.raises(RewardError) as e:
        WeightedReward([("jpeg_compressibility", good, 1.0), ("flaky", bad, 1.0)])(IMAGES, PROMPTS)
    assert "reward 'flaky'" in str(e.value)


def test_metadata_is_passed_and_defaults_to_empty_dicts():
    seen = []

    def spy(images, prompts, metadata):
        seen.append(metadata)
        return np.zeros(len(images))

    r = _check(spy, "spy")
    r(IMAGES, PROMPTS)
    r(IMAGES, PROMPTS, [{"target": "a"}, {"target": "b"}])
    assert seen == [[{}, {}], [{"target": "a"}, {"target": "b"}]]
    with pytest.raises(ValueError, match="spy"):
        r(IMAGES, ["only one prompt"])


def test_registered_classes_carry_the_name_and_description_stated_in_the_decorator():
    from lasro.rewards.registry import _REGISTRY

    listed = {n: (d, nw) for n, d, nw in list_rewards()}
    for name, entry in _REGISTRY.items():
        if isinstance(entry.factory, type):
            cls = entry.factory
            assert (cls.name, cls.description, cls.needs_weights) == (name, *listed[name]), name
    assert build_reward("jpeg_compressibility").description == listed["jpeg_compressibility"][0]
    assert listed["clip_score"][1] is True and listed["saturation"][1] is False  # from HubReward / Reward


def test_register_reward_states_name_and_description_once():
    @register_reward("_test_stated_once", description="from the decorator")
    class Stated(Reward):
        def __call__(self, images, prompts, metadata):
            return [0.0] * len(images)

    assert (Stated.name, Stated.description, Stated.needs_weights) == ("_test_stated_once", "from the decorator", False)

    @register_reward("_test_class_description")
    class OwnDescription(Stated):
        description = "from the class"
        needs_weights = True

    assert ("_test_class_description", "from the class", True) in list_rewards()
    assert OwnDescription.name == "_test_class_description" and Stated.name == "_test_stated_once"

    class Conflicting(Stated):
        description = "one thing"

    with pytest.raises(ValueError, match="state it in one place"):
        register_reward("_test_conflict", description="another")(Conflicting)
    with pytest.raises(ValueError, match="no description"):
        register_reward("_test_no_description")(lambda: None)
    assert "_test_conflict" not in [n for n, _, _ in list_rewards()]
