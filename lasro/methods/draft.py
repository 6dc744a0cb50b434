"""DRaFT / ReFL-style direct reward back-propagation (Clark et al. 2024; Xu et al. 2023), for rewards
that define ``differentiable(pixels, prompts)``.

Each generator step samples fresh noises, runs the 1-2 step sampler with gradient, decodes with the VAE
(differentiably) and ascends c1 R(x1) + c2 R(x2) of the true reward itself; every image scored counts as a
true-reward query. ``algorithm.stop_grad_at_t1: true`` truncates the gradient to the last step (DRaFT-1).
No surrogate, no collection: the reward's gradient replaces both.
"""
from __future__ import annotations

import torch

from lasro.methods.base import Method
from lasro.methods.common import sample_with_grad, step_weights
from lasro.methods.registry import MethodNotApplicable, list_methods, register_method


@register_method
class DRaFT(Method):
    name = "draft"
    black_box = False  # the reward's own gradient: an upper reference in a comparison, not a baseline

    @classmethod
    def check_reward(cls, reward) -> None:
        if not reward.is_differentiable:
            raise MethodNotApplicable(
                f"algorithm.method 'draft' back-propagates through the reward, but reward '{reward.name}' is "
                "not differentiable (it defines no differentiable(pixels, prompts) method). Use a differentiable "
                f"reward (e.g. saturation) or another method: {', '.join(m for m in list_methods() if m != cls.name)}")

    def train_round(self, round_index: int) -> dict:
        return self.run.generator_steps(self.cfg.algorithm.generator_steps, self.reward_loss)

    def reward_loss(self, prompts: list[str]) -> tuple[torch.Tensor, dict]:
        """-sum_k c_k R(x_k) of the true, differentiable reward on fresh samples."""
        run = self.run
        n = len(prompts)
        _, _, _, outs = sample_with_grad(run, prompts)
        with run.acc.autocast():
            rewards = run.reward.differentiable(run.gen.decode_pixels(torch.cat(outs)), prompts * len(outs)).float()
        run.collector.count(len(rewards) * run.acc.num_processes)
        loss, stats = torch.zeros((), device=rewards.device), {}
        for k, coef in step_weights(run):
            r = rewards[(k - 1) * n:k * n]
            loss = loss - coef * r.mean()
            stats[f"train/reward_{k}step_mean"] = float(r.detach().mean())
        stats["train/reward_mean"] = float(rewards.detach().mean())
        return loss, stats
