"""The optional differentiable form of a reward (used only by the DRaFT baseline)."""
import numpy as np
import pytest
import torch
from PIL import Image

from lasro.rewards import RewardError, build_reward


def _images(seed=0, n=3):
    g = torch.Generator().manual_seed(seed)
    pixels = torch.rand(n, 3, 16, 16, generator=g)
    pixels[0] = 0.5  # a grey image: no saturation at all
    arrays = (pixels * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return (pixels * 255).round() / 255, [Image.fromarray(a) for a in arrays]


def test_saturation_differentiable_form_matches_the_black_box_score_and_has_a_gradient():
    reward = build_reward("saturation")
    pixels, images = _images()
    pixels.requires_grad_(True)
    scores = reward.differentiable(pixels, ["p"] * 3)
    np.testing.assert_allclose(scores.detach().numpy(), reward(images, ["p"] * 3).scores, atol=1e-6)
    assert scores[0] == 0 and reward.is_differentiable
    scores.sum().backward()
    assert pixels.grad.abs().sum() > 0


def test_weighted_sum_is_differentiable_only_when_every_component_is():
    both = build_reward([{"name": "saturation", "weight": 2.0}, {"name": "saturation", "weight": -0.5}])
    pixels, _ = _images()
    single = build_reward("saturation").differentiable(pixels, ["p"] * 3)
    torch.testing.assert_close(both.differentiable(pixels, ["p"] * 3), 1.5 * single)
    mixed = build_reward(["saturation", "jpeg_compressibility"])
    assert both.is_differentiable and not mixed.is_differentiable


def test_non_differentiable_and_misbehaving_rewards_name_themselves():
    pixels, _ = _images()
    with pytest.raises(RewardError, match="reward 'jpeg_compressibility' is not differentiable"):
        build_reward("jpeg_compressibility").differentiable(pixels, ["p"] * 3)

    class Bad:
        def __call__(self, images, prompts, metadata):
            return [0.0] * len(images)

        def differentiable(self, pixels, prompts):
            return pixels.mean()  # a scalar, not one score per image

    from lasro.rewards import CheckedReward

    with pytest.raises(RewardError, match=r"'bad'.differentiable returned .* expected a tensor of shape \(3,\)"):
        CheckedReward(Bad(), "bad").differentiable(pixels, ["p"] * 3)
