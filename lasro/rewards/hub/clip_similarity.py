"""CLIP-family image-text similarity rewards: ``clip_score`` and ``pickscore`` (and the base of ``hpsv2``).

All three embed the image and the prompt with a CLIP dual encoder (transformers ``CLIPModel``) and
score the cosine of the normalised embeddings; they differ only in the checkpoint and the scale.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image

from lasro.rewards.hub.base import HubReward
from lasro.rewards.registry import register_reward


CLIP_H14 = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"  # tokenizer and image processor of PickScore and HPSv2


def projected(features: Any) -> torch.Tensor:
    """The projected embedding from ``get_*_features`` (a tensor in transformers 4, an output in 5)."""
    return features if isinstance(features, torch.Tensor) else features.pooler_output


class ClipSimilarity(HubReward):
    """Cosine of CLIP image and prompt embeddings, times ``scale()``.

    ``pretrained`` names the CLIP weights; ``processor_pretrained`` the tokenizer and image processor
    (defaults to ``pretrained``; PickScore's repo ships only weights)."""

    default_pretrained = "openai/clip-vit-large-patch14"
    default_processor: str | None = None

    def __init__(self, pretrained: str | None = None, processor_pretrained: str | None = None, **kwargs):
        self.processor_pretrained = processor_pretrained or self.default_processor
        super().__init__(pretrained, **kwargs)

    def load(self, pretrained: str) -> None:
        from transformers import CLIPModel, CLIPProcessor

        self.fill_from_pretrained(CLIPModel, CLIPProcessor, pretrained, processor_source=self.processor_pretrained,
                                  processor_kwarg="processor_pretrained" if self.processor_pretrained else "pretrained",
                                  processor_hub_id=self.default_processor)

    def scale(self) -> float:
        return 1.0

    def cosine(self, images: list[Image.Image], prompts: list[str]) -> torch.Tensor:
        """Per-pair cosine similarity of image i and prompt i."""
        return self.cosine_from_pixel_values(self.pixel_values(images), prompts)

    def cosine_from_pixel_values(self, pixel_values: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        tokens = self.processor.tokenizer(prompts, padding=True, truncation=True, max_length=77,
                                          return_tensors="pt").to(self.device)
        image_emb = projected(self.model.get_image_features(pixel_values=pixel_values)).float()
        text_emb = projected(self.model.get_text_features(input_ids=tokens["input_ids"],
                                                          attention_mask=tokens["attention_mask"])).float()
        image_emb = torch.nn.functional.normalize(image_emb, dim=-1)
        text_emb = torch.nn.functional.normalize(text_emb, dim=-1)
        return (image_emb * text_emb).sum(-1)

    def differentiable_pixel_values(self, pixels: torch.Tensor) -> torch.Tensor:
        """The image processor's resize (shortest edge, bicubic, antialiased), centre crop and normalisation
        done in torch on float RGB [B, 3, H, W] in [0, 1], so gradients reach the pixels. Matches the
        processor exactly when no resize is needed, up to interpolation differences otherwise."""
        ip = getattr(self.processor, "image_processor", self.processor)
        short, (ch, cw) = ip.size["shortest_edge"], (ip.crop_size["height"], ip.crop_size["width"])
        h, w = pixels.shape[-2:]
        size = (max(ch, int(h * short / min(h, w))), max(cw, int(w * short / min(h, w))))
        x = pixels.float()
        if size != (h, w):
            x = torch.nn.functional.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False)
        top, left = (x.shape[-2] - ch) // 2, (x.shape[-1] - cw) // 2
        x = x[..., top:top + ch, left:left + cw]
        mean = torch.tensor(ip.image_mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(ip.image_std, device=x.device).view(1, -1, 1, 1)
        return ((x - mean) / std).to(self.device, self.dtype)

    def score_batch(self, images, prompts, metadata):
        cos = self.cosine(images, prompts)
        return (self.scale() * cos).cpu().numpy(), {"cosine": cos.cpu().numpy()}


@register_reward(
    "clip_score",
    description="CLIP score: 100 x max(cosine(CLIP image, CLIP prompt), 0) with CLIP ViT-L/14 (text-image alignment)",
)
class ClipScore(ClipSimilarity):
    """CLIP score as in torchmetrics' ``CLIPScore``: 100 times the cosine, clipped at 0."""

    def scale(self) -> float:
        return 100.0

    def score_batch(self, images, prompts, metadata):
        scores, info = super().score_batch(images, prompts, metadata)
        return np.maximum(scores, 0.0), info

    def differentiable(self, pixels: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """The CLIP score with autograd from float RGB pixels in [0, 1] (for the DRaFT baseline)."""
        cos = self.cosine_from_pixel_values(self.differentiable_pixel_values(pixels), prompts)
        return self.scale() * cos.clamp(min=0)


@register_reward(
    "pickscore",
    description="PickScore: human-preference CLIP-H fine-tuned on Pick-a-Pic (logit scale x cosine, about 18-24)",
)
class PickScore(ClipSimilarity):
    """PickScore (Kirstain et al. 2023): the fine-tuned CLIP's own ``logit_scale.exp()`` times the cosine."""

    default_pretrained = "yuvalkirstain/PickScore_v1"
    default_processor = CLIP_H14

    def scale(self) -> float:
        return float(self.model.logit_scale.exp())
