"""GORS-style fine-tuning on the generator's own high-reward samples (T2I-CompBench's GORS; the LaSRO
paper's "fine-tune on own high-reward samples" baseline).

Each round: sample on-policy, score with the true reward, keep the top ``gors.top_fraction`` of each step
count's samples, weight them by a softmax of their normalised reward, and regress the generator onto them
with the few-step denoising loss (noise the sample to a timestep, predict the clean latent, weighted MSE).
``gors.step_counts`` limits which samplers' outputs are kept. Nothing holds the model near its start: on
the distilled demo model the loop of sampling and regressing diverges (docs/bench/demo-compare/).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from lasro.methods.base import Baseline
from lasro.methods.denoising import denoising_timesteps, x0_errors
from lasro.methods.registry import register_method


def gors_weights(rewards: np.ndarray, steps: np.ndarray, top_fraction: float, temperature: float,
                 step_counts=(1, 2)) -> np.ndarray:
    """Per sample: 0 outside ``step_counts`` or the top ``top_fraction`` of its step count's group, else
    softmax(z / temperature) over the kept ones (z: reward standardised within the group), scaled to mean 1."""
    rewards = np.asarray(rewards, dtype=np.float64)
    weights = np.zeros(len(rewards))
    for k in np.intersect1d(np.unique(steps), list(step_counts)):
        group = np.flatnonzero(np.asarray(steps) == k)
        r = rewards[group]
        z = (r - r.mean()) / (r.std() + 1e-8)
        keep = np.argsort(-r, kind="stable")[:max(1, math.ceil(top_fraction * len(group)))]
        e = np.exp((z[keep] - z[keep].max()) / temperature)
        weights[group[keep]] = e / e.sum() * len(keep)
    return weights


@register_method
class GORSTrainer(Baseline):
    method = "gors"

    def learn_from_round(self, round_index: int) -> dict:
        g, buf = self.cfg.gors, self.buffer
        idx = np.flatnonzero(buf.rounds == round_index)
        w = gors_weights(buf.rewards[idx], buf.steps[idx], g.top_fraction, g.temperature, g.step_counts)
        self.kept, self.kept_weights = idx[w > 0], w[w > 0]
        stats = {"gors/kept_reward_mean": float(np.mean(buf.rewards[self.kept]))}
        return {**stats, **self.generator_steps(self.cfg.algorithm.generator_steps)}

    def generator_batch(self, size: int):
        pick = self._integers(0, len(self.kept), size)
        return self.kept[pick], self.kept_weights[pick]

    def generator_loss(self, batch) -> tuple[torch.Tensor, dict]:
        idx, weights = batch
        x0, prompts, steps = self.buffer.gather(idx)
        t = denoising_timesteps(self, steps, self.cfg.gors.timesteps)
        eps = self._randn(self.gen.latent_shape(len(idx)))
        with self.acc.autocast():
            err = x0_errors(self.gen, self.unet, x0, t, eps, self.embeds(list(prompts)))
        loss = (torch.as_tensor(weights, dtype=torch.float32, device=err.device) * err).mean()
        return loss, {"gors/mse": float(err.detach().mean())}
