"""PPO for 1-2 step samplers, in the style of DDPO / RLCM.

The 2-step sampler as a stochastic policy (our framing; RLCM's consistency-model policy likewise makes
every step Gaussian): given z_T, two actions
  1. the re-noised latent z_t1 ~ N(a(t1) x1_theta(z_T), s(t1)^2 I) -- the sampler's own noise injection;
  2. the output x ~ N(x2_theta(z_t1), sigma_out^2 I), with a small fixed ``ppo.output_std`` sigma_out.
The last step of a distilled sampler is deterministic and has no likelihood (docs/method.md); the
Gaussian output policy is the usual way around it (DDPO's and RLCM's last step is Gaussian as well), and
the scored images are these noisy outputs. The 1-step output is a one-action policy x ~ N(x1_theta, sigma_out^2).
As DDPO computes it, each action has its own ratio, from Gaussian log-densities averaged over the latent
dimensions, clipped at DDPO's ``ppo.clip_range`` 1e-4, and the clipped objective is averaged over a
trajectory's actions. (Summed over 1,024 dimensions, one minibatch step moved the ratios to 0 or 1e4.)
Samples are collected with the current policy, old log-probabilities stored, advantages normalised per
prompt and step count within the round (DDPO tracks per-prompt statistics over a history: ours is
simpler), then ``ppo.epochs`` passes of the clipped ratio objective, one optimiser update per
``ppo.samples_per_update`` samples (DDPO: one inner epoch, 64 samples an update; ours by default too).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from pydantic import Field

from lasro.config import Section
from lasro.methods.base import Method
from lasro.methods.common import step_weights
from lasro.methods.registry import register_method
from lasro.rollouts import same_prompt_groups


class PPOConfig(Section):
    """DDPO/RLCM-style PPO (lasro/methods/ppo.py)."""

    output_std: float = Field(0.1, gt=0)  # std of the Gaussian output policy x ~ N(x_theta, output_std^2), latent units
    clip_range: float = Field(1e-4, gt=0)  # DDPO's: per-dimension mean log-probabilities move little per step
    adv_clip: float = 5.0  # advantages clipped to +-adv_clip after per-prompt normalisation
    # a prompt with fewer samples than this in a round is normalised by the round's batch (two samples
    # of a prompt always get advantages +-1, whatever their rewards)
    min_group_size: int = Field(3, ge=1)
    epochs: int = Field(1, ge=1)  # passes over each round's samples (DDPO's num_inner_epochs: 1)
    # samples per optimiser update, accumulated in micro-batches of optim.batch_size. DDPO's dgx config takes
    # 4 updates on 256 samples a round; at 8 updates of 16 samples the 1-step ratios collapsed after the first
    # (a sigma_out = 0.1 output policy is narrow) and PPO stopped learning (docs/results/probes/).
    samples_per_update: int = Field(64, ge=1)


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, std) -> torch.Tensor:
    """log N(x; mean, std^2 I) per sample, averaged over all but the batch dimension (DDPO's per-dimension
    mean: a sum over a latent's thousands of dimensions makes every ratio explode or vanish)."""
    std = torch.as_tensor(std, dtype=torch.float32, device=x.device)
    z = (x.float() - mean.float()) / std
    lp = -0.5 * z.square() - torch.log(std) - 0.5 * math.log(2 * math.pi)
    return lp.expand_as(z).flatten(1).mean(1)


def per_prompt_advantages(prompts: list[str], steps: np.ndarray, rewards: np.ndarray, clip: float,
                          min_group: int = 1) -> np.ndarray:
    """(r - mean) / std within each (prompt, step count) group, clipped to +-clip. A group smaller than
    ``min_group`` is normalised by its step count's whole batch instead (DDPO's per-prompt tracker falls
    back to batch statistics below its min_count); 0 for a lone sample."""
    adv = np.zeros(len(rewards))
    small = {int(k): [] for k in np.unique(steps)}
    for idx in same_prompt_groups(prompts, steps):
        if len(idx) < min_group:
            small[int(steps[idx[0]])].extend(idx)
            continue
        r = rewards[idx]
        adv[idx] = (r - r.mean()) / (r.std() + 1e-8) if len(idx) > 1 else 0.0
    for k, idx in small.items():
        if len(idx) > 1:
            batch = rewards[steps == k]
            adv[idx] = (rewards[idx] - batch.mean()) / (batch.std() + 1e-8)
    return np.clip(adv, -clip, clip)


def ppo_clipped_loss(ratio: torch.Tensor, adv: torch.Tensor, clip_range: float) -> torch.Tensor:
    """-E[min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A)]."""
    return -torch.minimum(ratio * adv, ratio.clamp(1 - clip_range, 1 + clip_range) * adv).mean()


@register_method
class PPO(Method):
    name = "ppo"
    Config = PPOConfig

    def policy_log_probs(self, x1_mean: torch.Tensor, x2_mean: torch.Tensor | None, z_t1: torch.Tensor | None,
                         outs: list[torch.Tensor]) -> list[list[torch.Tensor]]:
        """Per k-step trajectory ([1-step, 2-step]), the log-probability of each of its actions under the
        policy whose clean-latent predictions are ``x1_mean`` (from z_T) and ``x2_mean`` (from the stored z_t1):
        [[output], [z_t1, output]]."""
        sigma, gen = self.cfg.ppo.output_std, self.run.gen
        lps = [[gaussian_log_prob(outs[0], x1_mean, sigma)]]
        if x2_mean is not None:
            t1 = torch.full((x1_mean.shape[0],), gen.timesteps[1], device=x1_mean.device)
            a, s = gen.alpha_sigma(t1, x1_mean.float())
            lps.append([gaussian_log_prob(z_t1, a * x1_mean, s), gaussian_log_prob(outs[1], x2_mean, sigma)])
        return lps

    def _means(self, unet, noise: torch.Tensor, z_t1: torch.Tensor | None, emb) -> tuple:
        """The policy's clean-latent predictions: x1 from z_T, x2 from the stored (not re-drawn) z_t1."""
        gen = self.run.gen
        x1 = gen.sample(unet, noise, emb, timesteps=gen.timesteps[:1])[0]
        if z_t1 is None:
            return x1, None
        t1 = torch.full((noise.shape[0],), gen.timesteps[1], device=x1.device, dtype=torch.long)
        return x1, gen.predict_x0(unet, z_t1, t1, emb)

    @torch.no_grad()
    def collect_rollouts(self) -> dict:
        """Sample the current policy (z_T, z_t1, noisy outputs), score with the true reward, store the old
        log-probabilities and the per-prompt advantages of this process's samples."""
        run = self.run
        gen, draws = run.gen, run.draws
        global_prompts, prompts = run.collector.draw_prompts()
        n, emb = len(prompts), run.embeds(prompts)
        noise = draws.randn(gen.latent_shape(n))
        z_t1 = x2_mean = None
        with run.acc.autocast():
            x1_mean, _ = self._means(run.base_unet, noise, None, emb)
            if len(run.steps_1_2) == 2:
                t1 = torch.full((n,), gen.timesteps[1], device=x1_mean.device, dtype=torch.long)
                a, s = gen.alpha_sigma(t1, x1_mean)
                z_t1 = a * x1_mean + s * draws.randn(x1_mean.shape).to(x1_mean.dtype)
                x2_mean = gen.predict_x0(run.base_unet, z_t1, t1, emb)
            means = [x1_mean] if z_t1 is None else [x1_mean, x2_mean]
        outs = [m + self.cfg.ppo.output_std * draws.randn(m.shape).to(m.dtype) for m in means]
        c = run.collector.score_and_gather(outs, prompts, global_prompts)
        adv = per_prompt_advantages(c.prompts, c.steps, c.rewards, self.cfg.ppo.adv_clip, self.cfg.ppo.min_group_size)
        total = len(global_prompts)
        local_adv = [torch.from_numpy(adv[k * total:(k + 1) * total][draws.shard(n)]).float().to(noise.device)
                     for k in range(len(outs))]
        self.rollout = {"prompts": prompts, "noise": noise, "z_t1": z_t1, "outs": outs, "adv": local_adv,
                        "old_log_probs": self.policy_log_probs(x1_mean, x2_mean, z_t1, outs)}
        return c.reward_stats()

    def ratios(self, idx: np.ndarray) -> list[list[torch.Tensor]]:
        """pi_theta / pi_old of each action of each k-step trajectory of the rollout samples ``idx`` (with
        gradient)."""
        run, d = self.run, self.rollout
        z_t1 = None if d["z_t1"] is None else d["z_t1"][idx]
        with run.acc.autocast():
            x1_mean, x2_mean = self._means(run.unet, d["noise"][idx], z_t1, run.embeds([d["prompts"][i] for i in idx]))
        new = self.policy_log_probs(x1_mean, x2_mean, z_t1, [o[idx] for o in d["outs"]])
        return [[torch.exp(lp - old[idx]) for lp, old in zip(traj, old_traj)]
                for traj, old_traj in zip(new, d["old_log_probs"])]

    def clipped_loss(self, idx: np.ndarray) -> tuple[torch.Tensor, dict]:
        """PPO's clipped objective on the rollout samples ``idx``, summed over step counts with c1/c2."""
        clip = self.cfg.ppo.clip_range
        loss, stats = 0.0, {}
        for (k, coef), ratios in zip(step_weights(self.run), self.ratios(idx)):
            adv = self.rollout["adv"][k - 1][idx]
            loss = loss + coef * sum(ppo_clipped_loss(r, adv, clip) for r in ratios) / len(ratios)
            r = torch.stack([x.detach() for x in ratios])
            stats[f"ppo/ratio_{k}step"] = float(r.mean())
            stats[f"ppo/clip_fraction_{k}step"] = float(((r - 1).abs() > clip).float().mean())
            stats[f"ppo/abs_log_ratio_max_{k}step"] = float(r.log().abs().max())
        return loss, stats

    def train_round(self, round_index: int) -> dict:
        """Collect rollouts, then ``ppo.epochs`` passes over them: one optimiser update per
        ``ppo.samples_per_update`` samples (this process's share), accumulated over micro-batches of
        ``optim.batch_size``."""
        stats = self.collect_rollouts()
        n, b = len(self.rollout["prompts"]), self.cfg.optim.batch_size
        per_update = max(1, self.cfg.ppo.samples_per_update // self.run.acc.num_processes)
        updates = []
        for _ in range(self.cfg.ppo.epochs):
            perm = self.run.draws.rng.permutation(n)  # same on every process; each permutes its own shard
            for i in range(0, n, per_update):
                chunk = perm[i:i + per_update]
                updates.append([chunk[j:j + b] for j in range(0, len(chunk), b)])
        stats.update(self.run.generator_steps(len(updates), self.clipped_loss, batches=updates))
        stats["ppo/updates"] = float(len(updates))
        return stats
