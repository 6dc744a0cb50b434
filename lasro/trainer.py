"""The LaSRO training loop on accelerate.

Schedule (METHOD.md): pre-train the surrogate on the initial generator's samples, then
rounds of {generator steps with the surrogate frozen; collect and score fresh samples;
surrogate steps on the replay buffer}. Every process runs the same control flow;
prompts and noises are sharded, rewards gathered, so the buffer is identical everywhere.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import shutil
import time

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from . import checkpoint as ckpt
from .buffer import ReplayBuffer, ranked_pairs
from .config import TrainConfig, config_to_dict
from .generators.few_step import FewStepGenerator, PromptEmbeds
from .normalizer import EMAScoreNormalizer
from .overlap import BackgroundScorer
from .prompts import resolve_prompts
from .rewards import build_judges, build_reward
from .sample_gradients import equalize_sample_gradients
from .surrogate import (LatentSurrogate, PixelSurrogate, SurrogateEnsemble, bradley_terry_loss, mean_score,
                        member_spread, pessimistic)
from .tracking import RunTracker

log = logging.getLogger("lasro")
GRID_MAX_ROWS = 16  # eval grids show at most this many prompts (rows)


def _multi_process_cpu() -> bool:
    """Launched as several processes (torchrun) on a machine without CUDA/XPU: accelerate needs
    ``cpu=True`` to pick its gloo multi-CPU backend instead of running each process alone."""
    xpu = hasattr(torch, "xpu") and torch.xpu.is_available()
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available() and not xpu


class NonFiniteError(RuntimeError):
    """Training produced non-finite losses or gradients several steps in a row."""


@contextlib.contextmanager
def frozen(module: torch.nn.Module):
    """Let gradients flow through ``module`` to its input without touching its weights."""
    trainable = [p for p in module.parameters() if p.requires_grad]
    for p in trainable:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in trainable:
            p.requires_grad_(True)


@contextlib.contextmanager
def adapters_off(unet):
    """The frozen initial model for the duration: the LoRA switched off (anchor and reference passes)."""
    unet.disable_adapters()
    try:
        yield unet
    finally:
        unet.enable_adapters()


@contextlib.contextmanager
def weights_swapped(params: list[torch.Tensor], values: list[torch.Tensor]):
    """``params`` hold ``values`` for the duration, then their own again (the round anchor's reference pass)."""
    own = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p, v in zip(params, values):
            p.copy_(v)
    try:
        yield
    finally:
        with torch.no_grad():
            for p, v in zip(params, own):
                p.copy_(v)


def build_surrogate(cfg: TrainConfig, gen: FewStepGenerator) -> LatentSurrogate | PixelSurrogate | SurrogateEnsemble:
    """``surrogate.space``: latent (the paper's UNet-encoder surrogate) or pixel (the ablation: a small
    CNN on VAE-decoded images); ``surrogate.ensemble`` > 1 builds that many, each initialised afresh."""
    if cfg.surrogate.ensemble > 1:
        return SurrogateEnsemble([build_one_surrogate(cfg, gen) for _ in range(cfg.surrogate.ensemble)])
    return build_one_surrogate(cfg, gen)


def build_one_surrogate(cfg: TrainConfig, gen: FewStepGenerator) -> LatentSurrogate | PixelSurrogate:
    s = cfg.surrogate
    if s.space == "pixel":
        return PixelSurrogate(gen.decode_pixels, gen.unet.config.cross_attention_dim, channels=s.pixel_channels,
                              layers=s.pixel_layers, step_embedding=s.step_embedding)
    model = LatentSurrogate(gen.unet, head_channels=s.head_channels or None, head_layers=s.head_layers,
                            timestep=s.timestep, step_embedding=s.step_embedding)
    if s.backbone == "lora":
        model.add_backbone_lora(s.lora_rank, s.lora_alpha)
    elif s.backbone == "frozen":
        for p in model.backbone_parameters():
            p.requires_grad_(False)
    return model


def surrogate_param_groups(cfg: TrainConfig, model: LatentSurrogate) -> list[dict]:
    backbone = {id(p) for p in model.backbone_parameters()}
    new = [p for p in model.parameters() if p.requires_grad and id(p) not in backbone]
    lora = [p for n, p in model.named_parameters() if p.requires_grad and id(p) in backbone]
    groups = [{"params": new, "lr": cfg.surrogate.lr_head}]
    if lora:
        groups.append({"params": lora, "lr": cfg.surrogate.lr_backbone})
    return groups


class LaSROTrainer:
    """LaSRO, and the shared machinery (collection, evaluation, logging, checkpoints, sharding) that the
    baselines in ``lasro.methods`` reuse by overriding ``warm_start`` and ``train_round``."""

    method = "lasro"
    uses_surrogate = True  # baselines that never build the surrogate set False

    def __init__(self, cfg: TrainConfig, accelerator=None, generator: FewStepGenerator | None = None):
        from accelerate import Accelerator

        self.cfg = cfg
        self.acc = accelerator or Accelerator(mixed_precision=cfg.mixed_precision, cpu=_multi_process_cpu())
        self.is_main = self.acc.is_main_process
        world, rank = self.acc.num_processes, self.acc.process_index
        if cfg.exploration.prompts_per_round % world:
            raise ValueError(f"exploration.prompts_per_round ({cfg.exploration.prompts_per_round}) must be divisible "
                             f"by the number of processes ({world})")
        self._seed_everything(cfg.seed + rank)
        self.train_prompts = resolve_prompts(cfg.prompts.train, "prompts.train")
        self.eval_prompts = resolve_prompts(cfg.prompts.eval, "prompts.eval")
        # resolved now so that a bad set fails before training, not after it
        self.final_eval_prompts = (resolve_prompts(cfg.prompts.final_eval, "prompts.final_eval")
                                   if cfg.prompts.final_eval else [])
        self.reward = build_reward(cfg.reward)
        self.check_reward()
        self.judges = build_judges(cfg.eval_rewards)

        self.gen = generator or FewStepGenerator.from_config(cfg.model)
        self.gen.to(self.acc.device)
        self.surrogate = build_surrogate(cfg, self.gen).to(self.acc.device) if self.uses_surrogate else None
        lora_params = self.gen.add_lora(cfg.lora.rank, cfg.lora.alpha, cfg.lora.targets)
        if cfg.model.gradient_checkpointing:
            self.gen.unet.enable_gradient_checkpointing()
        self.gen_opt = torch.optim.AdamW(lora_params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
        self.lora_params = list(lora_params)
        self._round_anchor: list[torch.Tensor] | None = None  # LoRA weights at the round's first generator step
        if self.surrogate is not None:
            self.sur_opt = torch.optim.AdamW(surrogate_param_groups(cfg, self.surrogate),
                                             weight_decay=cfg.surrogate.weight_decay)
            self.unet, self.sur_ddp, self.gen_opt, self.sur_opt = self.acc.prepare(
                self.gen.unet, self.surrogate, self.gen_opt, self.sur_opt)
        else:
            self.sur_ddp = self.sur_opt = None
            self.unet, self.gen_opt = self.acc.prepare(self.gen.unet, self.gen_opt)

        self.buffer = ReplayBuffer(cfg.buffer.capacity, cfg.buffer.recency_decay)
        self.norms = {k: EMAScoreNormalizer(cfg.algorithm.ema_decay) for k in (1, 2)}
        # Every draw (prompts, noises, t1, pairs) is made for the global batch by generators that are
        # identical on every process, which then takes its contiguous shard: N processes with
        # per-process batch b see exactly what one process with batch N*b sees.
        self.shared_rng = np.random.default_rng(cfg.seed)
        self.noise_gen = torch.Generator().manual_seed(cfg.seed * 1000)
        self.round = 0
        self.reward_queries = 0
        self._nonfinite = {"generator": 0, "surrogate": 0}
        self.last_pair_accuracy = float("nan")
        self.pair_accuracy_history: list[float] = []  # finite held-out accuracies, latest last (for the gate)
        self.elapsed = 0.0  # wall seconds of earlier sessions of this run (from a checkpoint)
        self._t_start = time.time()
        self._embed_cache: dict[str, PromptEmbeds] = {}
        self.out = cfg.logging.output_dir
        wandb_cfg = config_to_dict(cfg) if cfg.logging.wandb else None
        self.tracker = RunTracker(self.out, cfg.logging.tensorboard, wandb_cfg, enabled=self.is_main)
        self.steps_1_2 = [1, 2] if len(self.gen.timesteps) == 2 else [1]

    # ------------------------------------------------------------- utilities
    def check_reward(self) -> None:
        """Refuse a reward this method cannot use (raise ConfigError); LaSRO takes any reward."""

    @staticmethod
    def _seed_everything(seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)

    def _shard(self, local_size: int) -> slice:
        """This process's contiguous part of a global batch of ``local_size * num_processes``."""
        i = self.acc.process_index
        return slice(i * local_size, (i + 1) * local_size)

    def _randn(self, shape) -> torch.Tensor:
        """Standard normal noise of a local ``shape``, cut from the global draw."""
        world = (shape[0] * self.acc.num_processes,) + tuple(shape[1:])
        return torch.randn(world, generator=self.noise_gen)[self._shard(shape[0])].to(self.acc.device)

    def _integers(self, low: int, high: int, size: int) -> np.ndarray:
        """Local ``size`` integers in [low, high), cut from the global draw."""
        return self.shared_rng.integers(low, high, size=size * self.acc.num_processes)[self._shard(size)]

    def embeds(self, prompts: list[str]) -> PromptEmbeds:
        missing = sorted({p for p in prompts if p not in self._embed_cache})
        if missing:
            if len(self._embed_cache) > 4096:
                self._embed_cache.clear()
            e = self.gen.encode_prompts(missing)
            for i, p in enumerate(missing):
                self._embed_cache[p] = e.index(slice(i, i + 1))
        return PromptEmbeds.cat([self._embed_cache[p] for p in prompts])

    @property
    def base_unet(self):
        return self.acc.unwrap_model(self.unet)

    @property
    def base_surrogate(self) -> LatentSurrogate:
        return self.acc.unwrap_model(self.sur_ddp)

    @property
    def _chunk(self) -> int:
        """Batch size for no-grad passes (scoring, evaluation)."""
        return max(8, self.cfg.optim.batch_size * 2)

    def _score_latents(self, latents: torch.Tensor, prompts: list[str], steps):
        """Decode once and score with the true reward (no gradient anywhere here): the uint8 pixels (which a
        pixel surrogate's buffer keeps) and the RewardOutput."""
        pixels = self.gen.decode_uint8(latents)
        meta = [{"steps": int(s)} for s in steps]
        return pixels, self.reward(self.gen.to_images(pixels), list(prompts), meta)

    # ------------------------------------------------------------ collection
    def _draw_prompts(self) -> tuple[list[str], list[str]]:
        """This round's prompts, each repeated N_s times: the global list and this process's shard."""
        ex = self.cfg.exploration
        chosen = self.shared_rng.choice(len(self.train_prompts), size=ex.prompts_per_round,
                                        replace=ex.prompts_per_round > len(self.train_prompts))
        chosen_prompts = [self.train_prompts[i] for i in chosen]
        local = chosen_prompts[self._shard(ex.prompts_per_round // self.acc.num_processes)]
        return ([p for p in chosen_prompts for _ in range(ex.samples_per_prompt)],
                [p for p in local for _ in range(ex.samples_per_prompt)])

    def _score_and_gather(self, outs: list[torch.Tensor], prompts: list[str], global_prompts: list[str],
                          local_rewards: np.ndarray | None = None, local_pixels: torch.Tensor | None = None) -> dict:
        """Score this process's k-step outputs with the true reward (counted in ``reward_queries``) and gather
        them step by step, so every process holds every sample in the order one process would.
        ``local_rewards`` and ``local_pixels`` (step-major, given together) are scores and uint8 decodes already
        computed for ``outs``, e.g. while sampling; ``local_pixels`` may be None when the surrogate reads none.

        Returns the global ``latents``, ``prompts``, ``rewards``, ``steps`` and, for a surrogate that reads
        pixels, ``pixels``; step-major."""
        acc, n, k = self.acc, len(prompts), len(outs)
        if local_rewards is None:
            k_steps = np.repeat(np.arange(1, k + 1), n)
            local_pixels, out = self._score_latents(torch.cat(outs), prompts * k, k_steps)
            local_rewards = out.scores
        latents = torch.cat([acc.gather(x.float().contiguous()).cpu() for x in outs])
        rewards = torch.cat([acc.gather(torch.from_numpy(r).to(acc.device)).cpu()
                             for r in np.split(local_rewards, k)]).numpy()
        steps = np.repeat(np.arange(1, k + 1), len(global_prompts))
        self.reward_queries += len(rewards)
        got = {"latents": latents, "prompts": global_prompts * k, "rewards": rewards, "steps": steps}
        if self._surrogate_reads_pixels:
            got["pixels"] = torch.cat([acc.gather(p.to(acc.device).contiguous()).cpu() for p in local_pixels.chunk(k)])
        return got

    def _sample_and_score(self, noise, prompts: list[str], eps, t1, perturb):
        """Sample in chunks; each chunk is decoded and scored (in a worker thread with
        ``exploration.overlap_scoring``) while the next one samples. Returns the k-step outputs, the local
        rewards and (for a surrogate that reads pixels, else None) the uint8 decodes, step-major, exactly as
        one unchunked pass would order them."""
        chunk, n = self._chunk, len(prompts)
        parts: list[list[torch.Tensor]] = []
        with BackgroundScorer(self._score_latents, enabled=self.cfg.exploration.overlap_scoring) as scorer:
            for i in range(0, n, chunk):
                sl = slice(i, i + chunk)
                outs = self.gen.sample(self.base_unet, noise[sl], self.embeds(prompts[sl]),
                                       renoise=None if eps is None else [e[sl] for e in eps],
                                       t1=None if t1 is None else t1[sl])
                if perturb is not None:
                    outs = [x + p[sl].to(x.dtype) for x, p in zip(outs, perturb)]
                parts.append(outs)
                m = outs[0].shape[0]
                scorer.submit(torch.cat(outs), prompts[sl] * len(outs), np.repeat(np.arange(1, len(outs) + 1), m))
            done = scorer.results()
        k = len(parts[0])
        outs = [torch.cat([p[j] for p in parts]) for j in range(k)]
        # each chunk's results are step-major within the chunk: regroup them step-major over all chunks
        rewards = np.concatenate([np.split(out.scores, k)[j] for j in range(k) for _, out in done])
        pixels = (torch.cat([pix.chunk(k)[j] for j in range(k) for pix, _ in done])
                  if self._surrogate_reads_pixels else None)  # full-size images are large: copy only if kept
        return outs, rewards, pixels

    @staticmethod
    def reward_stats(rewards: np.ndarray, steps: np.ndarray) -> dict:
        stats = {"train/reward_mean": float(np.mean(rewards))}
        for k in np.unique(steps):
            stats[f"train/reward_{k}step_mean"] = float(np.mean(rewards[steps == k]))
        return stats

    @torch.no_grad()
    def collect(self, round_index: int, explore: bool = True) -> dict:
        """Sample the current generator off-policy (N_s noises per prompt, optional random t1 and
        latent perturbation), score 1- and 2-step outputs with the true reward, gather, buffer.
        ``explore=False``: on-policy samples only (the baselines)."""
        ex = self.cfg.exploration
        global_prompts, prompts = self._draw_prompts()
        n = len(prompts)
        noise = self._randn(self.gen.latent_shape(n))
        eps = [self._randn(self.gen.latent_shape(n))] if len(self.steps_1_2) == 2 else None
        t1 = None
        if explore and ex.t1_range is not None and eps is not None:
            lo, hi = ex.t1_range
            t1 = torch.from_numpy(self._integers(lo, hi + 1, n))
        perturb = None
        if explore and ex.perturb_std > 0:  # drawn up front: the same draws as perturbing after sampling
            global_index = torch.arange(n, device=noise.device) + self.acc.process_index * n
            mask = (global_index % 2 == 1).view(-1, 1, 1, 1).to(noise.dtype)
            perturb = [ex.perturb_std * mask * self._randn(noise.shape) for _ in self.steps_1_2]
        outs, local_rewards, local_pixels = self._sample_and_score(noise, prompts, eps, t1, perturb)
        got = self._score_and_gather(outs, prompts, global_prompts, local_rewards, local_pixels)
        latents, all_prompts, rewards, steps = got["latents"], got["prompts"], got["rewards"], got["steps"]
        pixels = got.get("pixels")
        stats = {}
        if self.surrogate is not None:
            self.last_pair_accuracy = self.pair_accuracy(latents, all_prompts, steps, rewards, pixels)
            stats["surrogate/pair_accuracy"] = self.last_pair_accuracy
            if np.isfinite(self.last_pair_accuracy):
                keep = self.cfg.algorithm.pair_accuracy_window
                self.pair_accuracy_history = (self.pair_accuracy_history + [self.last_pair_accuracy])[-keep:]
        self.buffer.add(latents.to(self.gen.dtype), all_prompts, rewards, steps, round_index, pixels=pixels)
        return {**stats, **self.reward_stats(rewards, steps)}

    @property
    def _surrogate_reads_pixels(self) -> bool:
        return getattr(self.surrogate, "reads_pixels", False)

    def _buffer_pixels(self, latents: torch.Tensor) -> torch.Tensor | None:
        """The uint8 decoded images a pixel-reading surrogate trains on (None for the latent surrogate)."""
        if not self._surrogate_reads_pixels:
            return None
        return torch.cat([self.gen.decode_uint8(latents[i:i + self._chunk].to(self.acc.device))
                          for i in range(0, latents.shape[0], self._chunk)])

    @torch.no_grad()
    def pair_accuracy(self, latents, prompts, steps, rewards, pixels: torch.Tensor | None = None) -> float:
        """Share of fresh (never trained on) same-prompt pairs the surrogate orders like the true reward."""
        win, lose = ranked_pairs(prompts, steps, rewards, self.cfg.surrogate.margin)
        if len(win) == 0:
            return float("nan")
        scores = []
        chunk = self._chunk
        for i in range(0, len(prompts), chunk):
            extra = {} if pixels is None else {"pixels": pixels[i:i + chunk]}
            with self.acc.autocast():
                scores.append(mean_score(self.base_surrogate(latents[i:i + chunk].to(self.acc.device), self.embeds(
                    prompts[i:i + chunk]), torch.as_tensor(steps[i:i + chunk]), **extra)).float().cpu())
        s = torch.cat(scores).numpy()
        return float(np.mean(s[win] > s[lose]))

    def gate_accuracy(self) -> float:
        """Mean held-out pair accuracy of the last ``algorithm.pair_accuracy_window`` collections (NaN
        until there are that many, or when the latest had no pair)."""
        w = self.cfg.algorithm.pair_accuracy_window
        recent = self.pair_accuracy_history[-w:]
        if len(recent) < w or not np.isfinite(self.last_pair_accuracy):
            return float("nan")
        return float(np.mean(recent))

    def _surrogate_trusted(self) -> bool:
        """Whether the held-out pair accuracy (``gate_accuracy``) clears ``algorithm.min_pair_accuracy``; the
        surrogate is measured on each collection before it trains on it, so this is never a training-set figure."""
        floor = self.cfg.algorithm.min_pair_accuracy
        return floor <= 0 or self.gate_accuracy() >= floor

    # ------------------------------------------------------------- surrogate
    def surrogate_step(self) -> float | None:
        n = self.cfg.surrogate.batch_pairs
        win, lose = self.buffer.sample_pairs(n * self.acc.num_processes, self.shared_rng, self.cfg.surrogate.margin)
        if len(win) == 0:
            return None  # identical on every process: the buffers are the same
        win, lose = win[self._shard(n)], lose[self._shard(n)]
        idx = np.concatenate([win, lose])
        lat, prompts, steps = self.buffer.gather(idx)
        pixels = self.buffer.gather_pixels(idx)
        extra = {} if pixels is None else {"pixels": pixels}
        self.sur_ddp.train()
        with self.acc.autocast():
            scores = self.sur_ddp(lat.to(self.acc.device), self.embeds(prompts), steps, **extra)
        loss = bradley_terry_loss(scores[:n].float(), scores[n:].float())
        self.sur_opt.zero_grad(set_to_none=True)
        self.acc.backward(loss)
        if not self._finite_step("surrogate", self.sur_ddp.parameters(), self.sur_opt, float(loss.detach())):
            return None
        return float(loss.detach())

    def train_surrogate(self, steps: int) -> float:
        losses = [l for l in (self.surrogate_step() for _ in range(steps)) if l is not None]
        if steps and not losses and not self._nonfinite["surrogate"]:
            log.warning("no surrogate step: the buffer holds no same-prompt pair with different rewards "
                        "(is the reward constant?)")
        return float(np.mean(losses)) if losses else float("nan")

    # ------------------------------------------------------------- generator
    def generator_inputs(self, prompts: list[str]):
        """Prompt embeddings and fresh noises for a generator pass: ``(embeds, noise, renoise)``."""
        n = len(prompts)
        emb = self.embeds(prompts)
        noise = self._randn(self.gen.latent_shape(n))
        eps = [self._randn(self.gen.latent_shape(n))] if len(self.steps_1_2) == 2 else None
        return emb, noise, eps

    def sample_with_grad(self, prompts: list[str], inputs=None):
        """The trained generator's 1-2 step outputs, differentiable in the LoRA, from ``inputs`` (default:
        fresh ``generator_inputs``): ``(embeds, noise, renoise, outs)``."""
        emb, noise, eps = inputs or self.generator_inputs(prompts)
        with self.acc.autocast():
            outs = self.gen.sample(self.unet, noise, emb, renoise=eps, stop_grad_at_t1=self.cfg.algorithm.stop_grad_at_t1)
        return emb, noise, eps, outs

    def generator_loss(self, prompts: list[str]) -> tuple[torch.Tensor, dict]:
        a = self.cfg.algorithm
        n = len(prompts)
        emb, noise, eps = inputs = self.generator_inputs(prompts)
        refs = None
        anchored = a.regularizer == "anchor" and a.reg_weight > 0
        if anchored or self.cfg.surrogate.pessimism > 0:
            # before the differentiable pass: the round anchor swaps the LoRA weights in place
            with torch.no_grad(), self.acc.autocast(), self.anchor_model() as ref_unet:
                refs = self.gen.sample(ref_unet, noise, emb, renoise=eps)
        *_, outs = self.sample_with_grad(prompts, inputs)
        with self.acc.autocast():
            sur = self.base_surrogate
            with frozen(sur):
                steps = torch.cat([torch.full((n,), k) for k in self.steps_1_2])
                x = torch.cat(outs)
                if a.equalize_sample_gradients:
                    x = equalize_sample_gradients(x)
                member_scores = sur(x, PromptEmbeds.cat([emb] * len(outs)), steps).float()
                ref_scores = None
                if self.cfg.surrogate.pessimism > 0:
                    with torch.no_grad():
                        ref_scores = sur(torch.cat(refs), PromptEmbeds.cat([emb] * len(refs)), steps).float()
        scores = pessimistic(member_scores, self.cfg.surrogate.pessimism, ref_scores)
        stats, loss = {}, torch.zeros((), device=noise.device)
        for k, coef in zip(self.steps_1_2, (a.c1, a.c2)):
            s = scores[(k - 1) * n:k * n]
            # Gathered statistics keep the normaliser identical on every process.
            self.norms[k].update(self.acc.gather(s.detach()))
            loss = loss - coef * self.norms[k](s, update=False).mean()
            stats[f"generator/surrogate_{k}step"] = float(s.detach().mean())
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
        """The anchor's reference UNet (``algorithm.anchor``): the initial model (the LoRA off), or the LoRA
        weights the round's generator steps started from."""
        if self.cfg.algorithm.anchor == "round" and self._round_anchor is not None:
            with weights_swapped(self.lora_params, self._round_anchor):
                yield self.base_unet
        else:
            with adapters_off(self.base_unet) as base:
                yield base

    def generator_batch(self, size: int):
        """One micro-batch for ``generator_loss``: here ``size`` training prompts (baselines draw samples)."""
        return [self.train_prompts[i] for i in self._integers(0, len(self.train_prompts), size)]

    def generator_steps(self, count: int, batches: list | None = None) -> dict:
        """``count`` generator steps, their stats averaged; ``batches[i]``: step i's micro-batches, if given."""
        agg: dict[str, float] = {}
        if self.cfg.algorithm.anchor == "round":
            self._round_anchor = [p.detach().clone() for p in self.lora_params]
        for i in range(count):
            for k, v in self.generator_step(None if batches is None else batches[i]).items():
                agg[k] = agg.get(k, 0.0) + v / count
        return agg

    def generator_step(self, batches: list | None = None) -> dict:
        """One optimiser step on ``generator_loss`` averaged over micro-batches: ``batches`` if given, else
        ``optim.gradient_accumulation_steps`` micro-batches drawn by ``generator_batch``."""
        o = self.cfg.optim
        self.unet.train()
        self.gen_opt.zero_grad(set_to_none=True)
        agg: dict[str, float] = {}
        micros = len(batches) if batches is not None else o.gradient_accumulation_steps
        for micro in range(micros):
            batch = batches[micro] if batches is not None else self.generator_batch(o.batch_size)
            sync = micro == micros - 1
            with contextlib.nullcontext() if sync else self.acc.no_sync(self.unet):
                loss, stats = self.generator_loss(batch)
                self.acc.backward(loss / micros)
            stats["generator/loss"] = float(loss.detach())
            for k, v in stats.items():
                agg[k] = agg.get(k, 0.0) + v / micros
        if not self._finite_step("generator", self.unet.parameters(), self.gen_opt, agg["generator/loss"]):
            agg["generator/skipped"] = 1.0
        return agg

    def _finite_step(self, name: str, params, opt, loss: float) -> bool:
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
        self._nonfinite[name] += 1
        streak, allowed = self._nonfinite[name], self.cfg.algorithm.max_nonfinite_steps
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

    # ------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self, round_index: int) -> dict:
        """Held-out prompts, fixed seeds: mean true reward of 1- and 2-step samples, and a grid."""
        from .evaluation import evaluate_generator

        cfg = self.cfg
        prompts = [p for p in self.eval_prompts for _ in range(cfg.prompts.eval_seeds)]
        metrics, images = evaluate_generator(self.gen, self.reward, prompts, seed=10_000 + cfg.seed,
                                             steps=self.steps_1_2, unet=self.base_unet, chunk=self._chunk,
                                             autocast=self.acc.autocast, judges=self.judges)
        rows = min(len(self.eval_prompts), GRID_MAX_ROWS)  # the first prompts x every seed
        for k, ims in images.items():
            self.tracker.log_grid(f"eval_{k}step", ims[:rows * cfg.prompts.eval_seeds], rows=rows,
                                  round_index=round_index)
        return {f"eval/{k}": v for k, v in metrics.items()}

    @torch.no_grad()
    def final_evaluation(self) -> dict:
        """The tuned model against the initial one (its LoRA off) on ``prompts.final_eval`` x
        ``final_eval_seeds``, the same noises for both: means, the paired gain with a 95% interval
        bootstrapped over prompts, written to ``final_eval.json``."""
        from .evaluation import mean_metrics, paired_gain, score_samples

        cfg = self.cfg
        prompts = [p for p in self.final_eval_prompts for _ in range(cfg.prompts.final_eval_seeds)]
        seed = 20_000 + cfg.seed  # not the per-round monitor's noises
        kw = dict(seed=seed, steps=self.steps_1_2, chunk=self._chunk, autocast=self.acc.autocast,
                  judges=self.judges)
        tuned, _ = score_samples(self.gen, self.reward, prompts, unet=self.base_unet, **kw)
        with adapters_off(self.base_unet) as base_unet:
            initial, _ = score_samples(self.gen, self.reward, prompts, unet=base_unet, **kw)
        result = {"prompts": cfg.prompts.final_eval, "samples": len(prompts), "seed": seed,
                  "round": self.round, "reward_queries": self.reward_queries,
                  "tuned": mean_metrics(tuned), "initial": mean_metrics(initial),
                  "gain": {f"{name}_{k}step": paired_gain(tuned[name][k], initial[name][k], prompts)
                           for name in tuned for k in tuned[name]}}
        path = os.path.join(self.out, "final_eval.json")
        with open(path + ".tmp", "w") as f:
            json.dump(result, f, indent=1)
        os.replace(path + ".tmp", path)
        log.info("final evaluation (%d samples): %s", len(prompts), json.dumps(result["gain"]))
        return result

    # ----------------------------------------------------------- checkpoints
    def save_checkpoint(self) -> str | None:
        """All processes enter (wait_for_everyone); the main process writes atomically.

        A failed write (e.g. a full disk) removes the partial folder and raises a CheckpointError
        that names the previous, intact checkpoint."""
        self.acc.wait_for_everyone()
        try:
            tmp = self._write_checkpoint_files()
        except Exception as e:  # noqa: BLE001 - torch.save raises RuntimeError, safetensors its own error
            shutil.rmtree(ckpt.tmp_dir(self.out, self.round), ignore_errors=True)
            found = ckpt.list_checkpoints(self.out)
            raise ckpt.CheckpointError(
                f"could not write the round-{self.round} checkpoint under {ckpt.checkpoint_dir(self.out)}: {e}. "
                + (f"The previous checkpoint {found[-1]} is intact: free space, then resume with --resume latest."
                   if found else "No earlier checkpoint exists.")) from e
        path = None
        if self.is_main:
            state = {"round": self.round, "reward_queries": self.reward_queries, "elapsed": self.wall_seconds(),
                     "last_pair_accuracy": self.last_pair_accuracy, "method": self.method,
                     "pair_accuracy_history": self.pair_accuracy_history,
                     "normalizers": {str(k): v.state_dict() for k, v in self.norms.items()},
                     "num_processes": self.acc.num_processes, "config": config_to_dict(self.cfg)}
            path = ckpt.commit(self.out, tmp, self.round, state, self.cfg.logging.checkpoints_total_limit)
        self.acc.wait_for_everyone()
        return path

    def _write_checkpoint_files(self) -> str:
        """Every file but state.json, into the temporary folder; returns it."""
        rank = self.acc.process_index
        tmp = ckpt.tmp_dir(self.out, self.round)
        if self.is_main:
            ckpt.begin(self.out, self.round)
            self.gen.save_lora(os.path.join(tmp, "generator_lora"))
            optimizers = {"generator": self.gen_opt.state_dict()}
            if self.surrogate is not None:
                sur = self.base_surrogate
                save_file({n: p.detach().float().cpu().contiguous() for n, p in sur.named_parameters()
                           if p.requires_grad}, os.path.join(tmp, "surrogate.safetensors"))
                optimizers["surrogate"] = self.sur_opt.state_dict()
            torch.save(optimizers, os.path.join(tmp, "optimizers.pt"))
            torch.save(self.buffer.state_dict(), os.path.join(tmp, "buffer.pt"))
        self.acc.wait_for_everyone()
        torch.save(self._rng_state(), os.path.join(tmp, f"rng-{rank}.pt"))
        self.acc.wait_for_everyone()
        return tmp

    def _rng_state(self) -> dict:
        return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
                "shared": self.shared_rng.bit_generator.state, "noise": self.noise_gen.get_state()}

    def load_checkpoint(self, resume: str) -> None:
        """Restore everything; with ``latest``, a corrupt newest checkpoint is named and the previous used."""
        candidates = ckpt.resume_candidates(self.out, resume)
        for i, path in enumerate(candidates):
            try:
                state, files = self._read_checkpoint(path)
                break
            except ckpt.CheckpointError as e:
                if i + 1 == len(candidates):
                    raise
                log.warning("%s; resuming from the previous checkpoint %s instead", e, candidates[i + 1])
        self._apply_checkpoint(path, state, files)

    def _read_checkpoint(self, path: str) -> tuple[dict, dict]:
        """Verify and read every file of a checkpoint before touching any state."""
        state = ckpt.verify(path)
        files: dict = {}
        try:
            files["lora"] = load_file(os.path.join(path, "generator_lora", "pytorch_lora_weights.safetensors"))
            if self.surrogate is not None:
                files["surrogate"] = load_file(os.path.join(path, "surrogate.safetensors"))
        except Exception as e:  # noqa: BLE001
            raise ckpt.CheckpointError(f"checkpoint {path} is corrupt: {e}") from e
        files["optimizers"] = ckpt.torch_load(os.path.join(path, "optimizers.pt"))
        files["buffer"] = ckpt.torch_load(os.path.join(path, "buffer.pt"))
        files["rng"] = ckpt.torch_load(os.path.join(path, f"rng-{self.acc.process_index}.pt"))
        return state, files

    def _apply_checkpoint(self, path: str, state: dict, files: dict) -> None:
        from diffusers.utils import convert_unet_state_dict_to_peft
        from peft import set_peft_model_state_dict

        if state["num_processes"] != self.acc.num_processes:
            raise ckpt.CheckpointError(f"checkpoint {path} was written by {state['num_processes']} process(es); "
                                       f"resume it with the same number (now {self.acc.num_processes})")
        if state.get("method", "lasro") != self.method:
            raise ckpt.CheckpointError(f"checkpoint {path} was written by method {state.get('method', 'lasro')!r}; "
                                       f"resume it with algorithm.method: {state.get('method', 'lasro')} (now {self.method!r})")
        lora = {k[len("unet."):]: v for k, v in files["lora"].items() if k.startswith("unet.")}
        set_peft_model_state_dict(self.base_unet, convert_unet_state_dict_to_peft(lora), adapter_name="default")
        if self.surrogate is not None:
            sur = files["surrogate"]
            missing = [n for n, p in self.base_surrogate.named_parameters() if p.requires_grad and n not in sur]
            if missing:
                raise ckpt.CheckpointError(f"checkpoint {path}: surrogate weights missing {missing[:3]} (config changed?)")
            with torch.no_grad():
                for n, p in self.base_surrogate.named_parameters():
                    if n in sur:
                        p.copy_(sur[n].to(p.dtype))
            self.sur_opt.load_state_dict(files["optimizers"]["surrogate"])
        self.gen_opt.load_state_dict(files["optimizers"]["generator"])
        self.buffer.load_state_dict(files["buffer"])
        if self._surrogate_reads_pixels and self.buffer.latents is not None:
            self.buffer.pixels = self._buffer_pixels(self.buffer.latents)
        rng = files["rng"]
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        torch.set_rng_state(rng["torch"])
        self.shared_rng.bit_generator.state = rng["shared"]
        self.noise_gen.set_state(rng["noise"])
        for k, v in state["normalizers"].items():
            self.norms[int(k)].load_state_dict(v)
        self.round, self.reward_queries = state["round"], state["reward_queries"]
        self.last_pair_accuracy = float(state.get("last_pair_accuracy", float("nan")))
        self.pair_accuracy_history = [float(v) for v in state.get("pair_accuracy_history", [])]
        self.elapsed, self._t_start = state["elapsed"], time.time()
        self.tracker.truncate_after(self.round)
        log.info("resumed from %s (round %d, %d reward queries)", path, self.round, self.reward_queries)

    # ------------------------------------------------------------------ loop
    def wall_seconds(self) -> float:
        """Training time over all sessions of this run (resumes included)."""
        return self.elapsed + time.time() - self._t_start

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

    def warm_start(self) -> dict:
        """Round 0 before the first evaluation: LaSRO pre-trains the surrogate on the initial generator."""
        a = self.cfg.algorithm
        for _ in range(a.pretrain_collect_rounds):
            self.collect(0)
        stats = self.collect(0)  # fresh samples: round-0 pair accuracy is held out
        stats["surrogate/loss"] = self.train_surrogate(a.pretrain_surrogate_steps)
        return stats

    def train_round(self, round_index: int) -> dict:
        """One round: generator steps against the frozen surrogate (unless gated), fresh collection,
        surrogate adaptation. Baselines override this with their own update."""
        a = self.cfg.algorithm
        if self._surrogate_trusted():
            gen_stats = self.generator_steps(a.generator_steps)
        else:
            gen_stats = {"generator/gated": 1.0}
            log.info("round %d: surrogate pair accuracy %.3f (mean of the last %d collections) < "
                     "algorithm.min_pair_accuracy %.3f: generator steps skipped, surrogate keeps training",
                     round_index, self.gate_accuracy(), a.pair_accuracy_window, a.min_pair_accuracy)
        stats = {**gen_stats, **self.collect(round_index)}
        stats["surrogate/loss"] = self.train_surrogate(a.surrogate_steps)
        return stats

    def train(self, resume: str | None = None) -> list[dict]:
        cfg, a = self.cfg, self.cfg.algorithm
        from tqdm.auto import tqdm

        rows: list[dict] = []
        self._t_start = time.time()
        if resume:
            self.load_checkpoint(resume)
        else:
            stats = self.warm_start()
            stats.update(self.evaluate(0))
            rows.append(self._log(stats))
            self.save_checkpoint()
        bar = tqdm(range(self.round + 1, a.rounds + 1), desc=f"{self.method} rounds", initial=self.round,
                   total=a.rounds, disable=not (self.is_main and cfg.logging.progress))
        for r in bar:
            if self.budget_spent():
                break
            self.round = r
            queries_before = self.reward_queries
            stats = self.train_round(r)
            last = r == a.rounds or self.budget_spent()
            if self._eval_due(r, queries_before) or last:
                stats.update(self.evaluate(r))
            rows.append(self._log(stats))
            bar.set_postfix({k.split("/")[-1]: f"{v:.3g}" for k, v in stats.items()
                             if k in ("eval/reward_2step_mean", "surrogate/pair_accuracy")})
            if r % cfg.logging.checkpoint_every == 0 or last:
                self.save_checkpoint()
        bar.close()
        if self.is_main:
            self.gen.save_lora(os.path.join(self.out, "lora"))
            if self.final_eval_prompts:
                self.final_evaluation()
        self.acc.wait_for_everyone()
        self.tracker.close()
        return rows
