"""``shapes_fidelity``: how clean a shapes-domain image is: solid objects in the palette colours the prompt
asks for, on a white background, with no smudges, faint ghost objects or colour blends.

Why: 1-2-step models make exactly these errors (a blue square that comes out teal, a yellow that bleeds into
green, faint half-drawn objects), and a photo user's ImageReward or the paper's fidelity metrics reward
their absence. A pixel statistic the surrogate can see, unlike the detector's contour logic. It says nothing
about the number or the shapes of the objects: pair it with ``shapes_detector`` (a weighted reward, or a
judge) so that a blank or single-colour canvas does not pass.

Score in [0, 1] = palette share x prompt-colour share x asked-colour coverage:
- palette share: of the drawn (non-background) pixels, those of a solid palette colour (within
  ``tolerance`` in RGB of a blend of it with white, at least 3/4 of the way to it), or anti-aliased edges
  next to such a pixel;
- prompt-colour share: of those, the ones whose colour the prompt names;
- asked-colour coverage: the share of the prompt's colours drawn with at least ``min_colour_pixels``
  good pixels (a dropped colour costs).
A drawing of fewer than ``min_pixels`` pixels scores 0. Still blind to counts and shapes: one blob of each
asked colour scores 1, which is why it is paired with the detector. Transparent images are put on white. Extra metrics: ``palette_share``,
``prompt_colour_share``, ``colour_coverage``, ``ghost_share`` (faint blends of a colour with white that touch no solid pixel of it).
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from lasro.rewards.base import Reward
from lasro.rewards.registry import register_reward
from lasro.shapes import COLOURS, parse_prompt

PALETTE = np.array(list(COLOURS.values()), dtype=np.float64)  # (4, 3)
NAMES = list(COLOURS)


def _near(mask: np.ndarray) -> np.ndarray:
    """``mask`` grown by one pixel in every direction (3 x 3)."""
    padded = np.pad(mask, 1)
    h, w = mask.shape
    return np.any([padded[i:i + h, j:j + w] for i in range(3) for j in range(3)], axis=0)


def pixel_classes(rgb: np.ndarray, background: float = 230.0, tolerance: float = 70.0):
    """Per pixel: drawn (not near-white), its palette colour, and good (a solid palette colour, or an
    anti-aliased edge: a blend of that colour with white next to a solid pixel of it). ``ghost``: drawn
    blends of a colour with white that touch no solid pixel of it (faint marks, half-drawn objects)."""
    rgb = rgb.astype(np.float64)
    drawn = rgb.min(axis=-1) < background
    white = np.full(3, 255.0)
    direction = PALETTE - white  # 4 x 3
    alpha = np.clip(((rgb[..., None, :] - white) * direction).sum(-1) / (direction ** 2).sum(-1), 0.0, 1.0)
    residual = np.linalg.norm(rgb[..., None, :] - (white + alpha[..., None] * direction), axis=-1)  # H x W x 4
    nearest = residual.argmin(-1)
    fits = residual.min(-1) <= tolerance
    solid = drawn & fits & (np.take_along_axis(alpha, nearest[..., None], -1)[..., 0] >= 0.75)
    blend = drawn & fits & ~solid
    edge = np.zeros_like(blend)
    for k in range(len(PALETTE)):
        edge |= blend & (nearest == k) & _near(solid & (nearest == k))
    return drawn, nearest, solid | edge, blend & ~edge


@register_reward("shapes_fidelity", description="Shapes demo: share of drawn pixels that are solid palette colours the "
                                                "prompt asks for (no smudges, ghosts or blends); 0-1")
class ShapesFidelity(Reward):
    def __init__(self, background: float = 230.0, tolerance: float = 70.0, min_pixels: int = 20,
                 min_colour_pixels: int = 8):
        self.background, self.tolerance, self.min_pixels = float(background), float(tolerance), int(min_pixels)
        self.min_colour_pixels = int(min_colour_pixels)

    def __call__(self, images: list[Image.Image], prompts: list[str], metadata: list[dict]):
        scores, palette, colour, ghosts, coverage = [], [], [], [], []
        for image, prompt in zip(images, prompts):
            rgb = np.asarray(_on_white(image))
            drawn, nearest, true, ghost = pixel_classes(rgb, self.background, self.tolerance)
            n = int(drawn.sum())
            asked = {NAMES.index(c) for c, _ in parse_prompt(prompt)}
            if n < self.min_pixels:
                p = c = g = v = 0.0
            else:
                good = drawn & true
                p = float(good.sum()) / n
                in_prompt = good & np.isin(nearest, sorted(asked))
                c = float(in_prompt.sum()) / max(int(good.sum()), 1)
                g = float(ghost.sum()) / n
                v = sum(int((good & (nearest == k)).sum()) >= self.min_colour_pixels for k in asked) / len(asked)
            scores.append(p * c * v)
            palette.append(p)
            colour.append(c)
            ghosts.append(g)
            coverage.append(v)
        return np.array(scores), {"palette_share": np.array(palette), "prompt_colour_share": np.array(colour),
                                  "colour_coverage": np.array(coverage), "ghost_share": np.array(ghosts)}


def _on_white(image: Image.Image) -> Image.Image:
    """RGB, with any transparency composited on the white background."""
    if image.mode in ("RGBA", "LA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")
