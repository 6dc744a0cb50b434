"""The training loop, the same for every method: set up, round 0 (the method's warm start and the first
evaluation), then rounds of {the method's update; evaluate when due; checkpoint when due} until the round
count or the true-reward query budget; then save the LoRA and run the paired final evaluation.

Every process runs the same control flow; prompts and noises are drawn for the global batch and sharded,
rewards gathered (``lasro.rollouts``), so N processes compute what one process with N times the batch
would. The method (``algorithm.method``) brings only its own update and state (``lasro.methods``).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import time

import numpy as np
import torch

from lasro.config import ConfigError, TrainConfig, config_to_dict
from lasro.evaluation import (before_after_picture, interval_metrics, mean_metrics, paired_evaluation,
                              score_samples, summary_lines)
from lasro.generators import FewStepGenerator, PromptEmbedCache
from lasro.images import format_score
from lasro.methods import method_class
from lasro.prompts import resolve_prompts
from lasro.report import write_report
from lasro.rewards import build_judges, build_reward, judge_tolerances
from lasro.rollouts import Collector, SharedDraws, multi_process_cpu
from lasro.training import checkpointing as ckpt
from lasro.training.judge_guard import JudgeGuard
from lasro.training.preemption import Preempted, StopRequests
from lasro.training.tracking import RunTracker

log = logging.getLogger("lasro")
GRID_MAX_ROWS = 16  # eval grids show at most this many prompts (rows)


class NonFiniteError(RuntimeError):
    """Training produced non-finite losses or gradients several steps in a row."""


class Trainer:
    """Fine-tunes ``cfg.model``'s LoRA with the method ``cfg.algorithm.method`` (a registered name or a
    ``package.module:Class`` path) toward ``cfg.reward``; ``train()`` runs the whole schedule."""

    def __init__(self, cfg: TrainConfig, accelerator=None, generator: FewStepGenerator | None = None):
        from accelerate import Accelerator

        self.cfg = cfg
        method_cls = method_class(cfg.algorithm.method)
        self.acc = accelerator or Accelerator(mixed_precision=cfg.mixed_precision, cpu=multi_process_cpu())
        self.is_main = self.acc.is_main_process
        world, rank = self.acc.num_processes, self.acc.process_index
        if cfg.exploration.prompts_per_round % world:
            raise ValueError(f"exploration.prompts_per_round ({cfg.exploration.prompts_per_round}) must be divisible "
                             f"by the number of processes ({world})")
        _seed_everything(cfg.seed + rank)
        self.train_prompts = resolve_prompts(cfg.prompts.train, "prompts.train")
        self.eval_prompts = resolve_prompts(cfg.prompts.eval, "prompts.eval")
        # resolved now so that a bad set fails before training, not after it
        self.final_eval_prompts = (resolve_prompts(cfg.prompts.final_eval, "prompts.final_eval")
                                   if cfg.prompts.final_eval else [])
        self.reward = build_reward(cfg.reward)
        method_cls.check_reward(self.reward)
        self.judges = build_judges(cfg.eval_rewards)
        self.guard = JudgeGuard(judge_tolerances(cfg.eval_rewards))
        self.eval_reward, self.eval_reward_label = self.reward, None
        if not getattr(self.reward.fn, "evaluates", True):  # people (reward: human) score training pairs only
            if not self.judges:
                raise ConfigError(f"reward {self.reward.name!r} cannot score the held-out evaluations (it asks "
                                  "people about training pairs only); name a judge in eval_rewards, e.g. "
                                  "[shapes_detector], to score them")
            self.eval_reward_label = next(iter(self.judges))
            self.eval_reward = self.judges[self.eval_reward_label]
            log.info("reward %r: the evaluations' reward is the judge %r", self.reward.name, self.eval_reward_label)

        self.gen = generator or FewStepGenerator.from_config(cfg.model)
        self.gen.to(self.acc.device)
        self.steps_1_2 = [1, 2] if len(self.gen.timesteps) == 2 else [1]
        self.chunk = max(8, cfg.optim.batch_size * 2)  # batch size of no-grad passes (scoring, evaluation)
        self.embeds = PromptEmbedCache(self.gen)
        self.draws = SharedDraws(cfg.seed, world, rank, self.acc.device)
        self.collector = Collector(self.acc, self.gen, self.gen.unet, self.reward, self.draws, self.embeds,
                                   self.train_prompts, cfg.exploration, self.chunk)
        self.round = 0
        self.method = method_cls(self)  # before the LoRA: a surrogate may copy the bare UNet
        self.lora_params = list(self.gen.add_lora(cfg.lora.rank, cfg.lora.alpha, cfg.lora.targets))
        if cfg.model.gradient_checkpointing:
            self.gen.unet.enable_gradient_checkpointing()
        self.gen_opt = torch.optim.AdamW(self.lora_params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
        self.unet, self.gen_opt = self.acc.prepare(self.gen.unet, self.gen_opt)
        self.method.setup()

        self._nonfinite = {"generator": 0, "surrogate": 0}
        self.in_warm_start = False  # resumed from a checkpoint taken during round 0's warm start
        self.stop = StopRequests()  # listens for SIGTERM / Ctrl-C while train() runs
        if hasattr(self.reward.fn, "should_stop"):  # a reward that waits (for people's votes) stops waiting too
            self.reward.fn.should_stop = lambda: self.stop.signum is not None
        self.elapsed = 0.0  # wall seconds of earlier sessions of this run (from a checkpoint)
        self.t_start = time.time()
        self.out = cfg.logging.output_dir
        wandb_cfg = config_to_dict(cfg) if cfg.logging.wandb else None
        self.tracker = RunTracker(self.out, cfg.logging.tensorboard, wandb_cfg, enabled=self.is_main)

    @property
    def base_unet(self):
        """The trained UNet unwrapped from any distributed wrapper (no-grad passes, LoRA switches)."""
        return self.acc.unwrap_model(self.unet)

    @property
    def reward_queries(self) -> int:
        """True-reward queries so far (every process counts the global number)."""
        return self.collector.queries

    @reward_queries.setter
    def reward_queries(self, value: int) -> None:
        self.collector.queries = value

    # ------------------------------------------------------ generator updates
    def generator_steps(self, count: int, loss_fn, draw=None, batches: list | None = None) -> dict:
        """``count`` optimiser steps of the LoRA on ``loss_fn(batch) -> (loss, stats)``, stats averaged.
        Step i's micro-batches are ``batches[i]`` if given, else ``optim.gradient_accumulation_steps`` of
        ``draw(optim.batch_size)`` (default: that many training prompts, ``draw_train_prompts``)."""
        agg: dict[str, float] = {}
        for i in range(count):
            for k, v in self.generator_step(loss_fn, draw, None if batches is None else batches[i]).items():
                agg[k] = agg.get(k, 0.0) + v / count
        return agg

    def generator_step(self, loss_fn, draw=None, batches: list | None = None) -> dict:
        """One optimiser step on ``loss_fn`` averaged over micro-batches (see ``generator_steps``)."""
        o = self.cfg.optim
        self.unet.train()
        self.gen_opt.zero_grad(set_to_none=True)
        agg: dict[str, float] = {}
        micros = len(batches) if batches is not None else o.gradient_accumulation_steps
        draw = draw or self.draw_train_prompts
        for micro in range(micros):
            batch = batches[micro] if batches is not None else draw(o.batch_size)
            sync = micro == micros - 1
            with contextlib.nullcontext() if sync else self.acc.no_sync(self.unet):
                loss, stats = loss_fn(batch)
                self.acc.backward(loss / micros)
            stats["generator/loss"] = float(loss.detach())
            for k, v in stats.items():
                agg[k] = agg.get(k, 0.0) + v / micros
        if not self.optimizer_step("generator", self.unet.parameters(), self.gen_opt, agg["generator/loss"]):
            agg["generator/skipped"] = 1.0
        return agg

    def draw_train_prompts(self, size: int) -> list[str]:
        """``size`` training prompts drawn from the shared stream (a generator micro-batch)."""
        return [self.train_prompts[i] for i in self.draws.integers(0, len(self.train_prompts), size)]

    def optimizer_step(self, name: str, params, opt, loss: float) -> bool:
        """Clip and step, unless the loss or gradient norm is non-finite: then skip with a warning,
        and stop with a clear error after ``algorithm.max_nonfinite_steps`` skips in a row.

        The decision is the same on every process: the gradient norm is taken after gradients are
        synchronised and the loss check is combined over processes. Under fp16 the GradScaler
        owns overflowing gradients: it skips the update and lowers its scale; only a non-finite
        loss counts then."""
        limit = self.cfg.optim.max_grad_norm
        norm = float(self.acc.clip_grad_norm_(params, limit if limit > 0 else float("inf")))
        loss_ok = bool(self.acc.gather(torch.tensor([float(np.isfinite(loss))], device=self.acc.device)).min() > 0)
        scaler = getattr(self.acc, "scaler", None)
        if loss_ok and (np.isfinite(norm) or scaler is not None):
            opt.step()
            self._nonfinite[name] = 0
            return True
        if scaler is not None:
            opt.step()  # lets the scaler skip the step and update its scale
        else:
            opt.zero_grad(set_to_none=True)
        self._nonfinite[name] = streak = self._nonfinite.get(name, 0) + 1
        allowed = self.cfg.algorithm.max_nonfinite_steps
        log.warning("round %d: non-finite %s loss %s / gradient norm %s: step skipped (%d in a row, stop at %d)",
                    self.round, name, loss, norm, streak, allowed)
        if streak >= allowed:
            found = ckpt.list_checkpoints(self.out)
            last = found[-1] if found else None
            raise NonFiniteError(
                f"{streak} {name} steps in a row had a non-finite loss or gradient (last loss {loss}, "
                f"gradient norm {norm}); stopping. Lower optim.lr / surrogate.lr_*, check the reward's "
                f"scale, or use mixed_precision: bf16 instead of fp16. "
                + (f"The last good checkpoint is {last}: resume with --resume latest." if last else
                   "No checkpoint was written yet."))
        return False

    def nonfinite_streak(self, name: str) -> int:
        """Skipped non-finite ``name`` steps in a row so far."""
        return self._nonfinite.get(name, 0)

    # ------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self, round_index: int) -> dict:
        """Held-out prompts, fixed seeds: mean true reward of 1- and 2-step samples with a 95% interval
        (bootstrapped over prompts; the reward's and every judge's), and a grid labelled with each row's
        prompt and each image's true reward."""
        cfg = self.cfg
        prompts = [p for p in self.eval_prompts for _ in range(cfg.prompts.eval_seeds)]
        scores, images = score_samples(self.gen, self.eval_reward, prompts, seed=10_000 + cfg.seed,
                                       steps=self.steps_1_2, unet=self.base_unet, chunk=self.chunk,
                                       autocast=self.acc.autocast, judges=self.judges)
        metrics = {**mean_metrics(scores), **interval_metrics(scores, prompts)}
        rows = min(len(self.eval_prompts), GRID_MAX_ROWS)  # the first prompts x every seed
        shown = rows * cfg.prompts.eval_seeds
        for k, ims in images.items():
            self.tracker.log_grid(f"eval_{k}step", ims[:shown], rows=rows, round_index=round_index,
                                  row_labels=self.eval_prompts[:rows],
                                  captions=[format_score(v) for v in scores["reward"][k][:shown]])
        return {f"eval/{k}": v for k, v in metrics.items()}

    def observe_judges(self, round_index: int, metrics: dict) -> list[str]:
        """The judge guard's check of one evaluation (``eval_rewards`` max_drop), decided on the main
        process's figures so that every process stops at the same round."""
        if not self.guard.active:
            return []
        figures = {k: metrics[k] for k in self.guard.keys(metrics)}
        if self.acc.num_processes > 1:
            from accelerate.utils import broadcast_object_list

            figures = broadcast_object_list([figures])[0]
        return self.guard.observe(round_index, figures, self.lora_params)

    @torch.no_grad()
    def final_evaluation(self) -> dict:
        """The tuned model against the initial one (its LoRA off) on ``prompts.final_eval`` x
        ``final_eval_seeds``, the same noises for both: means with their 95% intervals, the paired gain with
        a 95% interval bootstrapped over prompts, written to ``final_eval.json``; and
        ``samples/before_after_{k}step.png``, both models on prompts spanning the initial scores."""
        cfg = self.cfg
        prompts = [p for p in self.final_eval_prompts for _ in range(cfg.prompts.final_eval_seeds)]
        seed = 20_000 + cfg.seed  # not the per-round monitor's noises
        paired = paired_evaluation(self.gen, self.eval_reward, prompts, seed=seed, steps=self.steps_1_2,
                                   unet=self.base_unet, chunk=self.chunk, autocast=self.acc.autocast,
                                   judges=self.judges, keep_scores=True)
        scores = paired.pop("scores")
        result = {"prompts": cfg.prompts.final_eval, "samples": len(prompts), "seed": seed,
                  "round": self.round, "reward_queries": self.reward_queries, **paired,
                  **({} if self.eval_reward_label is None else {"reward_scored_by": self.eval_reward_label}),
                  **({} if self.guard.tripped is None else {"judge_guard": self.guard.tripped})}
        path = os.path.join(self.out, "final_eval.json")
        with open(path + ".tmp", "w") as f:
            json.dump(result, f, indent=1)
        os.replace(path + ".tmp", path)
        pictures = []
        for k in self.steps_1_2:
            picture = before_after_picture(self.gen, prompts, seed, scores, k, unet=self.base_unet,
                                           chunk=self.chunk, autocast=self.acc.autocast)
            pictures.append(self.tracker.save_picture(f"before_after_{k}step", picture))
        self.tracker.plot_reward_curve()  # now with the final figures
        log.info("final evaluation, %d samples, the tuned model against the initial one on the same noises "
                 "(95%% intervals over prompts):\n  %s\n  written: %s", len(prompts),
                 "\n  ".join(summary_lines(result)), ", ".join([path] + [p for p in pictures if p]))
        return result

    # ----------------------------------------------------------- checkpoints
    def save_checkpoint(self, pre: int | None = None) -> str | None:
        return ckpt.save_checkpoint(self, pre)

    def load_checkpoint(self, resume: str) -> bool:
        """Restore ``resume`` (``latest`` or a folder); False when ``latest`` found none (a fresh start)."""
        return ckpt.load_checkpoint(self, resume)

    def warm_start_point(self, progress: int, due: bool) -> None:
        """A safe point inside a method's warm start, ``progress`` units of work in (increasing)."""
        self.safe_point(due, pre=progress)

    def safe_point(self, due: bool, pre: int | None = None) -> None:
        """Every process at the same point: write a checkpoint if ``due``, and stop here (after writing one)
        when a stop was requested on any process."""
        signum = self.stop.agreed(self.acc)
        path = self.save_checkpoint(pre) if due or signum else None
        if signum:
            raise Preempted(signum, path)

    # ------------------------------------------------------------------ loop
    def wall_seconds(self) -> float:
        """Training time over all sessions of this run (resumes included)."""
        return self.elapsed + time.time() - self.t_start

    def _log(self, row: dict) -> dict:
        row = {"round": self.round, "reward_queries": self.reward_queries, **row,
               "time/wall_seconds": self.wall_seconds()}
        self.tracker.log_round(row)
        return row

    def budget_spent(self) -> bool:
        """Whether ``algorithm.max_reward_queries`` (0: no budget) has been reached."""
        budget = self.cfg.algorithm.max_reward_queries
        return budget > 0 and self.reward_queries >= budget

    def _eval_due(self, round_index: int, queries_before: int) -> bool:
        """Every ``logging.eval_every_queries`` true-reward queries when set (the round that crosses each
        multiple), else every ``logging.eval_every`` rounds."""
        every = self.cfg.logging.eval_every_queries
        if every > 0:
            return self.reward_queries // every > queries_before // every
        return round_index % self.cfg.logging.eval_every == 0

    def train(self, resume: str | None = None) -> list[dict]:
        """Run the schedule (from ``resume``: ``latest`` or a checkpoint folder); the logged rows. SIGTERM or
        Ctrl-C during it: a checkpoint at the next safe point, then ``Preempted``."""
        with self.stop:
            return self._train(resume)

    def _train(self, resume: str | None) -> list[dict]:
        from tqdm.auto import tqdm

        cfg, a = self.cfg, self.cfg.algorithm
        rows: list[dict] = []
        self.t_start = time.time()
        resumed = bool(resume) and self.load_checkpoint(resume)
        if not resumed:
            ckpt.check_disk(self)
        if not resumed or self.in_warm_start:
            stats = self.method.warm_start()
            self.in_warm_start = False
            stats.update(self.evaluate(0))
            self.observe_judges(0, stats)  # the baseline
            rows.append(self._log(stats))
            self.save_checkpoint()
        shown = ("eval/reward_2step_mean", *self.method.logged_progress)
        bar = tqdm(range(self.round + 1, a.rounds + 1), desc=f"{self.method.name} rounds", initial=self.round,
                   total=a.rounds, disable=not (self.is_main and cfg.logging.progress))
        for r in bar:
            if self.budget_spent() or self.guard.tripped:  # (tripped: a resumed run that a judge had stopped)
                break
            self.round = r
            queries_before = self.reward_queries
            stats = self.method.train_round(r)
            last = r == a.rounds or self.budget_spent()
            violations = []
            if self._eval_due(r, queries_before) or last:
                stats.update(self.evaluate(r))
                violations = self.observe_judges(r, stats)
            if violations:
                stats["judge_guard/tripped"] = 1.0
            rows.append(self._log(stats))
            if violations:
                self.guard.restore(self.lora_params)
                log.warning("round %d: %s. Stopping: the run's LoRA is round %d's, the last evaluation where every "
                            "guarded judge held (eval_rewards max_drop)", r, "; ".join(violations),
                            self.guard.last_held)
                self.save_checkpoint()
                break
            bar.set_postfix({k.split("/")[-1]: f"{v:.3g}" for k, v in stats.items() if k in shown})
            due = r % cfg.logging.checkpoint_every == 0 or last
            if last:  # a stop asked for in the last round: the run ends anyway
                self.save_checkpoint()
            else:
                try:
                    self.safe_point(due)
                except Preempted:
                    bar.close()
                    raise
        bar.close()
        if self.is_main:
            self.gen.save_lora(os.path.join(self.out, "lora"))
            if self.final_eval_prompts:
                self.final_evaluation()
        self.acc.wait_for_everyone()
        self.tracker.close()
        if self.is_main:
            try:  # a person's summary of the run; never fails the run
                write_report(self.out, config=config_to_dict(cfg),
                             environment={"device": str(self.acc.device), "processes": self.acc.num_processes,
                                          "mixed_precision": cfg.mixed_precision,
                                          **({"gpu": torch.cuda.get_device_name(self.acc.device)}
                                             if self.acc.device.type == "cuda" else {})})
            except Exception as e:  # noqa: BLE001
                log.warning("report.html not written: %s: %s", type(e).__name__, e)
        return rows


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
