"""LaSRO (Jia et al., CVPR 2025): a differentiable surrogate of the true reward, learnt from same-prompt
comparisons, back-propagated through the 1-2 sampling steps into the generator's LoRA.

Schedule (docs/method.md): pre-train the surrogate on the initial generator's samples, then rounds of
{generator steps with the surrogate frozen (unless the pair-accuracy gate is shut); collect and score
fresh off-policy samples; surrogate steps on the replay buffer}.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Annotated, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from lasro.config import Section, must
from lasro.generators import PromptEmbeds, adapters_off, weights_swapped
from lasro.methods.base import Method, MethodState
from lasro.methods.common import generator_inputs, sample_with_grad, step_weights
from lasro.methods.registry import register_method
from lasro.rollouts import Collection, ReplayBuffer, ranked_pairs
from lasro.surrogates import (
    bradley_terry_loss,
    build_surrogate,
    frozen,
    mean_score,
    member_spread,
    pessimistic,
    surrogate_param_groups,
)
from lasro.surrogates.normalizer import EMAScoreNormalizer
from lasro.surrogates.sample_gradients import equalize_sample_gradients

log = logging.getLogger("lasro")


class LaSROConfig(Section):
    """LaSRO's own keys (``lasro:``)."""

    pretrain_collect_rounds: int = 2  # paper: pre-train the surrogate on the initial generator's samples
    pretrain_surrogate_steps: int = 100
    # ours: pre-training is checkpointed after each collection and every this many surrogate steps (0: only
    # after the collections), so a kill during it loses at most that much work
    pretrain_checkpoint_every: int = Field(250, ge=0)
    surrogate_steps: int = 20
    regularizer: Literal["anchor", "none"] = "anchor"
    reg_weight: float = 1.0  # c
    # ours: what the anchor holds the outputs to. initial: the frozen initial model (bounds the total move);
    # round: the generator as it was when the round's generator steps began, a trust region that moves
    # with the surrogate's freshest data and leaves the total move to the rounds. On the demo, round drifted
    # with the surrogate's errors: 2-step -0.036 against +0.017 (docs/results/demo-surrogate/)
    anchor: Literal["initial", "round"] = "initial"
    ema_decay: Annotated[float, must(lambda v: 0.0 < v < 1.0, "must be in (0, 1)")] = 0.99
    # ours: skip a round's generator steps while the surrogate orders fresh same-prompt pairs worse
    # than this (held-out pair accuracy of the latest collection); 0 = never skip (the paper's loop)
    min_pair_accuracy: float = 0.0
    # ...averaged over this many latest collections: one round's estimate (a few hundred pairs) is noisy
    pair_accuracy_window: int = Field(1, ge=1)
    # ours: rescale each output's surrogate gradient to the batch's mean size, so that every sample pulls
    # the LoRA equally hard (lasro/surrogates/sample_gradients.py)
    equalize_sample_gradients: bool = False


def draw_train_prompts(run, size: int) -> list[str]:
    """``size`` training prompts drawn from the shared stream (a generator micro-batch)."""
    return [run.train_prompts[i] for i in run.draws.integers(0, len(run.train_prompts), size)]


