"""S[R]: the surrogate score normalised by running mean and max, clipped at 1 (docs/method.md).

``S = min((R - mu) / (M - mu + eps), 1)`` with EMAs ``mu`` (batch mean) and ``M`` (batch
max). The clip stops the gradient where scores exceed what the surrogate has seen.
"""
from __future__ import annotations

import torch


class EMAScoreNormalizer:
    def __init__(self, decay: float = 0.99, eps: float = 1e-6):
        self.decay, self.eps = decay, eps
        self.mean: float | None = None
        self.max: float | None = None

    def update(self, scores: torch.Tensor) -> None:
        m, mx = float(scores.detach().mean()), float(scores.detach().max())
        if self.mean is None:
            self.mean, self.max = m, mx
        else:
            self.mean = self.decay * self.mean + (1 - self.decay) * m
            self.max = self.decay * self.max + (1 - self.decay) * mx

    def __call__(self, scores: torch.Tensor, update: bool = True) -> torch.Tensor:
        if update or self.mean is None:
            self.update(scores)
        return torch.clamp((scores - self.mean) / (self.max - self.mean + self.eps), max=1.0)

    def state_dict(self) -> dict:
        return {"mean": self.mean, "max": self.max}

    def load_state_dict(self, state: dict) -> None:
        self.mean, self.max = state["mean"], state["max"]
