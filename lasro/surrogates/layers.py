"""Layers the surrogates share."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def groups(channels: int) -> int:
    return math.gcd(channels, 8)


def with_coordinates(h: torch.Tensor) -> torch.Tensor:
    """``h`` with two more channels, x and y in [-1, 1] ("CoordConv"): a head that ends in a global
    average pool can then still tell where in the image a feature is."""
    b, _, height, width = h.shape
    grid = lambda n: torch.linspace(-1, 1, n, device=h.device, dtype=h.dtype)  # noqa: E731
    ys = grid(height).view(1, 1, height, 1).expand(b, 1, height, width)
    xs = grid(width).view(1, 1, 1, width).expand(b, 1, height, width)
    return torch.cat([h, xs, ys], dim=1)


class ScoreHead(nn.Module):
    """Strided conv + GroupNorm + SiLU blocks, global average pool, linear to one score.

    Convs stride 2 only while the map is larger than 4x4: normalising a 1x1 map would
    erase what the backbone saw (tiny models reach that size quickly).
    """

    def __init__(self, in_channels: int, channels: int, layers: int = 2, coordinates: bool = False):
        super().__init__()
        self.coordinates = coordinates
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        c = in_channels + (2 if coordinates else 0)
        for _ in range(layers):
            self.convs.append(nn.Conv2d(c, channels, 3, padding=1))
            self.norms.append(nn.GroupNorm(groups(channels), channels))
            c = channels
        # No bias: the Bradley-Terry loss ignores a constant shift, so a bias would get only
        # rounding-noise gradients that Adam amplifies into a random walk.
        self.out = nn.Linear(c, 1, bias=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.coordinates:
            h = with_coordinates(h)
        for conv, norm in zip(self.convs, self.norms):
            stride = 2 if min(h.shape[-2:]) > 4 else 1
            h = F.silu(norm(F.conv2d(h, conv.weight, conv.bias, stride=stride, padding=1)))
        return self.out(h.mean(dim=(2, 3))).squeeze(-1)
