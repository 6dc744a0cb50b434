"""One adapter over diffusers' few-step text-to-image pipelines (SDXL family and SD-Turbo).

The pipelines' ``__call__`` runs under ``no_grad``; training needs a differentiable
sampler, so this module owns the 1-2 step loop: ``x1 = f(z_T, t0, c)``,
``z_t1 = a(t1) x1 + s(t1) eps``, ``x2 = f(z_t1, t1, c)`` (docs/method.md).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from lasro.generators.loading import DTYPES, load_pipeline

DEFAULT_LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


@dataclass
class PromptEmbeds:
    """Text conditioning for one batch: hidden states, and SDXL's pooled text + time ids."""

    hidden: torch.Tensor
    pooled: torch.Tensor | None = None
    time_ids: torch.Tensor | None = None

    def index(self, idx) -> "PromptEmbeds":
        pick = lambda t: None if t is None else t[idx]  # noqa: E731
        return PromptEmbeds(self.hidden[idx], pick(self.pooled), pick(self.time_ids))

    def unet_kwargs(self) -> dict:
        kw = {"encoder_hidden_states": self.hidden}
        if self.pooled is not None:
            kw["added_cond_kwargs"] = {"text_embeds": self.pooled, "time_ids": self.time_ids}
        return kw

    @staticmethod
    def cat(items: list["PromptEmbeds"]) -> "PromptEmbeds":
        c = lambda ts: None if ts[0] is None else torch.cat(ts)  # noqa: E731
        return PromptEmbeds(c([e.hidden for e in items]), c([e.pooled for e in items]), c([e.time_ids for e in items]))


class PromptEmbedCache:
    """Prompt embeddings computed once per prompt (training draws the same prompts again and again).

    Each prompt is encoded alone: a batched text encoder's outputs differ in the last bits with the batch
    it was in, and a resumed run, whose cache starts empty, must see the embeddings the first run saw."""

    def __init__(self, gen: "FewStepGenerator", max_size: int = 4096):
        self.gen, self.max_size = gen, max_size
        self._cache: dict[str, PromptEmbeds] = {}

    def __call__(self, prompts: list[str]) -> PromptEmbeds:
        missing = sorted({p for p in prompts if p not in self._cache})
        if missing:
            if len(self._cache) > self.max_size:
                self._cache.clear()
            for p in missing:
                self._cache[p] = self.gen.encode_prompts([p])
        return PromptEmbeds.cat([self._cache[p] for p in prompts])


def guidance_embedding(w: torch.Tensor, dim: int, dtype: torch.dtype) -> torch.Tensor:
    """LCM's guidance-scale embedding (sinusoidal in 1000*w), for UNets with time_cond_proj_dim."""
    w = w * 1000.0
    half = dim // 2
    freq = torch.exp(torch.arange(half, dtype=torch.float32) * -(np.log(10000.0) / (half - 1)))
    emb = w.float()[:, None] * freq[None, :].to(w.device)
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=1)
    if dim % 2 == 1:
        emb = torch.nn.functional.pad(emb, (0, 1))
    return emb.to(dtype)


