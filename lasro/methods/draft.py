"""DRaFT / ReFL-style direct reward back-propagation (Clark et al. 2024; Xu et al. 2023), for rewards
that define ``differentiable(pixels, prompts)``.

Each generator step samples fresh noises, runs the 1-2 step sampler with gradient, decodes with the VAE
(differentiably) and ascends c1 R(x1) + c2 R(x2) of the true reward itself; every image scored counts as a
true-reward query. ``algorithm.stop_grad_at_t1: true`` truncates the gradient to the last step (DRaFT-1).
No surrogate, no collection: the reward's gradient replaces both.
"""
from __future__ import annotations

import torch

from lasro.methods.base import Baseline
from lasro.methods.registry import MethodNotApplicable, register_method


@register_method
class DRaFTTrainer(Baseline):
    method = "draft"

    def check_reward(self) -> None:
        if not self.reward.is_differentiable:
            raise MethodNotApplicable(
                f"algorithm.method 'draft' back-propagates through the reward, but reward '{self.reward.name}' is "
                "not differentiable (it defines no differentiable(pixels, prompts) method). Use a differentiable "
                "reward (e.g. saturation) or a black-box method: lasro, ppo, dpo, gors")

    def train_round(self, round_index: int) -> dict:
        return self.generator_steps(self.cfg.algorithm.generator_steps)

    def generator_loss(self, prompts: list[str]) -> tuple[torch.Tensor, dict]:
        a = self.cfg.algorithm
        n = len(prompts)
        _, _, _, outs = self.sample_with_grad(prompts)
        with self.acc.autocast():
            rewards = self.reward.differentiable(self.gen.decode_pixels(torch.cat(outs)), prompts * len(outs)).float()
        self.reward_queries += len(rewards) * self.acc.num_processes
        loss, stats = torch.zeros((), device=rewards.device), {}
        for k, coef in zip(self.steps_1_2, (a.c1, a.c2)):
            r = rewards[(k - 1) * n:k * n]
            loss = loss - coef * r.mean()
            stats[f"train/reward_{k}step_mean"] = float(r.detach().mean())
        stats["train/reward_mean"] = float(rewards.detach().mean())
        return loss, stats
