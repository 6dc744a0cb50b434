"""Pictures of samples: grids of images."""
from __future__ import annotations

import math

from PIL import Image


def image_grid(images: list[Image.Image], rows: int) -> Image.Image:
    cols = math.ceil(len(images) / rows)
    w, h = images[0].size
    grid = Image.new("RGB", (cols * w, rows * h), "white")
    for i, im in enumerate(images):
        grid.paste(im, ((i % cols) * w, (i // cols) * h))
    return grid
