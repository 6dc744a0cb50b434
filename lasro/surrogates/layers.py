"""Layers the surrogates share."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def groups(channels: int) -> int:
    return math.gcd(channels, 8)


class ScoreHead(nn.Module):
    """Strided conv + GroupNorm + SiLU blocks, global average pool, linear to one score.

    Convs stride 2 only while the map is larger than 4x4: normalising a 1x1 map would
    erase what the backbone saw (tiny models reach that size quickly).
    """

    def __init__(self, in_channels: int, channels: int, layers: int = 2):
        super().__init__()
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        c = in_channels
        for _ in range(layers):
            self.convs.append(nn.Conv2d(c, channels, 3, padding=1))
            self.norms.append(nn.GroupNorm(groups(channels), channels))
            c = channels
        # No bias: the Bradley-Terry loss ignores a constant shift, so a bias would get only
        # rounding-noise gradients that Adam amplifies into a random walk.
        self.out = nn.Linear(c, 1, bias=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for conv, norm in zip(self.convs, self.norms):
            stride = 2 if min(h.shape[-2:]) > 4 else 1
            h = F.silu(norm(F.conv2d(h, conv.weight, conv.bias, stride=stride, padding=1)))
        return self.out(h.mean(dim=(2, 3))).squeeze(-1)
