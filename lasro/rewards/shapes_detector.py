"""``shapes_detector``: an OpenCV detector that counts coloured shapes and compares them with the prompt.

Non-differentiable on purpose (colour thresholds, contours, polygon fits): the kind of
black-box reward LaSRO exists for. Score = matched objects / max(asked, detected), so
missing and extra objects both cost; exact-match (detected multiset == asked) is
returned as a separate metric.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from PIL import Image

from lasro.shapes import COLOURS, parse_prompt
from lasro.rewards.base import Reward
from lasro.rewards.registry import register_reward

DESCRIPTION = ("OpenCV colour/shape detector for the shapes demo domain: share of the prompt's objects "
               "found (extras penalised), plus exact-match")


def _cv2():
    try:
        import cv2
    except ImportError as e:  # pragma: no cover - opencv is a core dependency
        raise ImportError("shapes_detector needs OpenCV: pip install 'opencv-python-headless<5'") from e
    return cv2


def _palette_hues() -> dict[str, float]:
    """OpenCV hue (0-180) of each palette colour."""
    cv2 = _cv2()
    rgb = np.array([list(COLOURS.values())], dtype=np.uint8)
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[0]
    return {name: float(h) for name, (h, _, _) in zip(COLOURS, hsv)}


# (bounding-rectangle fill, enclosing-circle fill, enclosing-triangle fill) of clean rendered shapes
SHAPE_PROTOTYPES = {"circle": (0.81, 0.89, 0.61), "square": (1.0, 0.64, 0.51), "triangle": (0.50, 0.41, 0.89)}


def shape_features(contour) -> tuple[float, float, float]:
    """How much of its minimal bounding rectangle, circle and triangle a blob fills."""
    cv2 = _cv2()
    area = cv2.contourArea(contour)
    (_, _), (w, h), _ = cv2.minAreaRect(contour)
    (_, _), r = cv2.minEnclosingCircle(contour)
    tri_area, _ = cv2.minEnclosingTriangle(cv2.convexHull(contour).astype(np.float32))
    return area / max(w * h, 1e-6), area / max(np.pi * r * r, 1e-6), area / max(float(tri_area), 1e-6)


def classify_contour(contour) -> str:
    """circle / square / triangle: the nearest prototype in fill-ratio space (robust to blur and JPEG)."""
    f = np.array(shape_features(contour))
    return min(SHAPE_PROTOTYPES, key=lambda k: float(np.abs(f - np.array(SHAPE_PROTOTYPES[k])).sum()))


@dataclass(frozen=True)
class Detection:
    """One detected object: its kind, its centroid in pixels (x right, y down) and its area."""
    colour: str
    shape: str
    x: float
    y: float
    area: float


def detect_objects(image: Image.Image, min_area: float = 12.0, min_saturation: int = 90,
                   min_value: int = 70) -> list[Detection]:
    """Every (colour, shape) object in an RGB image, with where it is."""
    cv2 = _cv2()
    rgb = np.asarray(image.convert("RGB"))
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    hue, sat, val = hsv[..., 0].astype(np.float32), hsv[..., 1], hsv[..., 2]
    coloured = (sat >= min_saturation) & (val >= min_value)
    names = list(COLOURS)
    hues = np.array([h for h in _palette_hues().values()], dtype=np.float32)
    dist = np.abs(hue[..., None] - hues)
    dist = np.minimum(dist, 180 - dist)  # hue is circular
    nearest = dist.argmin(-1)
    kernel = np.ones((2, 2), np.uint8)
    found = []
    for i, colour in enumerate(names):
        mask = (coloured & (nearest == i)).astype(np.uint8)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        for c in contours:
            area = cv2.contourArea(c)
            if area >= min_area:
                m = cv2.moments(c)
                found.append(Detection(colour, classify_contour(c), m["m10"] / m["m00"], m["m01"] / m["m00"],
                                       float(area)))
    return found


def detect(image: Image.Image, min_area: float = 12.0, min_saturation: int = 90,
           min_value: int = 70) -> Counter:
    """Count (colour, shape) objects in an RGB image."""
    return Counter((d.colour, d.shape) for d in detect_objects(image, min_area, min_saturation, min_value))


def match_score(asked: Counter, found: Counter) -> tuple[float, bool]:
    """(matched / max(asked, found), exact match)."""
    matched = sum(min(n, found[k]) for k, n in asked.items())
    total = max(sum(asked.values()), sum(found.values()))
    return matched / total if total else 1.0, +asked == +found


@register_reward("shapes_detector", description=DESCRIPTION)
class ShapesDetector(Reward):
    """Detector reward for the shapes demo: per-image score in [0, 1] plus exact_match."""

    def __init__(self, min_area: float = 12.0, min_saturation: int = 90, min_value: int = 70):
        self.kwargs = dict(min_area=float(min_area), min_saturation=int(min_saturation), min_value=int(min_value))

    def __call__(self, images: list[Image.Image], prompts: list[str], metadata: list[dict]):
        scores, exact = [], []
        for image, prompt in zip(images, prompts):
            s, e = match_score(parse_prompt(prompt), detect(image, **self.kwargs))
            scores.append(s)
            exact.append(float(e))
        return np.array(scores), {"exact_match": np.array(exact)}
