"""Weighted sum of rewards, so several objectives can be optimised (and logged) at once."""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
from PIL import Image

from lasro.rewards.base import CheckedReward


class WeightedReward(CheckedReward):
    """Sum of weighted components; each component is checked on its own so errors name it."""

    def __init__(self, components: list[tuple[str, CheckedReward | Callable[..., Any], float]]):
        if not components:
            raise ValueError("WeightedReward needs at least one component")
        self.components: list[tuple[str, CheckedReward, float]] = []
        for name, reward, weight in components:
            weight = float(weight)
            if not math.isfinite(weight):
                raise ValueError(f"reward '{name}' has non-finite weight {weight}")
            if not isinstance(reward, CheckedReward):
                reward = CheckedReward(reward, name)
            self.components.append((name, reward, weight))
        label = " + ".join(f"{w:g}*{n}" for n, _, w in self.components)
        super().__init__(
            self._combine,
            f"weighted({label})",
            needs_weights=any(r.needs_weights for _, r, _ in self.components),
        )

    @property
    def is_differentiable(self) -> bool:
        return all(r.is_differentiable for _, r, _ in self.components)

    def differentiable(self, pixels: Any, prompts: list[str]) -> Any:
        """Weighted sum of the components' differentiable scores (each component checked on its own)."""
        return sum(w * r.differentiable(pixels, prompts) for _, r, w in self.components)

    def _combine(
        self, images: list[Image.Image], prompts: list[str], metadata: list[dict]
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Call every component, sum the weighted scores, keep raw scores and info for logging."""
        total = np.zeros(len(images), dtype=np.float64)
        info: dict[str, np.ndarray] = {}
        for name, reward, weight in self.components:
            out = reward(images, prompts, metadata)
            total += weight * out.scores
            info[f"reward/{name}"] = out.scores
            info.update({f"{name}/{k}": v for k, v in out.info.items()})
        return total, info
