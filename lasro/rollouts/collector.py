"""Collection: sample the current generator, score the outputs with the true reward (counting every
query), gather them from all processes. Methods decide what to do with the samples."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lasro.rollouts.buffer import gather_samples
from lasro.rollouts.distributed import SharedDraws
from lasro.rollouts.overlap import BackgroundScorer

GROUP_KEY = "comparable_group"  # a pairwise reward's info: samples of different groups are never compared


@dataclass
class Collection:
    """Scored samples, gathered from every process, step-major (all 1-step outputs, then all 2-step).
    ``pixels``: their uint8 decodes, kept only when the collector was asked to (a pixel surrogate);
    ``on_policy``: which samples the generator itself would produce (no random t1, no perturbation)."""

    latents: torch.Tensor
    prompts: list[str]
    rewards: np.ndarray
    steps: np.ndarray
    pixels: torch.Tensor | None = None
    on_policy: np.ndarray | None = None  # None: all of them
    # which samples may be compared: a pairwise reward (e.g. human votes) scores an image only against its
    # pair, and says so in its info "comparable_group"; None: every same-prompt pair is comparable
    groups: np.ndarray | None = None

    def gather(self, idx: np.ndarray) -> tuple[torch.Tensor, list[str], torch.Tensor]:
        return gather_samples(self.latents, self.prompts, self.steps, idx)

    def reward_stats(self) -> dict:
        stats = {"train/reward_mean": float(np.mean(self.rewards))}
        for k in np.unique(self.steps):
            stats[f"train/reward_{k}step_mean"] = float(np.mean(self.rewards[self.steps == k]))
        return stats


class Collector:
    """Draws prompts, samples, decodes and scores (overlapped with sampling when
    ``exploration.overlap_scoring``), gathers; ``queries`` counts every true-reward query."""

    def __init__(self, acc, gen, unet, reward, draws: SharedDraws, embeds, train_prompts: list[str], exploration,
                 chunk: int):
        """``unet``: the generator's UNet with its LoRA, unwrapped from any distributed wrapper."""
        self.acc, self.gen, self.unet, self.reward, self.draws, self.embeds = acc, gen, unet, reward, draws, embeds
        self.train_prompts, self.ex, self.chunk = train_prompts, exploration, chunk
        self.steps_1_2 = [1, 2] if len(gen.timesteps) == 2 else [1]
        self.queries = 0
        self.keep_pixels = False  # set by a method whose surrogate reads decoded pixels

    def count(self, n: int) -> None:
        """Count ``n`` true-reward queries made outside ``collect`` (e.g. DRaFT's differentiable scoring)."""
        self.queries += n

    def draw_prompts(self) -> tuple[list[str], list[str]]:
        """This round's prompts, each repeated N_s times: the global list and this process's shard."""
        ex = self.ex
        chosen = self.draws.rng.choice(len(self.train_prompts), size=ex.prompts_per_round,
                                       replace=ex.prompts_per_round > len(self.train_prompts))
        chosen_prompts = [self.train_prompts[i] for i in chosen]
        local = chosen_prompts[self.draws.shard(ex.prompts_per_round // self.acc.num_processes)]
        return ([p for p in chosen_prompts for _ in range(ex.samples_per_prompt)],
                [p for p in local for _ in range(ex.samples_per_prompt)])

    def score_latents(self, latents: torch.Tensor, prompts: list[str], steps):
        """Decode once and score with the true reward (no gradient anywhere here): the uint8 pixels and
        the RewardOutput."""
        pixels = self.gen.decode_uint8(latents)
        meta = [{"steps": int(s)} for s in steps]
        return pixels, self.reward(self.gen.to_images(pixels), list(prompts), meta)

    def decode_all(self, latents: torch.Tensor) -> torch.Tensor:
        """uint8 decodes of many latents, in chunks (a resumed pixel surrogate's cache)."""
        return torch.cat([self.gen.decode_uint8(latents[i:i + self.chunk].to(self.acc.device))
                          for i in range(0, latents.shape[0], self.chunk)])

    def score_and_gather(self, outs: list[torch.Tensor], prompts: list[str], global_prompts: list[str],
                         local_rewards: np.ndarray | None = None,
                         local_pixels: torch.Tensor | None = None,
                         local_groups: np.ndarray | None = None) -> Collection:
        """Score this process's k-step outputs (unless ``local_rewards`` and ``local_pixels``, step-major,
        were computed while sampling) and gather them step by step, so every process holds every sample in
        the order one process would."""
        acc, n, k = self.acc, len(prompts), len(outs)
        if local_rewards is None:
            k_steps = np.repeat(np.arange(1, k + 1), n)
            local_pixels, out = self.score_latents(torch.cat(outs), prompts * k, k_steps)
            local_rewards, local_groups = out.scores, out.info.get(GROUP_KEY)
        latents = torch.cat([acc.gather(x.float().contiguous()).cpu() for x in outs])
        rewards = torch.cat([acc.gather(torch.from_numpy(r).to(acc.device)).cpu()
                             for r in np.split(local_rewards, k)]).numpy()
        steps = np.repeat(np.arange(1, k + 1), len(global_prompts))
        self.queries += len(rewards)
        pixels = None
        if self.keep_pixels:
            pixels = torch.cat([acc.gather(p.to(acc.device).contiguous()).cpu() for p in local_pixels.chunk(k)])
        groups = None
        if local_groups is not None:
            groups = torch.cat([acc.gather(torch.from_numpy(np.asarray(g, np.float64)).to(acc.device)).cpu()
                                for g in np.split(local_groups, k)]).numpy().astype(np.int64)
        return Collection(latents, global_prompts * k, rewards, steps, pixels, groups=groups)

    def sample_and_score(self, noise, prompts: list[str], eps, t1, perturb):
        """Sample in chunks; each chunk is decoded and scored (in a worker thread with
        ``exploration.overlap_scoring``) while the next one samples. Returns the k-step outputs, the local
        rewards, (when ``keep_pixels``, else None) the uint8 decodes and (for a pairwise reward, else None) the
        comparable groups, step-major, exactly as one unchunked pass would order them."""
        chunk, n = self.chunk, len(prompts)
        parts: list[list[torch.Tensor]] = []
        with BackgroundScorer(self.score_latents, enabled=self.ex.overlap_scoring) as scorer:
            for i in range(0, n, chunk):
                sl = slice(i, i + chunk)
                outs = self.gen.sample(self.unet, noise[sl], self.embeds(prompts[sl]),
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
                  if self.keep_pixels else None)  # full-size images are large: copy only if kept
        groups = None
        if any(GROUP_KEY in out.info for _, out in done):
            groups = np.concatenate([np.split(out.info[GROUP_KEY], k)[j] for j in range(k) for _, out in done])
        return outs, rewards, pixels, groups

    @torch.no_grad()
    def collect(self, explore: bool = True) -> Collection:
        """Sample the current generator (N_s noises per prompt; with ``explore``, LaSRO's off-policy
        exploration: optional random t1 and latent perturbation), score 1- and 2-step outputs, gather.
        ``explore=False``: on-policy samples only (the baselines)."""
        ex = self.ex
        global_prompts, prompts = self.draw_prompts()
        n = len(prompts)
        noise, eps = self.draws.noises(self.gen.latent_shape(n), two_step=len(self.steps_1_2) == 2)
        t1 = None
        if explore and ex.t1_range is not None and eps is not None:
            lo, hi = ex.t1_range
            t1 = torch.from_numpy(self.draws.integers(lo, hi + 1, n))
        perturb = None
        if explore and ex.perturb_std > 0:  # drawn up front: the same draws as perturbing after sampling
            global_index = torch.arange(n, device=noise.device) + self.acc.process_index * n
            mask = (global_index % 2 == 1).view(-1, 1, 1, 1).to(noise.dtype)
            perturb = [ex.perturb_std * mask * self.draws.randn(noise.shape) for _ in self.steps_1_2]
        outs, local_rewards, local_pixels, local_groups = self.sample_and_score(noise, prompts, eps, t1, perturb)
        c = self.score_and_gather(outs, prompts, global_prompts, local_rewards, local_pixels, local_groups)
        total = len(global_prompts)
        explored_1 = np.zeros(total, dtype=bool) if perturb is None else np.arange(total) % 2 == 1
        explored_2 = explored_1 | (t1 is not None)
        c.on_policy = ~np.concatenate([explored_1, explored_2][:len(self.steps_1_2)])
        return c
