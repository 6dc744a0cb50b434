"""Colour saturation: a simple reward with an exact differentiable form, for the DRaFT baseline and
for testing reward back-propagation (LaSRO itself never needs the gradient)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from lasro.rewards.base import Reward
from lasro.rewards.registry import register_reward


@register_reward(
    "saturation",
    description="Mean chroma (max minus min of R, G, B per pixel), 0-1: rewards vivid colours; differentiable.",
)
class Saturation(Reward):
    """Mean per-pixel chroma ``max(R,G,B) - min(R,G,B)`` in [0, 1]: 0 for greys, 1 for pure hues."""

    def __call__(self, images: list[Image.Image], prompts: list[str], metadata: list[dict]) -> np.ndarray:
        arrays = [np.asarray(im.convert("RGB"), dtype=np.float64) / 255.0 for im in images]
        return np.array([float((a.max(axis=-1) - a.min(axis=-1)).mean()) for a in arrays])

    def differentiable(self, pixels: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        return (pixels.amax(dim=1) - pixels.amin(dim=1)).mean(dim=(1, 2))
