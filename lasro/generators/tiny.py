"""Tiny random-init SDXL-style and SD-style pipelines, built fully offline, and the builders behind them.

They have the same classes and code paths as SDXL-Turbo / SD-Turbo (two or one CLIP
text encoders, AutoencoderKL with 8x downsampling, text_time-conditioned UNet,
Euler-ancestral trailing scheduler), so tests and the tiny configs exercise the real
loading, sampling and LoRA I/O without the model hub.

The part builders (``clip_text_config``, ``build_text_encoders``, ``build_vae``, ``build_unet``,
``assemble_sdxl_pipeline``) are parameterised by sizes and tokenizer, so every random-init
SDXL-architecture model in lasro (the tiny pipelines, ``random:sdxl-turbo`` and the shapes demo's
build recipe) is put together by the same code. Each part draws its random weights when it is built,
so callers build them in the order that fixes their initial weights.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

SDXL_TIME_IDS = 6  # SDXL's added time ids: original size, crop top-left, target size (two numbers each)


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


# ------------------------------------------------------------------------------ part builders
def clip_text_config(tokenizer, hidden: int, layers: int):
    """A CLIPTextConfig ``hidden`` wide and ``layers`` deep (heads of 16 channels, MLP 2x, projection =
    hidden) whose vocabulary, special-token ids and positions are those of ``tokenizer``."""
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 16), max_position_embeddings=tokenizer.model_max_length,
        projection_dim=hidden, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, hidden_act="gelu",
    )


def build_text_encoders(tokenizer, hidden: int, layers: int, hidden_2: int | None = None):
    """SDXL's two random-init text encoders: a CLIPTextModel ``hidden`` wide and a
    CLIPTextModelWithProjection ``hidden_2`` wide (default: ``hidden``), both over ``tokenizer``."""
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    te1 = CLIPTextModel(clip_text_config(tokenizer, hidden, layers))
    te2 = CLIPTextModelWithProjection(clip_text_config(tokenizer, hidden if hidden_2 is None else hidden_2, layers))
    return te1, te2


def build_vae(block_out_channels: Sequence[int], sample_size: int):
    """A random-init AutoencoderKL (RGB, 4 latent channels); it downsamples 2x per level but the last."""
    from diffusers import AutoencoderKL

    c = list(block_out_channels)
    return AutoencoderKL(
        block_out_channels=c, in_channels=3, out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * len(c), up_block_types=["UpDecoderBlock2D"] * len(c),
        latent_channels=4, norm_num_groups=min(8, c[0]), layers_per_block=1, sample_size=sample_size,
    )


def build_unet(block_out_channels: Sequence[int], sample_size: int, text_widths: Sequence[int],
               attention_head_dim: int | Sequence[int], *, layers_per_block: int = 1,
               transformer_layers: int | Sequence[int] = 1, norm_num_groups: int = 32, time_embed_dim: int = 8):
    """A random-init UNet2DConditionModel on 4-channel latents of ``sample_size``, conditioned on text
    encoders of ``text_widths`` (their hidden sizes, as built by ``clip_text_config``): it cross-attends to
    their hidden states side by side and, with two encoders (SDXL), takes text_time added embeddings (the
    second encoder's pooled text, as wide as its hidden states, + SDXL's time ids, each ``time_embed_dim``
    wide). The first level has no attention, the others cross-attend."""
    from diffusers import UNet2DConditionModel

    n = len(block_out_channels)
    kw = {}
    if len(text_widths) > 1:
        kw = dict(addition_embed_type="text_time", addition_time_embed_dim=time_embed_dim,
                  projection_class_embeddings_input_dim=text_widths[-1] + SDXL_TIME_IDS * time_embed_dim)
    return UNet2DConditionModel(
        sample_size=sample_size, in_channels=4, out_channels=4,
        block_out_channels=tuple(block_out_channels), layers_per_block=layers_per_block,
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (n - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (n - 1) + ("UpBlock2D",),
        cross_attention_dim=sum(text_widths), attention_head_dim=attention_head_dim,
        transformer_layers_per_block=transformer_layers, use_linear_projection=True,
        norm_num_groups=norm_num_groups, **kw,
    )


def turbo_scheduler():
    from diffusers import EulerAncestralDiscreteScheduler

    return EulerAncestralDiscreteScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        timestep_spacing="trailing", prediction_type="epsilon", steps_offset=1,
    )


def assemble_sdxl_pipeline(vae, text_encoder, text_encoder_2, tokenizer, unet, tokenizer_2=None):
    """A StableDiffusionXLPipeline of these parts with SDXL-Turbo's scheduler (``tokenizer_2``
    defaults to ``tokenizer``)."""
    from diffusers import StableDiffusionXLPipeline

    return StableDiffusionXLPipeline(
        vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer,
        tokenizer_2=tokenizer if tokenizer_2 is None else tokenizer_2, unet=unet, scheduler=turbo_scheduler(),
        force_zeros_for_empty_prompt=True,
    )


# ---------------------------------------------------------------------------------- pipelines
def build_tiny_pipeline(spec: TinySpec | None = None, **overrides):
    """Build a random-init StableDiffusionXLPipeline (family "sdxl") or StableDiffusionPipeline ("sd")."""
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTextModel

    spec = spec or TinySpec()
    for k, v in overrides.items():
        setattr(spec, k, v)
    if spec.family not in ("sdxl", "sd"):
        raise ValueError(f"unknown tiny pipeline family {spec.family!r}: use 'sdxl' or 'sd'")
    sdxl = spec.family == "sdxl"
    torch.manual_seed(spec.seed)
    tokenizer = byte_level_clip_tokenizer()
    h = spec.text_hidden
    if sdxl:
        text_encoders = build_text_encoders(tokenizer, h, spec.text_layers)
    else:
        text_encoders = (CLIPTextModel(clip_text_config(tokenizer, h, spec.text_layers)),)
    unet = build_unet(spec.block_out_channels, spec.sample_size // 8, [h] * len(text_encoders),
                      spec.attention_head_dim, layers_per_block=spec.layers_per_block,
                      transformer_layers=spec.transformer_layers, norm_num_groups=spec.norm_num_groups)
    vae = build_vae([spec.vae_channels] * 4, spec.sample_size)  # four levels: SDXL's 8x downsampling at any size
    if sdxl:
        return assemble_sdxl_pipeline(vae, *text_encoders, tokenizer, unet, tokenizer_2=byte_level_clip_tokenizer())
    return StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoders[0], tokenizer=tokenizer, unet=unet, scheduler=turbo_scheduler(),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


def build_random_sdxl_pipeline(dtype: torch.dtype = torch.bfloat16, seed: int = 0):
    """SDXL-Turbo's full UNet architecture (2.6 B params) with random weights, for benchmarks.

    Text encoders are one-layer stand-ins with SDXL's widths (768 + 1280) and the VAE is
    tiny: the generator step being measured touches only the UNet and the embeddings.
    """
    torch.manual_seed(seed)
    widths = (768, 1280)
    unet = build_unet((320, 640, 1280), 64, widths, (5, 10, 20), layers_per_block=2, transformer_layers=(1, 2, 10),
                      time_embed_dim=256).to(dtype)
    tokenizer = byte_level_clip_tokenizer()
    te1, te2 = (m.to(dtype) for m in build_text_encoders(tokenizer, widths[0], 1, hidden_2=widths[1]))
    return assemble_sdxl_pipeline(build_vae([16] * 4, 512).to(dtype), te1, te2, tokenizer, unet,
                                  tokenizer_2=byte_level_clip_tokenizer())
