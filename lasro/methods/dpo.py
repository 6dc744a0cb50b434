"""Online Diffusion-DPO / PSO-style preference fine-tuning.

Each round: sample on-policy, score with the true reward, form every same-prompt, same-step-count
(winner, loser) pair, and minimise Diffusion-DPO's loss (Wallace et al. 2024)
  -log sigmoid(-beta/2 [(e_w - e_l) - (e_w_ref - e_l_ref)])
where e is the per-sample denoising error of the clean-latent prediction (our few-step models predict x0;
Diffusion-DPO uses the epsilon error), winner and loser share t and noise, and the reference is the frozen
initial model (the LoRA switched off). ``dpo.timesteps``: ``last`` (ours, the default) noises every output
to the sampler's last timestep, where the images still show through; ``sampler`` noises a k-step output to
the timestep that produced it (t=999 for 1-step outputs: signal coefficient 0.07, so their pairs differ by
noise and, at beta 500, carried about half the gradient); ``uniform`` draws t as Diffusion-DPO does.
"""
from __future__ import annotations

import logging
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from lasro.config import Section
from lasro.generators import adapters_off
from lasro.methods.base import Method
from lasro.methods.common import denoising_timesteps, x0_errors
from lasro.methods.registry import register_method
from lasro.rollouts import ranked_pairs

log = logging.getLogger("lasro")


class DPOConfig(Section):
    """Online Diffusion-DPO / PSO-style preference loss (lasro/methods/dpo.py)."""

    beta: float = Field(500.0, gt=0)
    # where pairs are noised (lasro/methods/common.py): last (ours), sampler (t_(k-1): 1-step pairs at t=999,
    # pure noise to the loss), uniform (Diffusion-DPO's)
    timesteps: Literal["last", "sampler", "uniform"] = "last"


def diffusion_dpo_loss(err_w: torch.Tensor, err_l: torch.Tensor, ref_w: torch.Tensor, ref_l: torch.Tensor,
                       beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Diffusion-DPO's loss and implicit accuracy (share of pairs where the policy beats the reference's
    winner-vs-loser margin)."""
    inside = -0.5 * beta * ((err_w - err_l) - (ref_w - ref_l))
    return -F.logsigmoid(inside).mean(), (inside > 0).float().mean()


@register_method
class DPO(Method):
    name = "dpo"
    Config = DPOConfig

    def train_round(self, round_index: int) -> dict:
        """Sample on-policy, pair same-prompt winners and losers, take Diffusion-DPO steps on the pairs."""
        run = self.run
        self.samples = c = run.collector.collect(explore=False)
        stats = c.reward_stats()
        self.pairs = ranked_pairs(c.prompts, c.steps, c.rewards, comparable=c.groups)
        if len(self.pairs[0]) == 0:
            log.warning("round %d: no same-prompt pair with different rewards (is the reward constant?): "
                        "no DPO step", round_index)
            return {**stats, "dpo/pairs": 0.0}
        return {**stats, "dpo/pairs": float(len(self.pairs[0])),
                **run.generator_steps(self.cfg.algorithm.generator_steps, self.preference_loss, draw=self.draw_pairs)}

    def draw_pairs(self, size: int):
        pick = self.run.draws.integers(0, len(self.pairs[0]), size)
        return self.pairs[0][pick], self.pairs[1][pick]

    def preference_loss(self, batch) -> tuple[torch.Tensor, dict]:
        """Diffusion-DPO's loss on (winner, loser) index pairs ``batch``."""
        win, lose = batch
        run, n = self.run, len(win)
        lat_w, prompts, steps = self.samples.gather(win)
        lat_l = self.samples.gather(lose)[0]
        x0 = torch.cat([lat_w, lat_l])
        t = denoising_timesteps(run, steps, self.cfg.dpo.timesteps).repeat(2)
        eps = run.draws.randn(run.gen.latent_shape(n)).repeat(2, 1, 1, 1)  # winner and loser share t and noise
        emb = run.embeds(list(prompts) * 2)
        with run.acc.autocast():
            err = x0_errors(run.gen, run.unet, x0, t, eps, emb)
            with torch.no_grad(), adapters_off(run.base_unet) as ref_unet:
                ref = x0_errors(run.gen, ref_unet, x0, t, eps, emb)
        loss, accuracy = diffusion_dpo_loss(err[:n], err[n:], ref[:n], ref[n:], self.cfg.dpo.beta)
        return loss, {"dpo/implicit_accuracy": float(accuracy), "dpo/error_win": float(err[:n].detach().mean()),
                      "dpo/error_lose": float(err[n:].detach().mean())}
