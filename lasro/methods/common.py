"""Pieces several methods share: the per-step weights c1/c2, a differentiable 1-2 step sample, and the
few-step denoising loss that DPO (as a likelihood proxy) and GORS (as a regression target) use."""
from __future__ import annotations

import torch

SAMPLER, UNIFORM, LAST = "sampler", "uniform", "last"
TIMESTEP_MODES = (LAST, SAMPLER, UNIFORM)


def step_weights(run) -> list[tuple[int, float]]:
    """(k, c_k) for each of the model's samplers: the weights of the 1- and 2-step outputs' terms."""
    a = run.cfg.algorithm
    return list(zip(run.steps_1_2, (a.c1, a.c2)))


def generator_inputs(run, prompts: list[str]):
    """Prompt embeddings and fresh shared noises for a generator pass: ``(embeds, noise, renoise)``."""
    emb = run.embeds(prompts)
    noise, eps = run.draws.noises(run.gen.latent_shape(len(prompts)), two_step=len(run.steps_1_2) == 2)
    return emb, noise, eps


def sample_with_grad(run, prompts: list[str], inputs=None):
    """The trained generator's 1-2 step outputs, differentiable in the LoRA, from ``inputs`` (default:
    fresh ``generator_inputs``): ``(embeds, noise, renoise, outs)``."""
    emb, noise, eps = inputs or generator_inputs(run, prompts)
    with run.acc.autocast():
        outs = run.gen.sample(run.unet, noise, emb, renoise=eps, stop_grad_at_t1=run.cfg.algorithm.stop_grad_at_t1)
    return emb, noise, eps, outs


def denoising_timesteps(run, steps: torch.Tensor, mode: str) -> torch.Tensor:
    """Where a k-step output is noised for the denoising loss. ``last`` (ours): every output to the
    sampler's last timestep (t1 = 499 by default), where the image still shows through the noise;
    ``sampler``: to the timestep whose UNet call produced it (t_(k-1): 999 for a 1-step output, where its
    signal coefficient is 0.07 and winner and loser differ only by noise); ``uniform``: t ~ U{0..999},
    drawn like every other draw (global, then sharded)."""
    if mode == LAST:
        return torch.full((len(steps),), run.gen.timesteps[-1], dtype=torch.long)
    if mode == SAMPLER:
        return torch.tensor(run.gen.timesteps, dtype=torch.long)[steps.long() - 1]
    if mode == UNIFORM:
        return torch.from_numpy(run.draws.integers(0, 1000, len(steps))).long()
    raise ValueError(f"unknown timestep mode {mode!r}; use one of {', '.join(TIMESTEP_MODES)}")


def x0_predictions(gen, unet, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, embeds) -> torch.Tensor:
    """``unet``'s clean-latent prediction from ``a(t) x0 + s(t) eps``."""
    x0 = x0.to(gen.device, gen.dtype)
    t = t.to(gen.device)
    a, s = gen.alpha_sigma(t, x0)
    return gen.predict_x0(unet, a * x0 + s * eps.to(x0.device, x0.dtype), t, embeds)


def x0_errors(gen, unet, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, embeds) -> torch.Tensor:
    """Per-sample mean squared error of ``unet``'s clean-latent prediction from ``a(t) x0 + s(t) eps``."""
    return per_sample_mse(x0_predictions(gen, unet, x0, t, eps, embeds), x0.to(gen.device))


def per_sample_mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.float() - b.float()).square().flatten(1).mean(1)
