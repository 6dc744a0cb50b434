"""Online Diffusion-DPO / PSO-style preference fine-tuning.

Each round: sample on-policy, score with the true reward, form every same-prompt, same-step-count
(winner, loser) pair, and minimise Diffusion-DPO's loss (Wallace et al. 2024)
  -log sigmoid(-beta/2 [(e_w - e_l) - (e_w_ref - e_l_ref)])
where e is the per-sample denoising error of the clean-latent prediction (our few-step models predict x0;
Diffusion-DPO uses the epsilon error), winner and loser share t and noise, and the reference is the frozen
initial model (the LoRA switched off). ``dpo.timesteps: sampler`` noises a k-step output to the timestep
that produced it, in the spirit of PSO's few-step pairs; ``uniform`` draws t as Diffusion-DPO does.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from lasro.buffer import ranked_pairs
from lasro.methods.base import Baseline
from lasro.methods.denoising import denoising_timesteps, x0_errors
from lasro.methods.registry import register_method
from lasro.trainer import adapters_off, log


def diffusion_dpo_loss(err_w: torch.Tensor, err_l: torch.Tensor, ref_w: torch.Tensor, ref_l: torch.Tensor,
                       beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Diffusion-DPO's loss and implicit accuracy (share of pairs where the policy beats the reference's
    winner-vs-loser margin)."""
    inside = -0.5 * beta * ((err_w - err_l) - (ref_w - ref_l))
    return -F.logsigmoid(inside).mean(), (inside > 0).float().mean()


@register_method
class DPOTrainer(Baseline):
    method = "dpo"

    def learn_from_round(self, round_index: int) -> dict:
        buf = self.buffer
        idx = np.flatnonzero(buf.rounds == round_index)
        win, lose = ranked_pairs([buf.prompts[i] for i in idx], buf.steps[idx], buf.rewards[idx])
        self.pairs = idx[win], idx[lose]
        if len(win) == 0:
            log.warning("round %d: no same-prompt pair with different rewards (is the reward constant?): "
                        "no DPO step", round_index)
            return {"dpo/pairs": 0.0}
        return {"dpo/pairs": float(len(win)), **self.generator_steps(self.cfg.algorithm.generator_steps)}

    def generator_batch(self, size: int):
        pick = self._integers(0, len(self.pairs[0]), size)
        return self.pairs[0][pick], self.pairs[1][pick]

    def generator_loss(self, batch) -> tuple[torch.Tensor, dict]:
        win, lose = batch
        n = len(win)
        lat_w, prompts, steps = self.buffer.gather(win)
        lat_l = self.buffer.gather(lose)[0]
        x0 = torch.cat([lat_w, lat_l])
        t = denoising_timesteps(self, steps, self.cfg.dpo.timesteps).repeat(2)
        eps = self._randn(self.gen.latent_shape(n)).repeat(2, 1, 1, 1)  # winner and loser share t and noise
        emb = self.embeds(list(prompts) * 2)
        with self.acc.autocast():
            err = x0_errors(self.gen, self.unet, x0, t, eps, emb)
            with torch.no_grad(), adapters_off(self.base_unet) as ref_unet:
                ref = x0_errors(self.gen, ref_unet, x0, t, eps, emb)
        loss, accuracy = diffusion_dpo_loss(err[:n], err[n:], ref[:n], ref[n:], self.cfg.dpo.beta)
        return loss, {"dpo/implicit_accuracy": float(accuracy), "dpo/error_win": float(err[:n].detach().mean()),
                      "dpo/error_lose": float(err[n:].detach().mean())}
