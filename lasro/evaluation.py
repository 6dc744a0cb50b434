"""Held-out evaluation shared by training rounds, ``lasro eval`` and the demo build:
fixed noises, 1- and 2-step samples, mean true reward and the reward's extra metrics."""
from __future__ import annotations

import contextlib

import numpy as np
import torch
from PIL import Image


@torch.no_grad()
def evaluate_generator(gen, reward, prompts: list[str], seed: int, steps=(1, 2), unet=None, chunk: int = 64,
                       autocast=None, judges: dict | None = None) -> tuple[dict, dict[int, list[Image.Image]]]:
    """Score ``gen`` on ``prompts`` (one sample each, noises drawn from ``seed``).

    Returns ``{"reward_{k}step_mean": ..., "{info}_{k}step_mean": ...}`` and the images per step
    count. The same noises serve every step count, so 1- and 2-step figures are paired.
    ``judges`` (label -> reward) score the same images as ``"{label}/reward_{k}step_mean"``: other
    rewards than the one trained on, so over-optimisation of the training reward shows.
    """
    unet = unet if unet is not None else gen.unet
    autocast = autocast or contextlib.nullcontext
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(gen.latent_shape(len(prompts)), generator=g)
    eps = torch.randn(gen.latent_shape(len(prompts)), generator=g)
    metrics: dict = {}
    images: dict[int, list[Image.Image]] = {}
    scorers = {"": reward, **{f"{label}/": judge for label, judge in (judges or {}).items()}}
    for k in steps:
        scores: dict[str, list] = {prefix: [] for prefix in scorers}
        infos: dict[str, list] = {}
        ims = []
        for i in range(0, len(prompts), chunk):
            sl = slice(i, i + chunk)
            with autocast():
                x = gen.sample(unet, noise[sl].to(gen.device), gen.encode_prompts(prompts[sl]),
                               timesteps=gen.timesteps[:k], renoise=[eps[sl].to(gen.device)])[-1]
            batch_images = gen.decode(x)
            for prefix, scorer in scorers.items():
                out = scorer(batch_images, list(prompts[sl]), [{"steps": int(k)}] * len(batch_images))
                scores[prefix].append(out.scores)
                for name, v in out.info.items():
                    if np.asarray(v).dtype.kind in "fiub":
                        infos.setdefault(prefix + name, []).append(np.asarray(v, dtype=np.float64))
            ims += batch_images
        for prefix, parts in scores.items():
            metrics[f"{prefix}reward_{k}step_mean"] = float(np.mean(np.concatenate(parts)))
        for name, parts in infos.items():
            metrics[f"{name}_{k}step_mean"] = float(np.mean(np.concatenate(parts)))
        images[k] = ims
    return metrics, images