class FewStepGenerator:
    """A few-step pipeline plus the pieces training needs: prompt encoding, a differentiable
    sampler returning every step's clean-latent prediction, decoding, and LoRA I/O."""

    def __init__(self, pipe, resolution: int | None = None, timesteps=(999, 499), guidance_scale: float = 0.0,
                 scheduler: str = "auto"):
        self.pipe = pipe
        self.family = "sdxl" if getattr(pipe, "text_encoder_2", None) is not None else "sd"
        if scheduler == "lcm":
            from diffusers import LCMScheduler
            pipe.scheduler = LCMScheduler.from_config(pipe.scheduler.config)
        elif scheduler == "euler_ancestral":
            from diffusers import EulerAncestralDiscreteScheduler
            pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config,
                                                                         timestep_spacing="trailing")
        self.is_lcm = type(pipe.scheduler).__name__ == "LCMScheduler"
        # Euler-type schedulers start from sigma-space noise that the pipeline scales by
        # init_noise_sigma / sqrt(sigma^2 + 1); match it so 1-step outputs equal the pipeline's.
        self._sigma_space_start = hasattr(pipe.scheduler, "sigmas") and not self.is_lcm
        self.prediction_type = pipe.scheduler.config.prediction_type
        self.alphas_cumprod = pipe.scheduler.alphas_cumprod.float()
        self.vae_scale = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
        self.resolution = resolution or pipe.unet.config.sample_size * self.vae_scale
        if self.resolution % self.vae_scale:
            raise ValueError(f"resolution {self.resolution} is not a multiple of the VAE factor {self.vae_scale}")
        self.timesteps = list(timesteps)
        self.guidance_scale = guidance_scale
        cond_dim = pipe.unet.config.time_cond_proj_dim
        if guidance_scale > 1.0 and cond_dim is None:
            raise ValueError("model.guidance_scale > 1 needs a guidance-embedded UNet (LCM); "
                             "classifier-free guidance is not supported in the training sampler: use 0")
        self._cond_dim = cond_dim
        for m in (pipe.vae, pipe.text_encoder, getattr(pipe, "text_encoder_2", None), pipe.unet):
            if m is not None:
                m.requires_grad_(False)

    # ----------------------------------------------------------------- loading
    @classmethod
    def from_config(cls, model_cfg) -> "FewStepGenerator":
        pipe = load_pipeline(model_cfg.pretrained, DTYPES[model_cfg.dtype], model_cfg.variant, model_cfg.unet,
                             model_cfg.tiny)
        return cls(pipe, resolution=model_cfg.resolution or None, timesteps=model_cfg.timesteps,
                   guidance_scale=model_cfg.guidance_scale, scheduler=model_cfg.scheduler)

    @classmethod
    def from_pretrained(cls, pretrained: str, dtype: str = "float32", **kwargs) -> "FewStepGenerator":
        """Load a hub id, a local folder or ``demo:shapes`` with default 1-2 step settings."""
        return cls(load_pipeline(pretrained, DTYPES[dtype]), **kwargs)

    @property
    def unet(self):
        return self.pipe.unet

    @property
    def device(self) -> torch.device:
        return self.pipe.unet.device

    @property
    def dtype(self) -> torch.dtype:
        return self.pipe.unet.dtype

    def to(self, device) -> "FewStepGenerator":
        self.pipe.to(device)
        return self

    def latent_shape(self, batch: int) -> tuple[int, int, int, int]:
        side = self.resolution // self.vae_scale
        return (batch, self.pipe.unet.config.in_channels, side, side)

    # ------------------------------------------------------------------- LoRA
    def add_lora(self, rank: int, alpha: float, targets: list[str] | None = None, adapter_name: str = "default"):
        """Inject peft LoRA into the UNet; only these weights will train."""
        from peft import LoraConfig

        cfg = LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian",
                         target_modules=list(targets or DEFAULT_LORA_TARGETS))
        self.unet.add_adapter(cfg, adapter_name=adapter_name)
        return [p for n, p in self.unet.named_parameters() if "lora_" in n]

    def lora_state_dict(self) -> tuple[dict, dict]:
        """The LoRA weights in diffusers' format, and the adapter metadata that keeps alpha/rank."""
        from diffusers.utils import convert_state_dict_to_diffusers
        from peft.utils import get_peft_model_state_dict

        state = convert_state_dict_to_diffusers(get_peft_model_state_dict(self.unet))
        meta = self.unet.peft_config["default"].to_dict()
        meta = {k: (sorted(v) if isinstance(v, set) else v) for k, v in meta.items()}
        return {k: v.detach().float().cpu().contiguous() for k, v in state.items()}, meta

    def save_lora(self, directory: str) -> str:
        """Write ``pytorch_lora_weights.safetensors`` that ``pipe.load_lora_weights(directory)`` reads."""
        state, meta = self.lora_state_dict()
        type(self.pipe).save_lora_weights(directory, unet_lora_layers=state, unet_lora_adapter_metadata=meta)
        return os.path.join(directory, "pytorch_lora_weights.safetensors")

    # ---------------------------------------------------------------- prompts
    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> PromptEmbeds:
        device = self.device
        if self.family == "sdxl":
            hidden, _, pooled, _ = self.pipe.encode_prompt(
                prompt=list(prompts), device=device, num_images_per_prompt=1, do_classifier_free_guidance=False)
            r = self.resolution
            time_ids = torch.tensor([[r, r, 0, 0, r, r]], device=device, dtype=hidden.dtype).repeat(len(prompts), 1)
            return PromptEmbeds(hidden, pooled, time_ids)
        hidden, _ = self.pipe.encode_prompt(list(prompts), device, 1, False)
        return PromptEmbeds(hidden)

    # ---------------------------------------------------------------- sampler
    def alpha_sigma(self, t: torch.Tensor, like: torch.Tensor):
        """a(t), s(t) of the forward process z_t = a(t) x0 + s(t) eps, shaped to broadcast over ``like``."""
        ab = self.alphas_cumprod.to(like.device)[t.long()].view(-1, 1, 1, 1)
        return ab.sqrt().to(like.dtype), (1 - ab).sqrt().to(like.dtype)

    def _start_noise_scale(self, t0: int) -> float:
        if not self._sigma_space_start:
            return 1.0
        ab = float(self.alphas_cumprod[t0])
        sigma = ((1 - ab) / ab) ** 0.5
        spacing = self.pipe.scheduler.config.get("timestep_spacing", "leading")
        init = sigma if spacing in ("linspace", "trailing") else (sigma**2 + 1) ** 0.5
        return init / (sigma**2 + 1) ** 0.5

    def predict_x0(self, unet, z_t: torch.Tensor, t: torch.Tensor, embeds: PromptEmbeds) -> torch.Tensor:
        """One UNet call turned into a clean-latent prediction (with LCM's boundary condition)."""
        kw = embeds.unet_kwargs()
        if self._cond_dim is not None:
            w = torch.full((z_t.shape[0],), self.guidance_scale - 1.0, device=z_t.device)
            kw["timestep_cond"] = guidance_embedding(w, self._cond_dim, z_t.dtype)
        out = unet(z_t, t, return_dict=False, **kw)[0]
        a, s = self.alpha_sigma(t, z_t)
        if self.prediction_type == "epsilon":
            x0 = (z_t - s * out) / a
        elif self.prediction_type == "v_prediction":
            x0 = a * z_t - s * out
        elif self.prediction_type == "sample":
            x0 = out
        else:
            raise ValueError(f"unsupported prediction_type {self.prediction_type!r}")
        if self.is_lcm:
            c_skip, c_out = self.pipe.scheduler.get_scalings_for_boundary_condition_discrete(t.float())
            x0 = c_out.view(-1, 1, 1, 1).to(x0.dtype) * x0 + c_skip.view(-1, 1, 1, 1).to(x0.dtype) * z_t
        return x0

    def sample(self, unet, noise: torch.Tensor, embeds: PromptEmbeds, timesteps: list[int] | None = None,
               renoise: list[torch.Tensor] | None = None, t1: torch.Tensor | None = None,
               stop_grad_at_t1: bool = False) -> list[torch.Tensor]:
        """Run the few-step sampler and return the clean latent after each step ([x1] or [x1, x2]).

        ``renoise[k]`` is the fresh noise of the k-th re-noising (drawn if None); ``t1`` may
        override the second timestep per sample (off-policy exploration). Differentiable
        unless called under ``no_grad``.
        """
        steps = list(timesteps or self.timesteps)
        b = noise.shape[0]
        z = noise.to(self.device, self.dtype) * self._start_noise_scale(steps[0])
        outputs = []
        for k, t_val in enumerate(steps):
            t = torch.full((b,), int(t_val), device=z.device, dtype=torch.long)
            if k == 1 and t1 is not None:
                t = t1.to(z.device).long()
            if k > 0:
                eps = renoise[k - 1] if renoise is not None else torch.randn_like(z)
                a, s = self.alpha_sigma(t, z)
                prev = outputs[-1].detach() if stop_grad_at_t1 else outputs[-1]
                z = a * prev + s * eps.to(z.device, z.dtype)
            outputs.append(self.predict_x0(unet, z, t, embeds))
        return outputs

    # --------------------------------------------------------------- decoding
    def decode_pixels(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> float RGB in [0, 1], [B, 3, H, W]; differentiable in the latents (DRaFT, pixel surrogate)."""
        vae = self.pipe.vae
        lat = latents.to(vae.device, vae.dtype) / vae.config.scaling_factor
        if getattr(vae.config, "shift_factor", None):
            lat = lat + vae.config.shift_factor
        img = vae.decode(lat, return_dict=False)[0]
        return (img.float() / 2 + 0.5).clamp(0, 1)

    @torch.no_grad()
    def decode_uint8(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> uint8 RGB [B, 3, H, W] on the CPU: the pixels the rewards see (and a pixel surrogate's cache)."""
        return (self.decode_pixels(latents) * 255).round().to(torch.uint8).cpu()

    def decode(self, latents: torch.Tensor) -> list[Image.Image]:
        """Latents -> RGB PIL images; used to score black-box rewards and to show samples."""
        return self.to_images(self.decode_uint8(latents))

    @staticmethod
    def to_images(pixels: torch.Tensor) -> list[Image.Image]:
        """``decode_uint8``'s pixels -> RGB PIL images."""
        return [Image.fromarray(a) for a in pixels.permute(0, 2, 3, 1).numpy()]
