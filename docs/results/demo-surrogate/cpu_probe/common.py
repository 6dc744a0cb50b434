"""Shared setup of the CPU probe scripts: the shipped demo generator and a cached prompt encoder."""
import torch

from lasro.config import load_config
from lasro.generators.few_step import FewStepGenerator, PromptEmbeds

gen = FewStepGenerator.from_config(load_config("lasro/configs/demo.yaml", []).model)
D = gen.unet.config.cross_attention_dim
_cache = {}


def embeds(prompts):
    """Prompt embeddings, each distinct prompt encoded once."""
    miss = sorted({p for p in prompts if p not in _cache})
    if miss:
        with torch.no_grad():
            e = gen.encode_prompts(miss)
        for i, p in enumerate(miss):
            _cache[p] = e.index(slice(i, i + 1))
    return PromptEmbeds.cat([_cache[p] for p in prompts])
