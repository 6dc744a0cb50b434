"""Tiny random-init SDXL-style and SD-style pipelines, built fully offline.

They have the same classes and code paths as SDXL-Turbo / SD-Turbo (two or one CLIP
text encoders, AutoencoderKL with 8x downsampling, text_time-conditioned UNet,
Euler-ancestral trailing scheduler), so tests and the tiny configs exercise the real
loading, sampling and LoRA I/O without the model hub.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


def _byte_chars() -> list[str]:
    """The 256 printable characters that byte-level BPE (GPT-2/CLIP) uses for the 256 bytes."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    extra = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(extra))]


def byte_level_clip_tokenizer(model_max_length: int = 77):
    """A CLIPTokenizer over single byte-level characters: no files, no merges, any text."""
    from transformers import CLIPTokenizer
    chars = _byte_chars()
    vocab = {c: i for i, c in enumerate(chars)}
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=model_max_length)


@dataclass
class TinySpec:
    """Sizes of a tiny pipeline; the defaults give ~1 M parameters and 64 px images."""

    family: str = "sdxl"  # "sdxl" (two text encoders, text_time) or "sd" (one encoder)
    block_out_channels: tuple[int, ...] = (32, 64)
    layers_per_block: int = 1
    cross_attention_dim: int = 32
    attention_head_dim: int = 8
    transformer_layers: int = 1
    text_hidden: int = 32
    text_layers: int = 2
    vae_channels: int = 16
    norm_num_groups: int = 8
    sample_size: int = 64  # image size in pixels
    seed: int = 0


def _text_config(spec: TinySpec, hidden: int, projection: int):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=514, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=spec.text_layers,
        num_attention_heads=max(1, hidden // 16), max_position_embeddings=77, projection_dim=projection,
        bos_token_id=512, eos_token_id=513, pad_token_id=513, hidden_act="gelu",
    )


def _vae(spec: TinySpec):
    from diffusers import AutoencoderKL

    # Four levels give SDXL's 8x downsampling even at this size.
    c = spec.vae_channels
    return AutoencoderKL(
        block_out_channels=[c, c, c, c], in_channels=3, out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
        latent_channels=4, norm_num_groups=min(8, c), layers_per_block=1, sample_size=spec.sample_size,
    )


def _unet(spec: TinySpec, cross_dim: int, sdxl: bool, projection_input_dim: int | None):
    from diffusers import UNet2DConditionModel

    n = len(spec.block_out_channels)
    kw = {}
    if sdxl:
        kw = dict(addition_embed_type="text_time", addition_time_embed_dim=8,
                  projection_class_embeddings_input_dim=projection_input_dim)
    return UNet2DConditionModel(
        sample_size=spec.sample_size // 8, in_channels=4, out_channels=4,
        block_out_channels=tuple(spec.block_out_channels), layers_per_block=spec.layers_per_block,
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (n - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (n - 1) + ("UpBlock2D",),
        cross_attention_dim=cross_dim, attention_head_dim=spec.attention_head_dim,
        transformer_layers_per_block=spec.transformer_layers, use_linear_projection=True,
        norm_num_groups=spec.norm_num_groups, **kw,
    )


def turbo_scheduler():
    from diffusers import EulerAncestralDiscreteScheduler

    return EulerAncestralDiscreteScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        timestep_spacing="trailing", prediction_type="epsilon", steps_offset=1,
    )


def build_tiny_pipeline(spec: TinySpec | None = None, **overrides):
    """Build a random-init StableDiffusionXLPipeline (family "sdxl") or StableDiffusionPipeline ("sd")."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    spec = spec or TinySpec()
    for k, v in overrides.items():
        setattr(spec, k, v)
    torch.manual_seed(spec.seed)
    h = spec.text_hidden
    if spec.family == "sdxl":
        te1 = CLIPTextModel(_text_config(spec, h, h))
        te2 = CLIPTextModelWithProjection(_text_config(spec, h, h))
        # SDXL: added embedding input = pooled text (projection_dim) + 6 time ids * addition_time_embed_dim
        unet = _unet(spec, cross_dim=2 * h, sdxl=True, projection_input_dim=h + 6 * 8)
        return StableDiffusionXLPipeline(
            vae=_vae(spec), text_encoder=te1, text_encoder_2=te2, tokenizer=byte_level_clip_tokenizer(),
            tokenizer_2=byte_level_clip_tokenizer(), unet=unet, scheduler=turbo_scheduler(),
            force_zeros_for_empty_prompt=True,
        )
    if spec.family == "sd":
        te = CLIPTextModel(_text_config(spec, h, h))
        unet = _unet(spec, cross_dim=h, sdxl=False, projection_input_dim=None)
        return StableDiffusionPipeline(
            vae=_vae(spec), text_encoder=te, tokenizer=byte_level_clip_tokenizer(), unet=unet,
            scheduler=turbo_scheduler(), safety_checker=None, feature_extractor=None,
            requires_safety_checker=False,
        )
    raise ValueError(f"unknown tiny pipeline family {spec.family!r}: use 'sdxl' or 'sd'")


def build_random_sdxl_pipeline(dtype: torch.dtype = torch.bfloat16, seed: int = 0):
    """SDXL-Turbo's full UNet architecture (2.6 B params) with random weights, for benchmarks.

    Text encoders are one-layer stand-ins with SDXL's widths (768 + 1280) and the VAE is
    tiny: the generator step being measured touches only the UNet and the embeddings.
    """
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    spec = TinySpec(text_layers=1, sample_size=512)
    unet = UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(320, 640, 1280),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20), cross_attention_dim=2048,
        use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=2816, upcast_attention=False,
    ).to(dtype)
    te1 = CLIPTextModel(_text_config(spec, 768, 768)).to(dtype)
    te2 = CLIPTextModelWithProjection(_text_config(spec, 1280, 1280)).to(dtype)
    return StableDiffusionXLPipeline(
        vae=_vae(spec).to(dtype), text_encoder=te1, text_encoder_2=te2, tokenizer=byte_level_clip_tokenizer(),
        tokenizer_2=byte_level_clip_tokenizer(), unet=unet, scheduler=turbo_scheduler(),
    )