@register_method
class LaSRO(Method):
    name = "lasro"
    Config = LaSROConfig

    def __init__(self, run):
        super().__init__(run)
        self.surrogate = build_surrogate(self.cfg.surrogate, run.gen).to(run.acc.device)
        self.buffer = ReplayBuffer(self.cfg.buffer.capacity, self.cfg.buffer.recency_decay)
        self.norms = {k: EMAScoreNormalizer(self.cfg.lasro.ema_decay) for k in (1, 2)}
        self.last_pair_accuracy = float("nan")
        self.pair_accuracy_history: list[float] = []  # finite held-out accuracies, latest last (for the gate)
        self._round_anchor: list[torch.Tensor] | None = None  # LoRA weights at the round's first generator step
        # how far pre-training got (checkpointed, so a resumed warm start continues where it stopped)
        self.pretrain = {"collections": 0, "surrogate_steps": 0, "losses": [], "stats": {}}
        self.reads_pixels = getattr(self.surrogate, "reads_pixels", False)
        run.collector.keep_pixels = self.reads_pixels

    def setup(self) -> None:
        self.sur_opt = torch.optim.AdamW(surrogate_param_groups(self.cfg.surrogate, self.surrogate),
                                         weight_decay=self.cfg.surrogate.weight_decay)
        self.sur_ddp, self.sur_opt = self.run.acc.prepare(self.surrogate, self.sur_opt)

    @property
    def base_surrogate(self):
        return self.run.acc.unwrap_model(self.sur_ddp)

    @property
    def logged_progress(self) -> tuple[str, ...]:
        return ("surrogate/pair_accuracy",)

    # ------------------------------------------------------------ schedule
    def warm_start(self) -> dict:
        """Pre-train the surrogate on the initial generator's samples: ``pretrain_collect_rounds`` + 1
        collections (the last one's pair accuracy is held out), then ``pretrain_surrogate_steps`` steps.
        Resumable: each collection and every ``pretrain_checkpoint_every`` steps is a checkpoint point."""
        a, p, run = self.cfg.lasro, self.pretrain, self.run
        while p["collections"] < a.pretrain_collect_rounds + 1:
            p["stats"] = self.collect(0)
            p["collections"] += 1
            run.warm_start_point(p["collections"] + p["surrogate_steps"], due=True)
        every = a.pretrain_checkpoint_every
        while p["surrogate_steps"] < a.pretrain_surrogate_steps:
            loss = self.surrogate_step()
            if loss is not None:
                p["losses"].append(loss)
            p["surrogate_steps"] += 1
            due = every > 0 and p["surrogate_steps"] % every == 0 and p["surrogate_steps"] < a.pretrain_surrogate_steps
            run.warm_start_point(p["collections"] + p["surrogate_steps"], due=due)
        return {**p["stats"], "surrogate/loss": self._mean_loss(p["losses"], a.pretrain_surrogate_steps)}

    def train_round(self, round_index: int) -> dict:
        """Generator steps against the frozen surrogate (unless gated), fresh collection, surrogate adaptation."""
        a = self.cfg.lasro
        if self.surrogate_trusted():
            if a.anchor == "round":
                self._round_anchor = [p.detach().clone() for p in self.run.lora_params]
            gen_stats = self.run.generator_steps(self.cfg.algorithm.generator_steps, self.generator_loss,
                                                 draw=lambda size: draw_train_prompts(self.run, size))
        else:
            gen_stats = {"generator/gated": 1.0}
            log.info("round %d: surrogate pair accuracy %.3f (mean of the last %d collections) < "
                     "lasro.min_pair_accuracy %.3f: generator steps skipped, surrogate keeps training",
                     round_index, self.gate_accuracy(), a.pair_accuracy_window, a.min_pair_accuracy)
        stats = {**gen_stats, **self.collect(round_index)}
        stats["surrogate/loss"] = self.train_surrogate(a.surrogate_steps)
        return stats

    # ---------------------------------------------------------- collection
    def collect(self, round_index: int) -> dict:
        """Collect off-policy samples, measure the surrogate on them (before it trains on them), buffer them."""
        c = self.run.collector.collect(explore=True)
        self.last_pair_accuracy = self.pair_accuracy(c)
        stats = {"surrogate/pair_accuracy": self.last_pair_accuracy}
        if np.isfinite(self.last_pair_accuracy):
            keep = self.cfg.lasro.pair_accuracy_window
            self.pair_accuracy_history = (self.pair_accuracy_history + [self.last_pair_accuracy])[-keep:]
        self.buffer.add(c.latents.to(self.run.gen.dtype), c.prompts, c.rewards, c.steps, round_index, pixels=c.pixels)
        return {**stats, **c.reward_stats()}

    @torch.no_grad()
    def pair_accuracy(self, c: Collection) -> float:
        """Share of fresh (never trained on) same-prompt pairs the surrogate orders like the true reward."""
        win, lose = ranked_pairs(c.prompts, c.steps, c.rewards, self.cfg.surrogate.margin)
        if len(win) == 0:
            return float("nan")
        run, scores, chunk = self.run, [], self.run.chunk
        for i in range(0, len(c.prompts), chunk):
            extra = {} if c.pixels is None else {"pixels": c.pixels[i:i + chunk]}
            with run.acc.autocast():
                scores.append(mean_score(self.base_surrogate(c.latents[i:i + chunk].to(run.acc.device), run.embeds(
                    c.prompts[i:i + chunk]), torch.as_tensor(c.steps[i:i + chunk]), **extra)).float().cpu())
        s = torch.cat(scores).numpy()
        return float(np.mean(s[win] > s[lose]))

    def gate_accuracy(self) -> float:
        """Mean held-out pair accuracy of the last ``lasro.pair_accuracy_window`` collections (NaN until there
        are that many, or when the latest had no pair)."""
        w = self.cfg.lasro.pair_accuracy_window
        recent = self.pair_accuracy_history[-w:]
        if len(recent) < w or not np.isfinite(self.last_pair_accuracy):
            return float("nan")
        return float(np.mean(recent))

    def surrogate_trusted(self) -> bool:
        """Whether the held-out pair accuracy (``gate_accuracy``) clears ``lasro.min_pair_accuracy``; the
        surrogate is measured on each collection before it trains on it, so this is never a training-set figure."""
        floor = self.cfg.lasro.min_pair_accuracy
        return floor <= 0 or self.gate_accuracy() >= floor

    # ----------------------------------------------------------- surrogate
    def surrogate_step(self) -> float | None:
        run, n = self.run, self.cfg.surrogate.batch_pairs
        win, lose = self.buffer.sample_pairs(n * run.acc.num_processes, run.draws.rng, self.cfg.surrogate.margin)
        if len(win) == 0:
            return None  # identical on every process: the buffers are the same
        win, lose = win[run.draws.shard(n)], lose[run.draws.shard(n)]
        idx = np.concatenate([win, lose])
        lat, prompts, steps = self.buffer.gather(idx)
        pixels = self.buffer.gather_pixels(idx)
        extra = {} if pixels is None else {"pixels": pixels}
        self.sur_ddp.train()
        with run.acc.autocast():
            scores = self.sur_ddp(lat.to(run.acc.device), run.embeds(prompts), steps, **extra)
        loss = bradley_terry_loss(scores[:n].float(), scores[n:].float())
        self.sur_opt.zero_grad(set_to_none=True)
        run.acc.backward(loss)
        if not run.optimizer_step("surrogate", self.sur_ddp.parameters(), self.sur_opt, float(loss.detach())):
            return None
        return float(loss.detach())

    def train_surrogate(self, steps: int) -> float:
        return self._mean_loss([l for l in (self.surrogate_step() for _ in range(steps)) if l is not None], steps)

    def _mean_loss(self, losses: list[float], steps: int) -> float:
        """The mean of the steps' losses (NaN, with a warning, when ``steps`` > 0 took none)."""
        if steps and not losses and not self.run.nonfinite_streak("surrogate"):
            log.warning("no surrogate step: the buffer holds no same-prompt pair with different rewards "
                        "(is the reward constant?)")
        return float(np.mean(losses)) if losses else float("nan")

    # ----------------------------------------------------------- generator
    def generator_loss(self, prompts: list[str]) -> tuple[torch.Tensor, dict]:
        """-sum_k c_k S[R_psi(x_k)] over the 1- and 2-step outputs, plus the anchor regulariser."""
        run, a, s = self.run, self.cfg.lasro, self.cfg.surrogate
        n = len(prompts)
        emb, noise, eps = inputs = generator_inputs(run, prompts)
        refs = None
        anchored = a.regularizer == "anchor" and a.reg_weight > 0
        if anchored or s.pessimism > 0:
            # before the differentiable pass: the round anchor swaps the LoRA weights in place
            with torch.no_grad(), run.acc.autocast(), self.anchor_model() as ref_unet:
                refs = run.gen.sample(ref_unet, noise, emb, renoise=eps)
        *_, outs = sample_with_grad(run, prompts, inputs)
        with run.acc.autocast():
            sur = self.base_surrogate
            with frozen(sur):
                steps = torch.cat([torch.full((n,), k) for k in run.steps_1_2])
                x = torch.cat(outs)
                if a.equalize_sample_gradients:
                    x = equalize_sample_gradients(x)
                member_scores = sur(x, PromptEmbeds.cat([emb] * len(outs)), steps).float()
                ref_scores = None
                if s.pessimism > 0:
                    with torch.no_grad():
                        ref_scores = sur(torch.cat(refs), PromptEmbeds.cat([emb] * len(refs)), steps).float()
        scores = pessimistic(member_scores, s.pessimism, ref_scores)
        stats, loss = {}, torch.zeros((), device=noise.device)
        for k, coef in step_weights(run):
            sk = scores[(k - 1) * n:k * n]
            # Gathered statistics keep the normaliser identical on every process.
            self.norms[k].update(run.acc.gather(sk.detach()))
            loss = loss - coef * self.norms[k](sk, update=False).mean()
            stats[f"generator/surrogate_{k}step"] = float(sk.detach().mean())
            if member_scores.dim() == 2:  # how much the members disagree (on the move from the anchor's outputs)
                ref = None if ref_scores is None else ref_scores[(k - 1) * n:k * n]
                spread = member_spread(member_scores[(k - 1) * n:k * n].detach(), ref)
                stats[f"generator/surrogate_member_std_{k}step"] = float(spread.mean())
        if anchored:
            reg = sum(F.mse_loss(x.float(), r.float()) for x, r in zip(outs, refs))
            loss = loss + a.reg_weight * reg
            stats["generator/anchor"] = float(reg.detach())
        return loss, stats

    @contextlib.contextmanager
    def anchor_model(self):
        """The anchor's reference UNet (``lasro.anchor``): the initial model (the LoRA off), or the LoRA
        weights the round's generator steps started from."""
        if self.cfg.lasro.anchor == "round" and self._round_anchor is not None:
            with weights_swapped(self.run.lora_params, self._round_anchor):
                yield self.run.base_unet
        else:
            with adapters_off(self.run.base_unet) as base:
                yield base

    # --------------------------------------------------------- checkpoints
    def state(self) -> MethodState:
        sur = self.base_surrogate
        return MethodState(
            values={"last_pair_accuracy": self.last_pair_accuracy, "pair_accuracy_history": self.pair_accuracy_history,
                    "normalizers": {str(k): v.state_dict() for k, v in self.norms.items()}, "pretrain": self.pretrain},
            tensors={"surrogate": {n: p.detach().float().cpu().contiguous() for n, p in sur.named_parameters()
                                   if p.requires_grad}},
            objects={"surrogate_optimizer": self.sur_opt.state_dict(), "buffer": self.buffer.state_dict()})

    def load_state(self, state: MethodState) -> None:
        sur = state.tensors["surrogate"]
        missing = [n for n, p in self.base_surrogate.named_parameters() if p.requires_grad and n not in sur]
        if missing:
            raise ValueError(f"surrogate weights missing {missing[:3]} (config changed?)")
        with torch.no_grad():
            for n, p in self.base_surrogate.named_parameters():
                if n in sur:
                    p.copy_(sur[n].to(p.dtype))
        self.sur_opt.load_state_dict(state.objects["surrogate_optimizer"])
        self.buffer.load_state_dict(state.objects["buffer"])
        if self.reads_pixels and self.buffer.latents is not None:
            self.buffer.pixels = self.run.collector.decode_all(self.buffer.latents)
        v = state.values
        for k, norm in v["normalizers"].items():
            self.norms[int(k)].load_state_dict(norm)
        self.last_pair_accuracy = float(v.get("last_pair_accuracy", float("nan")))
        self.pair_accuracy_history = [float(x) for x in v.get("pair_accuracy_history", [])]
        self.pretrain = v["pretrain"]

    def growth_bytes(self) -> int:
        """What the replay buffer's latents add to a checkpoint until it is full."""
        per_sample = int(np.prod(self.run.gen.latent_shape(1))) * torch.finfo(self.run.gen.dtype).bits // 8
        return max(0, self.buffer.capacity - len(self.buffer)) * per_sample
