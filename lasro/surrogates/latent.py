"""The latent surrogate reward R_psi(z, c): the generator's own UNet encoder plus a small CNN head.

Paper: backbone = pretrained UNet encoder (conv_in, down blocks, mid block; text via
cross-attention and SDXL's added conditions), head to a scalar, Bradley-Terry loss on
same-prompt pairs. Ours (docs/method.md): weights copied from the generator's
UNet, LoRA on the backbone, a fixed timestep (0) and a learned step-count embedding.
"""
from __future__ import annotations

import contextlib
import copy

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from lasro.generators.few_step import PromptEmbeds
from lasro.surrogates.layers import ScoreHead

SURROGATE_LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2"]


class LatentSurrogate(nn.Module):
    """Scores clean latents; differentiable in the latent, so the generator can ascend it."""

    def __init__(self, unet, head_channels: int | None = None, head_layers: int = 2, timestep: int = 0,
                 step_embedding: bool = True, coordinates: bool = False, encoder_blocks: int | None = None,
                 gradient_checkpointing: bool = False):
        """``encoder_blocks``: keep only the first N down blocks (and no mid block when N is fewer than all),
        a cheaper encoder (the paper's ablation space); ``gradient_checkpointing``: recompute each block's
        activations in the backward pass instead of keeping them (memory for time)."""
        super().__init__()
        cfg = unet.config
        if cfg.addition_embed_type not in (None, "text_time"):
            raise NotImplementedError(f"surrogate: UNet addition_embed_type {cfg.addition_embed_type!r} is not supported")
        if getattr(unet, "peft_config", None):
            raise ValueError("build the surrogate from the UNet before adding the generator's LoRA")
        # Deep copies: the surrogate's backbone trains apart from the generator.
        self.conv_in = copy.deepcopy(unet.conv_in)
        self.time_proj = copy.deepcopy(unet.time_proj)
        self.time_embedding = copy.deepcopy(unet.time_embedding)
        self.text_time = cfg.addition_embed_type == "text_time"
        if self.text_time:
            self.add_time_proj = copy.deepcopy(unet.add_time_proj)
            self.add_embedding = copy.deepcopy(unet.add_embedding)
        blocks = len(unet.down_blocks)
        kept = blocks if encoder_blocks is None else encoder_blocks
        if not 1 <= kept <= blocks:
            raise ValueError(f"surrogate.encoder_blocks must be 1 to {blocks} (this UNet's down blocks); got {kept}")
        self.down_blocks = nn.ModuleList(copy.deepcopy(unet.down_blocks[i]) for i in range(kept))
        self.mid_block = copy.deepcopy(unet.mid_block) if unet.mid_block is not None and kept == blocks else None
        self.gradient_checkpointing = gradient_checkpointing
        emb_dim = self.time_embedding.linear_2.out_features
        self.step_embedding = nn.Embedding(3, emb_dim) if step_embedding else None
        if self.step_embedding is not None:
            nn.init.zeros_(self.step_embedding.weight)  # starts as the pretrained encoder exactly
        feat = cfg.block_out_channels[kept - 1]
        self.head = ScoreHead(feat, head_channels or min(feat, 256), head_layers, coordinates=coordinates)
        self.register_buffer("timestep", torch.tensor(int(timestep)), persistent=False)
        # The copies keep the generator's frozen flags; the surrogate starts fully trainable and
        # `add_backbone_lora` or the `frozen` backbone option freeze what they should.
        self.requires_grad_(True)
        self.to(unet.dtype)
        # The parts trained from scratch stay fp32 even when the backbone is bf16/fp16.
        self.head.float()
        if self.step_embedding is not None:
            self.step_embedding.float()

    def backbone_parameters(self):
        skip = {id(p) for p in self.head.parameters()}
        if self.step_embedding is not None:
            skip |= {id(p) for p in self.step_embedding.parameters()}
        return [p for p in self.parameters() if id(p) not in skip]

    def add_backbone_lora(self, rank: int, alpha: float, targets: list[str] | None = None) -> None:
        """Freeze the backbone and train low-rank adapters on it (our default, docs/method.md)."""
        from peft import LoraConfig, inject_adapter_in_model

        for p in self.backbone_parameters():
            p.requires_grad_(False)
        cfg = LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian",
                         target_modules=list(targets or SURROGATE_LORA_TARGETS))
        for name in ("down_blocks", "mid_block"):
            module = getattr(self, name)
            if module is not None:
                setattr(self, name, inject_adapter_in_model(cfg, module))
        for n, p in self.named_parameters():
            if "lora_" in n:
                p.data = p.data.float()
                p.requires_grad_(True)

    def forward(self, latents: torch.Tensor, embeds: PromptEmbeds, steps: torch.Tensor) -> torch.Tensor:
        dtype = self.conv_in.weight.dtype
        b = latents.shape[0]
        t = self.timestep.expand(b).to(latents.device)
        emb = self.time_embedding(self.time_proj(t).to(dtype))
        if self.text_time:
            time_embeds = self.add_time_proj(embeds.time_ids.flatten()).reshape(b, -1)
            emb = emb + self.add_embedding(torch.cat([embeds.pooled, time_embeds], dim=-1).to(dtype))
        if self.step_embedding is not None:
            emb = emb + self.step_embedding(steps.to(latents.device).long()).to(dtype)
        ctx = embeds.hidden.to(dtype)
        h = self.conv_in(latents.to(dtype))
        for block in self.down_blocks:
            h = self._run(_down, block, h, emb, ctx)
        if self.mid_block is not None:
            h = self._run(_mid, self.mid_block, h, emb, ctx)
        return self.head(h.float())

    def _run(self, fn, block, h, emb, ctx):
        if self.gradient_checkpointing and torch.is_grad_enabled():
            # the recomputation in the backward pass must see the weights as the forward pass did: the
            # generator's step runs the surrogate ``frozen`` and unfreezes it before its backward
            flags = [p.requires_grad for p in block.parameters()]

            def replay(h, emb, ctx):
                with _requires_grad_as(block, flags):
                    return fn(block, h, emb, ctx)
            return checkpoint(replay, h, emb, ctx, use_reentrant=False)
        return fn(block, h, emb, ctx)


@contextlib.contextmanager
def _requires_grad_as(module: nn.Module, flags: list[bool]):
    params = list(module.parameters())
    now = [p.requires_grad for p in params]
    for p, f in zip(params, flags):
        p.requires_grad_(f)
    try:
        yield
    finally:
        for p, f in zip(params, now):
            p.requires_grad_(f)


def _down(block, h, emb, ctx):
    if getattr(block, "has_cross_attention", False):
        return block(hidden_states=h, temb=emb, encoder_hidden_states=ctx)[0]
    return block(hidden_states=h, temb=emb)[0]


def _mid(block, h, emb, ctx):
    if getattr(block, "has_cross_attention", False):
        return block(h, emb, encoder_hidden_states=ctx)
    return block(h, emb)
