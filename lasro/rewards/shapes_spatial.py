"""``shapes_spatial``: is the first object the prompt names where the prompt says, relative to the second?
T2I-CompBench's spatial category ("a red circle on the left of a blue square") on the shapes domain.

Why: users' rewards depend on layout all the time (spatial relations, counting in regions, text placement),
and a surrogate that pools its features globally cannot see where things are. This is the task that says
whether a method's reward model can.

The relation is read from the prompt: "A to the left of / on the left of / left of B", "right of", "above",
"below". A prompt with none of these words, "A and B", means A to the left of B: the demo tokenizer knows
no spatial words, so there the order of naming carries the relation (prompts: ``shapes:pairs-train``,
``shapes:pairs-test``, each pair in both orders; the demo model was trained on one order and ignores it).

Score in [0, 1]: 0 unless the detector finds both kinds; else ``0.5 + 0.5 tanh(d / margin)``, where d is the
signed distance in pixels, along the relation's axis, from the second kind's mean centroid to the first's
(positive when the relation holds) and ``margin`` is 1/8 of the image width. Objects side by side across the
axis score 0.5. Extra metric ``relation_holds`` (both found and d > 0), the T2I-CompBench-style 0/1 verdict.
It does not count objects: name ``shapes_detector`` as its judge so that dropped or extra objects show.
"""
from __future__ import annotations

import re

import numpy as np
from PIL import Image

from lasro.rewards.base import Reward
from lasro.rewards.registry import register_reward
from lasro.rewards.shapes_detector import detect_objects
from lasro.shapes import COLOURS, SHAPES, WORD_COUNTS

# relation words -> (axis, sign): d = sign * (first - second) along the axis (x right, y down)
RELATIONS = {"to the left of": ("x", -1), "on the left of": ("x", -1), "left of": ("x", -1),
             "to the right of": ("x", 1), "on the right of": ("x", 1), "right of": ("x", 1),
             "above": ("y", -1), "below": ("y", 1), "and": ("x", -1)}
_KIND = r"(?:" + "|".join(WORD_COUNTS) + r")\s+(" + "|".join(COLOURS) + r")\s+(" + "|".join(SHAPES) + r")s?"
_RELATION_RE = re.compile(r"\b" + _KIND + r"\s*,?\s+(" + "|".join(sorted(RELATIONS, key=len, reverse=True))
                          + r")\s+" + _KIND + r"\b")


def parse_relation(prompt: str) -> tuple[tuple[str, str], str, tuple[str, str]]:
    """(first kind, relation words, second kind) of a prompt; ValueError when it states no relation."""
    m = _RELATION_RE.search(prompt.lower())
    if m is None or (m.group(1), m.group(2)) == (m.group(4), m.group(5)):
        raise ValueError(f"shapes_spatial: prompt {prompt!r} relates no two different shapes-domain objects; "
                         "write 'a red circle to the left of a blue square' (or right of, above, below), or "
                         "'A and B' for A on the left of B (prompts: shapes:pairs-train / shapes:pairs-test)")
    return (m.group(1), m.group(2)), m.group(3), (m.group(4), m.group(5))


@register_reward("shapes_spatial", description="Shapes demo: does the first named object stand where the prompt "
                                               "says relative to the second (left of, above; 'A and B': A left "
                                               "of B)? Soft 0-1, plus relation_holds")
class ShapesSpatial(Reward):
    def __init__(self, margin: float = 0.125, min_area: float = 12.0):
        self.margin, self.min_area = float(margin), float(min_area)

    def __call__(self, images: list[Image.Image], prompts: list[str], metadata: list[dict]):
        scores, holds = [], []
        for image, prompt in zip(images, prompts):
            first, relation, second = parse_relation(prompt)
            axis, sign = RELATIONS[relation]
            found = detect_objects(image, min_area=self.min_area)
            at = {k: [getattr(d, axis) for d in found if (d.colour, d.shape) == k] for k in (first, second)}
            if not at[first] or not at[second]:
                scores.append(0.0)
                holds.append(0.0)
                continue
            d = sign * (np.mean(at[first]) - np.mean(at[second]))
            scores.append(0.5 + 0.5 * float(np.tanh(d / (self.margin * image.width))))
            holds.append(float(d > 0))
        return np.array(scores), {"relation_holds": np.array(holds)}
