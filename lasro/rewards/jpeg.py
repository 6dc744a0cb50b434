"""JPEG-size rewards: cheap, real and non-differentiable (the classic DDPO objectives)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from lasro.rewards.base import Reward
from lasro.rewards.registry import register_reward


def jpeg_size_kb(image: Image.Image, quality: int = 95) -> float:
    """Size in kB (1000 bytes) of the image encoded as JPEG at the given quality."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.tell() / 1000.0


class _JpegSize(Reward):
    """Shared implementation: sign * JPEG size in kB."""

    sign: float = 1.0

    def __init__(self, quality: int = 95):
        if not 1 <= int(quality) <= 100:
            raise ValueError(f"{self.name}: quality must be in [1, 100], got {quality}")
        self.quality = int(quality)

    def __call__(
        self, images: list[Image.Image], prompts: list[str], metadata: list[dict]
    ) -> np.ndarray:
        return np.array([self.sign * jpeg_size_kb(im, self.quality) for im in images])


@register_reward(
    "jpeg_compressibility",
    description="Minus JPEG size in kB (quality 95): rewards simple, compressible images.",
)
class JpegCompressibility(_JpegSize):
    """Higher reward for smaller JPEG files."""

    sign = -1.0


@register_reward(
    "jpeg_incompressibility",
    description="JPEG size in kB (quality 95): rewards detailed, hard-to-compress images.",
)
class JpegIncompressibility(_JpegSize):
    """Higher reward for larger JPEG files."""

    sign = 1.0
