"""The linear score head shared by the LAION aesthetic predictor and ImageReward.

Both checkpoints store it as ``layers.{0,2,4,6,7}`` of an ``nn.Sequential`` of linear layers
(input -> 1024 -> 128 -> 64 -> 16 -> 1) with dropouts between and no activations, so one module with
the same parameter names loads either checkpoint as it is.
"""
from __future__ import annotations

import torch
from torch import nn


class MLPScoreHead(nn.Module):
    """input_size -> 1024 -> 128 -> 64 -> 16 -> 1, linear, as in improved-aesthetic-predictor."""

    def __init__(self, input_size: int = 768):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(input_size, 1024), nn.Dropout(0.2),
            nn.Linear(1024, 128), nn.Dropout(0.2),
            nn.Linear(128, 64), nn.Dropout(0.1),
            nn.Linear(64, 16),
            nn.Linear(16, 1),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features).squeeze(-1)
