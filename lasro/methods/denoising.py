"""The few-step denoising loss that DPO (as a likelihood proxy) and GORS (as a regression target) share:
noise a clean latent to a timestep, predict the clean latent back, per-sample MSE."""
from __future__ import annotations

import torch

SAMPLER, UNIFORM = "sampler", "uniform"


def denoising_timesteps(trainer, steps: torch.Tensor, mode: str) -> torch.Tensor:
    """``sampler``: a k-step output is noised to the timestep whose UNet call produced it (t_(k-1));
    ``uniform``: t ~ U{0..999}, drawn like every other draw (global, then sharded)."""
    if mode == SAMPLER:
        return torch.tensor(trainer.gen.timesteps, dtype=torch.long)[steps.long() - 1]
    if mode == UNIFORM:
        return torch.from_numpy(trainer._integers(0, 1000, len(steps))).long()
    raise ValueError(f"unknown timestep mode {mode!r}; use '{SAMPLER}' or '{UNIFORM}'")


def x0_errors(gen, unet, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, embeds) -> torch.Tensor:
    """Per-sample mean squared error of ``unet``'s clean-latent prediction from ``a(t) x0 + s(t) eps``."""
    x0 = x0.to(gen.device, gen.dtype)
    t = t.to(gen.device)
    a, s = gen.alpha_sigma(t, x0)
    pred = gen.predict_x0(unet, a * x0 + s * eps.to(x0.device, x0.dtype), t, embeds)
    return (pred.float() - x0.float()).square().flatten(1).mean(1)
