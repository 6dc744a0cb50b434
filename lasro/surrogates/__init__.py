"""Surrogate rewards: differentiable critics trained on the true reward's same-prompt comparisons.

``surrogate.space`` picks one: ``latent`` (the paper's: the generator's UNet encoder + a head) or
``pixel`` (the ablation: a small CNN on VAE-decoded images); ``surrogate.ensemble`` > 1 builds that many,
each initialised afresh. Everything here is built from the ``surrogate`` config section alone.
"""
from __future__ import annotations

import contextlib

import torch

from lasro.surrogates.ensemble import (
    SurrogateEnsemble,
    bradley_terry_loss,
    mean_score,
    member_spread,
    pessimistic,
)
from lasro.surrogates.latent import LatentSurrogate
from lasro.surrogates.pixel import PixelSurrogate

__all__ = ["LatentSurrogate", "PixelSurrogate", "SurrogateEnsemble", "bradley_terry_loss", "build_surrogate",
           "frozen", "mean_score", "member_spread", "pessimistic", "surrogate_param_groups"]


def build_surrogate(s, gen) -> LatentSurrogate | PixelSurrogate | SurrogateEnsemble:
    """The surrogate of config section ``s`` (``cfg.surrogate``) for generator ``gen``; build it before the
    generator's LoRA exists (the latent surrogate copies the bare UNet encoder)."""
    if s.ensemble > 1:
        return SurrogateEnsemble([_build_one(s, gen) for _ in range(s.ensemble)])
    return _build_one(s, gen)


def _build_one(s, gen) -> LatentSurrogate | PixelSurrogate:
    if s.space == "pixel":
        return PixelSurrogate(gen.decode_pixels, gen.unet.config.cross_attention_dim, channels=s.pixel_channels,
                              layers=s.pixel_layers, step_embedding=s.step_embedding, coordinates=s.coordinates)
    model = LatentSurrogate(gen.unet, head_channels=s.head_channels or None, head_layers=s.head_layers,
                            timestep=s.timestep, step_embedding=s.step_embedding, coordinates=s.coordinates,
                            encoder_blocks=s.encoder_blocks, gradient_checkpointing=s.gradient_checkpointing)
    if s.backbone == "lora":
        model.add_backbone_lora(s.lora_rank, s.lora_alpha)
    elif s.backbone == "frozen":
        for p in model.backbone_parameters():
            p.requires_grad_(False)
    return model


def surrogate_param_groups(s, model) -> list[dict]:
    """Optimiser groups: new weights (head, embeddings) at ``s.lr_head``, backbone adapters at ``s.lr_backbone``."""
    backbone = {id(p) for p in model.backbone_parameters()}
    new = [p for p in model.parameters() if p.requires_grad and id(p) not in backbone]
    lora = [p for n, p in model.named_parameters() if p.requires_grad and id(p) in backbone]
    groups = [{"params": new, "lr": s.lr_head}]
    if lora:
        groups.append({"params": lora, "lr": s.lr_backbone})
    return groups


@contextlib.contextmanager
def frozen(module: torch.nn.Module):
    """Let gradients flow through ``module`` to its input without touching its weights."""
    trainable = [p for p in module.parameters() if p.requires_grad]
    for p in trainable:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in trainable:
            p.requires_grad_(True)
