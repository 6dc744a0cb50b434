"""``caption_alignment``: caption the image with a BLIP captioner, compare the caption with the prompt.

Score = share of the prompt's content words (lowercased, stop words dropped, a plural "s" stripped)
that the caption contains, in [0, 1]; ``f1`` (also counting caption words the prompt lacks) is
returned as an info metric. Non-differentiable by construction (decoded text); the comparison is
lexical on purpose: cheap, inspectable and free of a second model.
"""
from __future__ import annotations

import re

import numpy as np

from lasro.rewards.hub.base import HubReward
from lasro.rewards.registry import register_reward

DESCRIPTION = "Text alignment via captioning: share of the prompt's content words found in a BLIP caption (0-1)"

STOP_WORDS = frozenset(
    "a an the of and or with on in at to for from by is are be this that it its there their his her "
    "some photo picture image view close up".split())


def content_words(text: str) -> set[str]:
    """Lowercased words minus stop words, with a trailing plural 's' removed ("cats" -> "cat")."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    return {w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w
            for w in words if w not in STOP_WORDS}


def word_overlap(prompt: str, caption: str) -> tuple[float, float]:
    """(recall of the prompt's content words in the caption, F1 of the two word sets)."""
    asked, said = content_words(prompt), content_words(caption)
    if not asked:
        return 1.0, 1.0 if not said else 0.0
    hit = len(asked & said)
    recall = hit / len(asked)
    precision = hit / len(said) if said else 0.0
    return recall, 2 * precision * recall / (precision + recall) if hit else 0.0


@register_reward("caption_alignment", description=DESCRIPTION)
class CaptionAlignment(HubReward):
    """``pretrained``: a ``BlipForConditionalGeneration`` captioner and its processor."""

    default_pretrained = "Salesforce/blip-image-captioning-large"

    def __init__(self, pretrained: str | None = None, max_new_tokens: int = 30, **kwargs):
        self.max_new_tokens = int(max_new_tokens)
        super().__init__(pretrained, **kwargs)

    def load(self, pretrained: str) -> None:
        from transformers import BlipForConditionalGeneration, BlipProcessor

        self.fill_from_pretrained(BlipForConditionalGeneration, BlipProcessor, pretrained)

    def captions(self, images) -> list[str]:
        ids = self.model.generate(pixel_values=self.pixel_values(images), max_new_tokens=self.max_new_tokens,
                                  do_sample=False)
        return [c.strip() for c in self.processor.tokenizer.batch_decode(ids, skip_special_tokens=True)]

    def score_batch(self, images, prompts, metadata):
        overlap = [word_overlap(p, c) for p, c in zip(prompts, self.captions(images))]
        return np.array([r for r, _ in overlap]), {"f1": np.array([f for _, f in overlap])}
