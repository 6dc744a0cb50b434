"""GORS-style fine-tuning on the generator's own high-reward samples (T2I-CompBench's GORS; the LaSRO
paper's "fine-tune on own high-reward samples" baseline).

Each round: sample on-policy, score with the true reward, keep the top ``gors.top_fraction`` of each step
count's samples, weight them by a softmax of their normalised reward, and regress the generator onto them
with the denoising loss (noise the sample to a timestep, predict the clean latent, weighted MSE). The
timestep is drawn uniformly, as GORS trains (its standard diffusion loss): regressing at the sampler's last
timestep instead (``gors.timesteps: last``) drifts toward detail whatever the reward, since the loop of
sampling and regressing sharpens the model's own outputs (docs/results/compare-easy/, "GORS").
``gors.step_counts`` limits which samplers' outputs are kept. Ours: an anchor, ``gors.anchor_weight`` times
the squared distance of the predictions from the initial model's on the same noised inputs (one no-grad
UNet call); without it the loop of sampling and regressing diverged on the distilled demo model at every
setting tried (docs/results/demo-compare/).
"""
from __future__ import annotations

import math
from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import Field

from lasro.config import ConfigError, Section, must
from lasro.methods.base import Method
from lasro.generators import adapters_off
from lasro.methods.common import denoising_timesteps, per_sample_mse, x0_predictions
from lasro.methods.registry import register_method


class GORSConfig(Section):
    """GORS-style reward-weighted fine-tuning on the generator's own best samples (lasro/methods/gors.py)."""

    # share of each round's samples (per step count) kept
    top_fraction: Annotated[float, must(lambda v: 0.0 < v <= 1.0, "must be in (0, 1]")] = 0.25
    temperature: float = Field(1.0, gt=0)  # weights: softmax(normalised reward / temperature) over the kept samples
    # as dpo.timesteps; GORS's own loss draws t uniformly ("last" drifts: see the module docstring)
    timesteps: Literal["last", "sampler", "uniform"] = "uniform"
    # ours: pull the predictions toward the initial model's on the same noised inputs (the anchor the other
    # methods have); without it the sample-and-regress loop diverges on a distilled model
    anchor_weight: float = Field(1.0, ge=0)
    # which samplers' outputs it regresses on ([2]: skip 1-step outputs, whose loss sits at t=999); on the
    # demo both choices collapse (docs/results/demo-compare/, "GORS")
    step_counts: Annotated[list[int], must(lambda s: bool(s) and set(s) <= {1, 2},
                                            "must be a non-empty subset of [1, 2]")] = [1, 2]


def check_gors_step_counts(cfg) -> None:
    """gors.step_counts must name a sampler that model.timesteps has (called by the GORS method)."""
    counts, ts = cfg.gors.step_counts, cfg.model.timesteps
    if min(counts) > len(ts):
        raise ConfigError(f"gors.step_counts {counts} names no sampler of model.timesteps {ts}: "
                          f"a {len(ts)}-timestep model samples only 1 step; use gors.step_counts: [1]")


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
class GORS(Method):
    name = "gors"
    Config = GORSConfig

    @classmethod
    def check_config(cls, cfg) -> None:
        check_gors_step_counts(cfg)

    def train_round(self, round_index: int) -> dict:
        """Sample on-policy, keep and weight the best samples, regress the generator onto them."""
        g, run = self.cfg.gors, self.run
        self.samples = c = run.collector.collect(explore=False)
        w = gors_weights(c.rewards, c.steps, g.top_fraction, g.temperature, g.step_counts)
        self.kept, self.kept_weights = np.flatnonzero(w > 0), w[w > 0]
        stats = {**c.reward_stats(), "gors/kept_reward_mean": float(np.mean(c.rewards[self.kept]))}
        return {**stats, **run.generator_steps(self.cfg.algorithm.generator_steps, self.regression_loss,
                                               draw=self.draw_kept)}

    def draw_kept(self, size: int):
        pick = self.run.draws.integers(0, len(self.kept), size)
        return self.kept[pick], self.kept_weights[pick]

    def regression_loss(self, batch) -> tuple[torch.Tensor, dict]:
        """Reward-weighted denoising MSE on kept samples ``batch = (indices, weights)``."""
        idx, weights = batch
        run = self.run
        x0, prompts, steps = self.samples.gather(idx)
        g = self.cfg.gors
        t = denoising_timesteps(run, steps, g.timesteps)
        eps = run.draws.randn(run.gen.latent_shape(len(idx)))
        emb = run.embeds(list(prompts))
        with run.acc.autocast():
            pred = x0_predictions(run.gen, run.unet, x0, t, eps, emb)
            if g.anchor_weight > 0:
                with torch.no_grad(), adapters_off(run.base_unet) as ref_unet:
                    ref = x0_predictions(run.gen, ref_unet, x0, t, eps, emb)
        err = per_sample_mse(pred, x0.to(pred.device))
        loss = (torch.as_tensor(weights, dtype=torch.float32, device=err.device) * err).mean()
        stats = {"gors/mse": float(err.detach().mean())}
        if g.anchor_weight > 0:
            anchor = per_sample_mse(pred, ref).mean()
            loss = loss + g.anchor_weight * anchor
            stats["gors/anchor"] = float(anchor.detach())
        return loss, stats
