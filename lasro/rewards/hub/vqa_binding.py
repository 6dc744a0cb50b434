"""``vqa_attribute_binding``: T2I-CompBench's BLIP-VQA attribute-binding score through transformers.

The prompt is split into attribute-noun phrases ("a red book and a yellow vase" -> "a red book",
"a yellow vase"); each becomes the question "PHRASE?" to a BLIP VQA model, and the score is the
product of P("yes") over the phrases, in [0, 1]. Differences from CompBench, on purpose: the phrases
come from a rule-based splitter instead of spaCy noun chunks (no spaCy model to download), and
P("yes") is the first answer token's probability renormalised over {yes, no}, where CompBench ranks
LAVIS's answer list. Per-image ``metadata["phrases"]`` overrides the splitter.
"""
from __future__ import annotations

import re

import numpy as np
import torch
from PIL import Image

from lasro.rewards.hub.base import HubReward
from lasro.rewards.registry import register_reward

DESCRIPTION = ("T2I-CompBench attribute binding: product over the prompt's attribute-noun phrases of "
               "BLIP-VQA P(yes) to 'PHRASE?' (0-1)")

# Words that join two objects in compositional prompts; the pieces between them are the phrases.
_JOINERS = ["and", "with", "next to", "beside", "near", "on top of", "on", "in front of", "behind", "under",
            "below", "above", "over", "in", "inside", "holding", "wearing", "to the left of", "to the right of",
            "on the left of", "on the right of", "on the side of"]
_SPLIT = re.compile(r"\s*(?:[,;]|\b(?:" + "|".join(sorted((re.escape(j) for j in _JOINERS), key=len, reverse=True))
                    + r")\b)\s*", re.IGNORECASE)
# What CompBench drops from spaCy's noun chunks, plus lone articles left by the splitter.
_NOT_PHRASES = {"", "a", "an", "the", "top", "the side", "the left", "the right", "left", "right"}


def attribute_noun_phrases(prompt: str) -> list[str]:
    """Split a compositional prompt into its attribute-noun phrases, in order."""
    text = prompt.strip().rstrip(".!?")
    phrases = [p.strip() for p in _SPLIT.split(text)]
    return [p for p in phrases if p.lower() not in _NOT_PHRASES]


@register_reward("vqa_attribute_binding", description=DESCRIPTION)
class VQAAttributeBinding(HubReward):
    """``pretrained``: a BLIP VQA checkpoint (``BlipForQuestionAnswering``) and its processor."""

    default_pretrained = "Salesforce/blip-vqa-capfilt-large"

    def __init__(self, pretrained: str | None = None, question_template: str = "{}?", **kwargs):
        self.question_template = question_template
        super().__init__(pretrained, **kwargs)

    def load(self, pretrained: str) -> None:
        from transformers import BlipForQuestionAnswering, BlipProcessor

        self.fill_from_pretrained(BlipForQuestionAnswering, BlipProcessor, pretrained)

    def yes_probabilities(self, images: list[Image.Image], questions: list[str]) -> np.ndarray:
        """P(yes | image i, question i), renormalised over the answers yes and no."""
        model, tokenizer = self.model, self.processor.tokenizer
        unique: dict[int, int] = {}
        for im in images:
            unique.setdefault(id(im), len(unique))
        firsts = {id(im): im for im in images}
        pixels = self.pixel_values([firsts[k] for k in unique])
        image_embeds = model.vision_model(pixel_values=pixels).last_hidden_state
        image_embeds = image_embeds[torch.tensor([unique[id(im)] for im in images], device=self.device)]
        q = tokenizer(questions, padding=True, return_tensors="pt").to(self.device)
        image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=self.device)
        question = model.text_encoder(input_ids=q["input_ids"], attention_mask=q["attention_mask"],
                                      encoder_hidden_states=image_embeds,
                                      encoder_attention_mask=image_mask).last_hidden_state
        start = torch.full((len(questions), 1), model.decoder_start_token_id, device=self.device)
        logits = model.text_decoder(input_ids=start, encoder_hidden_states=question,
                                    encoder_attention_mask=q["attention_mask"]).logits[:, -1].float()
        answer_ids = tokenizer.convert_tokens_to_ids(["yes", "no"])
        yes_no = logits.log_softmax(-1)[:, answer_ids]
        return yes_no.softmax(-1)[:, 0].cpu().numpy()

    def phrases_for(self, prompt: str, metadata: dict) -> list[str]:
        return list(metadata.get("phrases") or attribute_noun_phrases(prompt) or [prompt])

    def score_batch(self, images, prompts, metadata):
        phrase_lists = [self.phrases_for(p, m) for p, m in zip(prompts, metadata)]
        pairs = [(im, self.question_template.format(ph)) for im, phs in zip(images, phrase_lists) for ph in phs]
        p_yes = self.yes_probabilities([im for im, _ in pairs], [q for _, q in pairs])
        bounds = np.cumsum([0] + [len(phs) for phs in phrase_lists])
        per_image = [p_yes[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        scores = np.array([float(np.prod(p)) for p in per_image])
        return scores, {"num_phrases": np.array([len(p) for p in per_image], dtype=np.float64),
                        "min_p_yes": np.array([float(p.min()) for p in per_image])}
