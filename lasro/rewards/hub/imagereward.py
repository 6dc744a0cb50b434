"""``imagereward``: ImageReward (Xu et al. 2023), the LaSRO paper's main metric, on transformers classes.

The model: BLIP's ViT-L/16 image encoder (transformers ``BlipVisionModel``), a BERT-base text encoder
with cross-attention to the image tokens (``BlipTextModel``, a port of BLIP's ``med.BertModel``),
and a linear MLP head on the [CLS] feature; score = (head - 0.16717) / 1.03334 (ImageReward's
normalisation), mostly within [-2, 2]. Preprocessing as ImageReward: shortest side to 224 (bicubic),
centre crop 224, CLIP mean/std; prompts as BERT-base-uncased tokens padded to 35.

The image-reward package pulls torchvision (fatal beside CPU torch here), so its checkpoint
(``THUDM/ImageReward``: ``ImageReward.pt``) is converted on load (``convert_imagereward_state_dict``).
Verified here: the vision renames against a tiny BLIP/timm-style ViT reference (identical features);
the text encoder and head keep their names, checked by strict loading. Not verified here (no hub):
loading the real ``ImageReward.pt`` and reproducing the image-reward package's scores.
"""
from __future__ import annotations

import re
from typing import Any

import torch

from lasro.rewards.hub.base import HubReward
from lasro.rewards.hub.mlp_head import MLPScoreHead
from lasro.rewards.hub.weights import load_complete_state_dict, load_pretrained, load_state_dict_file, resolve_file
from lasro.rewards.registry import register_reward

DESCRIPTION = "ImageReward: BLIP-based human-preference reward model (the LaSRO paper's main metric; ~[-2, 2])"
REPO, FILE = "THUDM/ImageReward", "ImageReward.pt"
SCORE_MEAN, SCORE_STD = 0.16717362830052426, 1.0333394966054072
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
MAX_TOKENS = 35
BERT = "google-bert/bert-base-uncased"


def imagereward_config():
    """(vision config, text config) of ImageReward: BLIP ViT-L/16 at 224 px and BERT-base with cross-attention."""
    from transformers import BlipTextConfig, BlipVisionConfig

    vision = BlipVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                              image_size=224, patch_size=16, hidden_act="gelu", layer_norm_eps=1e-6)
    text = BlipTextConfig(vocab_size=30524, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                          num_attention_heads=12, encoder_hidden_size=1024, max_position_embeddings=512,
                          hidden_act="gelu", layer_norm_eps=1e-12, pad_token_id=0)
    return vision, text


def image_processor(size: int = 224):
    """ImageReward's preprocessing (Resize(size, bicubic), CenterCrop(size), CLIP normalisation)."""
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    return CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size},
                                 resample=3, image_mean=CLIP_MEAN, image_std=CLIP_STD)


class ImageRewardModel(torch.nn.Module):
    """BLIP image encoder -> text encoder cross-attending to it -> MLP on [CLS] -> normalised score."""

    def __init__(self, vision_config: Any, text_config: Any):
        super().__init__()
        from transformers import BlipTextModel, BlipVisionModel

        self.vision_model = BlipVisionModel(vision_config)
        self.text_encoder = BlipTextModel(text_config, add_pooling_layer=False)
        self.mlp = MLPScoreHead(text_config.hidden_size)

    def forward(self, pixel_values, input_ids, attention_mask) -> torch.Tensor:
        image_embeds = self.vision_model(pixel_values=pixel_values).last_hidden_state
        image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
        text = self.text_encoder(input_ids=input_ids, attention_mask=attention_mask,
                                 encoder_hidden_states=image_embeds, encoder_attention_mask=image_mask)
        return (self.mlp(text.last_hidden_state[:, 0]).float() - SCORE_MEAN) / SCORE_STD


