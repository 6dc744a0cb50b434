"""``hpsv2`` / ``hpsv2.1``: Human Preference Score v2 (Wu et al. 2023) through transformers' ``CLIPModel``.

HPSv2 is an open_clip ViT-H-14 fine-tuned on human preferences; its checkpoints (``xswu/HPSv2``:
``HPS_v2_compressed.pt``, ``HPS_v2.1_compressed.pt``) are open_clip state dicts. The open_clip
package pulls torchvision, which breaks transformers beside CPU torch, so the checkpoint is converted
to a ``CLIPModel`` on load (``open_clip_keys``) and the score is HPSv2's own: cosine of the
normalised image and prompt embeddings (about 0.2-0.35).

Verified here: the key mapping against a tiny open_clip-architecture reference model (same module
names, ``nn.MultiheadAttention``, ``x @ proj``): identical features. Not verified here (no hub):
loading the real ViT-H-14 checkpoints and reproducing the hpsv2 package's scores; the tokenizer is
transformers' CLIPTokenizer of the laion ViT-H-14 repo, not open_clip's SimpleTokenizer (same BPE).
"""
from __future__ import annotations

import logging
from typing import Any

from lasro.rewards.hub.clip_similarity import CLIP_H14, ClipSimilarity
from lasro.rewards.hub.open_clip_keys import open_clip_to_transformers
from lasro.rewards.hub.weights import load_complete_state_dict, load_state_dict_file, resolve_file
from lasro.rewards.base import RewardError
from lasro.rewards.registry import register_reward

log = logging.getLogger(__name__)

HPS_REPO = "xswu/HPSv2"
CHECKPOINTS = {"v2.0": "HPS_v2_compressed.pt", "v2.1": "HPS_v2.1_compressed.pt"}


def vit_h14_config():
    """transformers CLIPConfig of open_clip's ViT-H-14 (the HPSv2 backbone)."""
    from transformers import CLIPConfig

    return CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                         num_attention_heads=16, max_position_embeddings=77, hidden_act="gelu",
                         layer_norm_eps=1e-5, bos_token_id=49406, eos_token_id=49407, pad_token_id=1),
        vision_config=dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16,
                           image_size=224, patch_size=14, hidden_act="gelu", layer_norm_eps=1e-5),
        projection_dim=1024,
    )


def load_open_clip_checkpoint(path: str, config: Any, reward: str):
    """A CLIPModel with ``config``, filled from an open_clip checkpoint (a bare state dict or
    ``{"state_dict": ...}``); any key left unconverted or missing is an error, not a silent gap."""
    from transformers import CLIPModel

    state = load_state_dict_file(path)
    state = state.get("state_dict", state)
    converted, unconverted = open_clip_to_transformers(state)
    if unconverted:
        raise RewardError(f"reward '{reward}': {path} has open_clip keys this converter does not map "
                          f"(not a plain open_clip CLIP?): {', '.join(unconverted[:8])}")
    return load_complete_state_dict(CLIPModel(config), converted, reward, path, "the CLIP config")


class _HPS(ClipSimilarity):
    """HPSv2 score = cosine(image, prompt) of the converted open_clip model.

    ``pretrained``: the hub repo (``xswu/HPSv2``), a folder holding the checkpoint, or the .pt file;
    ``clip_config``: the architecture (ViT-H-14 unless given; tests pass a tiny one)."""

    default_pretrained = HPS_REPO
    default_processor = CLIP_H14
    version = "v2.1"

    def __init__(self, pretrained: str | None = None, clip_config: Any = None, **kwargs):
        self.clip_config = clip_config
        super().__init__(pretrained, **kwargs)

    def load(self, pretrained: str) -> None:
        """The model from the open_clip checkpoint (unless injected); the processor as every CLIP reward."""
        from transformers import CLIPConfig

        if self.model is None:
            path = resolve_file(self.name, pretrained, CHECKPOINTS[self.version], hub_id=HPS_REPO)
            config = self.clip_config or vit_h14_config()
            config = CLIPConfig(**config) if isinstance(config, dict) else config
            self.model = load_open_clip_checkpoint(path, config, self.name)
        super().load(pretrained)


@register_reward("hpsv2", description="HPSv2 human-preference score (open_clip ViT-H-14 checkpoint converted to "
                                      "CLIPModel; cosine, ~0.2-0.35)")
class HPSv2(_HPS):
    version = "v2.0"


@register_reward("hpsv2.1",
                 description="HPSv2.1 human-preference score (v2.1 checkpoint of HPSv2, same model and scale)")
class HPSv21(_HPS):
    version = "v2.1"
