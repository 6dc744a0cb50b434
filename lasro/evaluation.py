"""Held-out evaluation shared by training rounds, ``lasro eval`` and the demo build:
fixed noises, 1- and 2-step samples, mean true reward and the reward's extra metrics."""
from __future__ import annotations

import contextlib

import numpy as np
import torch
from PIL import Image


def fixed_noises(gen, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The start noises and re-noising noises of ``n`` samples, drawn from ``seed`` alone: the same for
    every model, step count and call, so two models' samples pair up one by one."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(gen.latent_shape(n), generator=g), torch.randn(gen.latent_shape(n), generator=g)


@torch.no_grad()
def score_samples(gen, reward, prompts: list[str], seed: int, steps=(1, 2), unet=None, chunk: int = 64,
                  autocast=None, judges: dict | None = None):
    """Per-sample scores of ``gen`` on ``prompts`` (one sample each, noises drawn from ``seed``).

    Returns ``(scores, images)``: ``scores[name][k]`` is an array over prompts for the reward ("reward"),
    its numeric extra metrics (e.g. "exact_match") and each judge ("LABEL/reward", "LABEL/<metric>");
    ``images[k]`` the decoded samples. The same noises serve every step count and every call with the
    same seed, so figures of two models (or a LoRA on and off) are paired sample by sample.
    """
    unet = unet if unet is not None else gen.unet
    autocast = autocast or contextlib.nullcontext
    noise, eps = fixed_noises(gen, len(prompts), seed)
    scores: dict[str, dict[int, np.ndarray]] = {}
    images: dict[int, list[Image.Image]] = {}
    scorers = {"": reward, **{f"{label}/": judge for label, judge in (judges or {}).items()}}
    for k in steps:
        parts: dict[str, list] = {}
        ims = []
        for i in range(0, len(prompts), chunk):
            sl = slice(i, i + chunk)
            with autocast():
                x = gen.sample(unet, noise[sl].to(gen.device), gen.encode_prompts(prompts[sl]),
                               timesteps=gen.timesteps[:k], renoise=[eps[sl].to(gen.device)])[-1]
            batch_images = gen.decode(x)
            for prefix, scorer in scorers.items():
                out = scorer(batch_images, list(prompts[sl]), [{"steps": int(k)}] * len(batch_images))
                parts.setdefault(prefix + "reward", []).append(np.asarray(out.scores, dtype=np.float64))
                for name, v in out.info.items():
                    if np.asarray(v).dtype.kind in "fiub":
                        parts.setdefault(prefix + name, []).append(np.asarray(v, dtype=np.float64))
            ims += batch_images
        for name, chunks in parts.items():
            scores.setdefault(name, {})[k] = np.concatenate(chunks)
        images[k] = ims
    return scores, images


def mean_metrics(scores: dict[str, dict[int, np.ndarray]]) -> dict[str, float]:
    """``{"{name}_{k}step_mean": ...}`` of ``score_samples``'s per-sample scores."""
    return {f"{name}_{k}step_mean": float(np.mean(v)) for name, by_k in scores.items() for k, v in by_k.items()}


def evaluate_generator(gen, reward, prompts: list[str], seed: int, steps=(1, 2), unet=None, chunk: int = 64,
                       autocast=None, judges: dict | None = None) -> tuple[dict, dict[int, list[Image.Image]]]:
    """Score ``gen`` on ``prompts`` (one sample each, noises drawn from ``seed``).

    Returns ``{"reward_{k}step_mean": ..., "{info}_{k}step_mean": ...}`` and the images per step
    count. ``judges`` (label -> reward) score the same images as ``"{label}/reward_{k}step_mean"``: other
    rewards than the one trained on, so over-optimisation of the training reward shows.
    """
    scores, images = score_samples(gen, reward, prompts, seed, steps, unet, chunk, autocast, judges)
    return mean_metrics(scores), images


def paired_evaluation(gen, reward, prompts: list[str], seed: int, steps=(1, 2), unet=None, chunk: int = 64,
                      autocast=None, judges: dict | None = None) -> dict:
    """``gen`` with its LoRA (``unet``, default ``gen.unet``) against the same model with the LoRA off, on the
    same prompts and noises: ``{"tuned": means, "initial": means, "gain": {metric_kstep: paired_gain}}``."""
    from lasro.generators.lora import adapters_off

    unet = unet if unet is not None else gen.unet
    kw = dict(seed=seed, steps=steps, chunk=chunk, autocast=autocast, judges=judges)
    tuned, _ = score_samples(gen, reward, prompts, unet=unet, **kw)
    with adapters_off(unet) as base_unet:
        initial, _ = score_samples(gen, reward, prompts, unet=base_unet, **kw)
    return {"tuned": mean_metrics(tuned), "initial": mean_metrics(initial),
            "gain": {f"{name}_{k}step": paired_gain(tuned[name][k], initial[name][k], prompts)
                     for name in tuned for k in tuned[name]}}


def paired_gain(after: np.ndarray, before: np.ndarray, groups: list[str], resamples: int = 2000,
                seed: int = 0) -> dict:
    """Mean of ``after - before`` (paired samples) and its 95% bootstrap interval.

    Resamples whole groups (the prompts): samples of one prompt share its difficulty, so resampling
    them one by one would understate the spread.
    """
    diff = np.asarray(after, dtype=np.float64) - np.asarray(before, dtype=np.float64)
    keys = sorted(set(groups))
    index = {key: i for i, key in enumerate(keys)}
    g = np.array([index[key] for key in groups])
    sums, counts = np.bincount(g, diff, len(keys)), np.bincount(g, minlength=len(keys)).astype(np.float64)
    pick = np.random.default_rng(seed).integers(0, len(keys), size=(resamples, len(keys)))
    boot = sums[pick].sum(1) / counts[pick].sum(1)
    lo, hi = np.quantile(boot, [0.025, 0.975])
    return {"mean": float(diff.mean()), "ci95": [float(lo), float(hi)]}