# BLIP ViT (timm-style) name -> BlipVisionModel name, applied in order after "blip.visual_encoder." -> "vision_model."
_VISION_RENAMES = [
    (r"^cls_token$", "embeddings.class_embedding"),
    (r"^pos_embed$", "embeddings.position_embedding"),
    (r"^patch_embed\.proj\.", "embeddings.patch_embedding."),
    (r"^blocks\.(\d+)\.norm1\.", r"encoder.layers.\1.layer_norm1."),
    (r"^blocks\.(\d+)\.norm2\.", r"encoder.layers.\1.layer_norm2."),
    (r"^blocks\.(\d+)\.attn\.qkv\.", r"encoder.layers.\1.self_attn.qkv."),
    (r"^blocks\.(\d+)\.attn\.proj\.", r"encoder.layers.\1.self_attn.projection."),
    (r"^blocks\.(\d+)\.mlp\.", r"encoder.layers.\1.mlp."),
    (r"^norm\.", "post_layernorm."),
]


def convert_imagereward_state_dict(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """ImageReward.pt keys (``blip.visual_encoder.*``, ``blip.text_encoder.*``, ``mlp.layers.*``) ->
    ``ImageRewardModel`` keys; returns (converted, keys skipped). BLIP's unused towers are skipped."""
    out: dict[str, torch.Tensor] = {}
    skipped: list[str] = []
    for key, value in state.items():
        key = key.removeprefix("module.")
        if key.startswith("blip.visual_encoder."):
            name = key.removeprefix("blip.visual_encoder.")
            for pattern, target in _VISION_RENAMES:
                if re.match(pattern, name):
                    out["vision_model." + re.sub(pattern, target, name)] = value
                    break
            else:
                skipped.append(key)
        elif key.startswith("blip.text_encoder.") and not key.endswith("position_ids"):
            out["text_encoder." + key.removeprefix("blip.text_encoder.")] = value
        elif key.startswith("mlp."):
            out[key] = value
        else:
            skipped.append(key)
    return out, skipped


def load_imagereward_checkpoint(path: str, vision_config: Any, text_config: Any, reward: str) -> ImageRewardModel:
    """An ImageRewardModel filled from ``ImageReward.pt``; every parameter must be found."""
    converted, _ = convert_imagereward_state_dict(load_state_dict_file(path))
    return load_complete_state_dict(ImageRewardModel(vision_config, text_config), converted, reward, path,
                                    "ImageReward's architecture")


@register_reward("imagereward", description=DESCRIPTION)
class ImageReward(HubReward):
    """``pretrained``: ``THUDM/ImageReward``, a folder holding ``ImageReward.pt``, or the file;
    ``tokenizer_pretrained``: BERT-base-uncased's tokenizer; ``model``/``processor``/``tokenizer``:
    injected objects; ``configs``: (vision, text) configs other than ImageReward's (tests pass tiny ones)."""

    default_pretrained = REPO

    def __init__(self, pretrained: str | None = None, tokenizer_pretrained: str = BERT,
                 tokenizer: Any = None, configs: tuple[Any, Any] | None = None, **kwargs):
        self.tokenizer_pretrained, self.tokenizer, self.configs = tokenizer_pretrained, tokenizer, configs
        super().__init__(pretrained, **kwargs)

    def load(self, pretrained: str) -> None:
        from transformers import BertTokenizer

        if self.model is None:
            vision, text = self.configs or imagereward_config()
            path = resolve_file(self.name, pretrained, FILE, hub_id=REPO)
            self.model = load_imagereward_checkpoint(path, vision, text, self.name)
        if self.processor is None:
            self.processor = image_processor(self.model.vision_model.config.image_size)
        if self.tokenizer is None:
            self.tokenizer = load_pretrained(self.name, self.tokenizer_pretrained, BertTokenizer.from_pretrained,
                                             kwarg="tokenizer_pretrained", hub_id=BERT)

    def score_batch(self, images, prompts, metadata):
        tokens = self.tokenizer(prompts, padding="max_length", truncation=True, max_length=MAX_TOKENS,
                                return_tensors="pt").to(self.device)
        scores = self.model(self.pixel_values(images), tokens["input_ids"], tokens["attention_mask"])
        return scores.float().cpu().numpy(), {}
