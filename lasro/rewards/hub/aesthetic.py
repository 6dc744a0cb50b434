"""``laion_aesthetic``: the LAION improved aesthetic predictor (v2), as used by DDPO.

Score = MLP head (``mlp_head.MLPScoreHead``) on the L2-normalised CLIP ViT-L/14 image embedding;
roughly 1-10 (the AVA rating scale). The prompt is ignored.
"""
from __future__ import annotations

from typing import Any

import torch

from lasro.rewards.hub.base import HubReward
from lasro.rewards.hub.clip_similarity import projected
from lasro.rewards.hub.mlp_head import MLPScoreHead
from lasro.rewards.hub.weights import load_pretrained, load_state_dict_file, resolve_file
from lasro.rewards.registry import register_reward

DESCRIPTION = "LAION aesthetic predictor v2: MLP on the normalised CLIP ViT-L/14 image embedding (about 1-10)"
HEAD_REPO = "trl-lib/ddpo-aesthetic-predictor"
HEAD_FILE = "aesthetic-model.pth"
CLIP_L14 = "openai/clip-vit-large-patch14"


class AestheticModel(torch.nn.Module):
    """CLIP image tower plus the aesthetic head, moved and cast together."""

    def __init__(self, clip: Any, head: torch.nn.Module):
        super().__init__()
        self.clip, self.head = clip, head

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        embedding = projected(self.clip.get_image_features(pixel_values=pixel_values))
        return self.head(torch.nn.functional.normalize(embedding, dim=-1))


@register_reward("laion_aesthetic", description=DESCRIPTION)
class LaionAesthetic(HubReward):
    """``pretrained``: the head (hub repo, folder holding ``head_file``, or a .pth/.safetensors file);
    ``clip_pretrained``: the CLIP model and processor; ``model``: an injected CLIPModel; ``head``:
    an injected head module."""

    default_pretrained = HEAD_REPO

    def __init__(self, pretrained: str | None = None, clip_pretrained: str = CLIP_L14,
                 head: torch.nn.Module | None = None, head_file: str = HEAD_FILE, **kwargs):
        self.clip_pretrained, self.head, self.head_file = clip_pretrained, head, head_file
        super().__init__(pretrained, **kwargs)

    def load(self, pretrained: str) -> None:
        from transformers import CLIPModel, CLIPProcessor

        clip = self.model
        if clip is None:
            clip = load_pretrained(self.name, self.clip_pretrained, CLIPModel.from_pretrained, kwarg="clip_pretrained",
                                   hub_id=CLIP_L14)
        if self.processor is None:
            self.processor = load_pretrained(self.name, self.clip_pretrained, CLIPProcessor.from_pretrained,
                                             kwarg="clip_pretrained", hub_id=CLIP_L14)
        if self.head is None:
            self.head = MLPScoreHead(clip.config.projection_dim)
            path = resolve_file(self.name, pretrained, self.head_file, hub_id=HEAD_REPO)
            self.head.load_state_dict(load_state_dict_file(path))
        self.model = AestheticModel(clip, self.head)

    def score_batch(self, images, prompts, metadata):
        return self.model(self.pixel_values(images)).float().cpu().numpy(), {}
