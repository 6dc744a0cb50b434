"""Pictures of samples: bare grids, and labelled grids a person can read (each row's prompt at its left,
each image's score under it, optional column headers such as "initial | tuned")."""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

MIN_TILE = 192  # smaller images are upscaled (nearest neighbour, by a whole factor) to at least this width
GAP = 4  # pixels between tiles
PAD = 6  # pixels around text


def image_grid(images: list[Image.Image], rows: int) -> Image.Image:
    cols = math.ceil(len(images) / rows)
    w, h = images[0].size
    grid = Image.new("RGB", (cols * w, rows * h), "white")
    for i, im in enumerate(images):
        grid.paste(im, ((i % cols) * w, (i // cols) * h))
    return grid


def format_score(value: float) -> str:
    """A score as a short label: two decimals (0.62, -3.58), three significant digits from 100 on."""
    return f"{value:.2f}" if abs(value) < 100 else f"{value:.3g}"


def format_change(value: float) -> str:
    """A signed change: +0.06, and -2.5e-03 for one too small for two decimals."""
    return f"{value:+.2f}" if abs(value) >= 0.005 or value == 0 else f"{value:+.1e}"


@lru_cache(maxsize=8)
def font(size: int) -> ImageFont.ImageFont:
    """PIL's own default font at ``size`` pixels (scalable with FreeType; the bitmap font without it)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow < 10.1 or no FreeType
        return ImageFont.load_default()


@dataclass(frozen=True)
class GridLayout:
    """Geometry of a labelled grid: ``rows`` x ``cols`` tiles of ``tile`` pixels (the images after
    upscaling by ``scale``), a label column of width ``label_w`` at the left, a header strip of height
    ``header_h`` on top and a caption strip of height ``caption_h`` under each tile."""

    rows: int
    cols: int
    tile: tuple[int, int]
    scale: int
    font_size: int
    label_w: int
    header_h: int
    caption_h: int

    @property
    def size(self) -> tuple[int, int]:
        tw, th = self.tile
        return (self.label_w + self.cols * (tw + GAP) + GAP,
                self.header_h + self.rows * (th + self.caption_h + GAP) + GAP)

    def tile_box(self, i: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of image ``i`` (row-major)."""
        tw, th = self.tile
        r, c = divmod(i, self.cols)
        x = self.label_w + GAP + c * (tw + GAP)
        y = self.header_h + GAP + r * (th + self.caption_h + GAP)
        return x, y, x + tw, y + th

    def caption_box(self, i: int) -> tuple[int, int, int, int]:
        x0, _, x1, y1 = self.tile_box(i)
        return x0, y1, x1, y1 + self.caption_h

    def label_box(self, r: int) -> tuple[int, int, int, int]:
        _, y0, _, y1 = self.tile_box(r * self.cols)
        return 0, y0, self.label_w, y1 + self.caption_h

    def header_box(self, c: int) -> tuple[int, int, int, int]:
        x0, _, x1, _ = self.tile_box(c)
        return x0, 0, x1, self.header_h


def grid_layout(image_size: tuple[int, int], count: int, rows: int, row_labels: bool = False,
                captions: bool = False, headers: bool = False, min_tile: int = MIN_TILE) -> GridLayout:
    """The layout ``labelled_grid`` draws: images narrower than ``min_tile`` are upscaled by a whole factor
    (64 px: x3), larger ones kept; text scales with the tile (PIL's default font, 12-36 px)."""
    w, h = image_size
    scale = max(1, math.ceil(min_tile / w))
    tw, th = w * scale, h * scale
    size = int(min(36, max(12, round(tw / 13))))
    line = size + 2 * PAD
    label_w = max(160, int(1.1 * tw)) if row_labels else 0
    return GridLayout(rows=rows, cols=math.ceil(count / rows), tile=(tw, th), scale=scale, font_size=size,
                      label_w=label_w, header_h=line + GAP if headers else 0, caption_h=line if captions else 0)


def _wrap(draw: ImageDraw.ImageDraw, text: str, fnt, width: int, max_lines: int) -> list[str]:
    """Greedy word wrap of ``text`` to ``width`` pixels, at most ``max_lines`` lines (the last cut with …)."""
    lines: list[str] = []
    for word in text.split():
        if lines and draw.textlength(lines[-1] + " " + word, font=fnt) <= width:
            lines[-1] += " " + word
            continue
        while draw.textlength(word, font=fnt) > width and len(word) > 1:  # a word wider than the column
            cut = max(1, int(len(word) * width / draw.textlength(word, font=fnt)))
            lines.append(word[:cut])
            word = word[cut:]
        lines.append(word)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        last = lines[-1]
        while last and draw.textlength(last + "…", font=fnt) > width:
            last = last[:-1]
        lines[-1] = last + "…"
    return lines


def labelled_grid(images: list[Image.Image], rows: int, row_labels: list[str] | None = None,
                  captions: list[str] | None = None, column_headers: list[str] | None = None,
                  min_tile: int = MIN_TILE, caption_colors: list | None = None) -> Image.Image:
    """``images`` (row-major) as ``rows`` rows, with ``row_labels[r]`` (e.g. the prompt) left of row r,
    ``captions[i]`` (e.g. ``format_score(reward)``; in ``caption_colors[i]``, default black) under image i
    and ``column_headers[c]`` above column c (neighbouring equal headers merge into one spanning header,
    e.g. ``["initial", "tuned"]``)."""
    layout = grid_layout(images[0].size, len(images), rows, bool(row_labels), bool(captions),
                         bool(column_headers), min_tile)
    grid = Image.new("RGB", layout.size, "white")
    draw = ImageDraw.Draw(grid)
    fnt = font(layout.font_size)
    tw, th = layout.tile
    for i, im in enumerate(images):
        x0, y0, _, _ = layout.tile_box(i)
        im = im.convert("RGB")
        if im.size != (tw, th):
            im = im.resize((tw, th), Image.NEAREST)
        draw.rectangle((x0 - 1, y0 - 1, x0 + tw, y0 + th), outline=(205, 205, 205))  # in the gap: white images show
        grid.paste(im, (x0, y0))
    for i, text in enumerate(captions or []):
        x0, y0, x1, y1 = layout.caption_box(i)
        fill = caption_colors[i] if caption_colors and i < len(caption_colors) else "black"
        draw.text(((x0 + x1) / 2, (y0 + y1) / 2), text, fill=fill, font=fnt, anchor="mm")
    line_h = layout.font_size + 4
    for r, text in enumerate((row_labels or [])[:rows]):
        x0, y0, x1, y1 = layout.label_box(r)
        lines = _wrap(draw, str(text), fnt, x1 - x0 - 2 * PAD, max(1, (y1 - y0 - 2 * PAD) // line_h))
        top = (y0 + y1) / 2 - len(lines) * line_h / 2
        for j, ln in enumerate(lines):
            draw.text((x0 + PAD, top + j * line_h), ln, fill="black", font=fnt)
    if column_headers:
        c = 0
        while c < min(len(column_headers), layout.cols):
            end = c
            while end + 1 < min(len(column_headers), layout.cols) and column_headers[end + 1] == column_headers[c]:
                end += 1
            x0, y0, _, y1 = layout.header_box(c)
            x1 = layout.header_box(end)[2]
            draw.rectangle((x0, y0 + GAP, x1 - 1, y1 - GAP), fill=(235, 235, 235))
            draw.text(((x0 + x1) / 2, (y0 + y1) / 2), column_headers[c], fill="black", font=fnt, anchor="mm")
            c = end + 1
    return grid
