"""Held-out evaluation shared by training rounds, ``lasro eval`` and the demo build:
fixed noises, 1- and 2-step samples, mean true reward and the reward's extra metrics, intervals
bootstrapped over prompts, and the before/after picture of the paired final evaluation."""
from __future__ import annotations

import contextlib

import numpy as np
import torch
from PIL import Image

from lasro.images import format_change, format_score, labelled_grid


def fixed_noises(gen, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The start noises and re-noising noises of ``n`` samples, drawn from ``seed`` alone: the same for
    every model, step count and call, so two models' samples pair up one by one."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(gen.latent_shape(n), generator=g), torch.randn(gen.latent_shape(n), generator=g)


@torch.no_grad()
def score_samples(gen, reward, prompts: list[str], seed: int, steps=(1, 2), unet=None, chunk: int = 64,
                  autocast=None, judges: dict | None = None, keep_images: bool = True):
    """Per-sample scores of ``gen`` on ``prompts`` (one sample each, noises drawn from ``seed``).

    Returns ``(scores, images)``: ``scores[name][k]`` is an array over prompts for the reward ("reward"),
    its numeric extra metrics (e.g. "exact_match") and each judge ("LABEL/reward", "LABEL/<metric>");
    ``images[k]`` the decoded samples (``{}`` with ``keep_images=False``: ``render_samples`` redraws any of
    them from the same noises). The same noises serve every step count and every call with the
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
            if keep_images:
                ims += batch_images
        for name, chunks in parts.items():
            scores.setdefault(name, {})[k] = np.concatenate(chunks)
        if keep_images:
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


def render_samples(gen, prompts: list[str], seed: int, indices: list[int], k: int, unet=None, chunk: int = 64,
                   autocast=None) -> list[Image.Image]:
    """Samples ``indices`` of ``score_samples(gen, ..., prompts, seed)`` at ``k`` steps, drawn again from the
    same noises (so a few can be shown without keeping every image of a large evaluation)."""
    unet = unet if unet is not None else gen.unet
    autocast = autocast or contextlib.nullcontext
    noise, eps = fixed_noises(gen, len(prompts), seed)
    idx = torch.as_tensor(list(indices), dtype=torch.long)
    out: list[Image.Image] = []
    for i in range(0, len(idx), chunk):
        sl = idx[i:i + chunk]
        with autocast():
            x = gen.sample(unet, noise[sl].to(gen.device), gen.encode_prompts([prompts[j] for j in sl.tolist()]),
                           timesteps=gen.timesteps[:k], renoise=[eps[sl].to(gen.device)])[-1]
        out += gen.decode(x)
    return out


def _group_bootstrap(values: np.ndarray, groups: list[str], resamples: int, seed: int) -> tuple[float, float]:
    """95% percentile interval of the mean of ``values``, resampling whole groups."""
    keys = sorted(set(groups))
    index = {key: i for i, key in enumerate(keys)}
    g = np.array([index[key] for key in groups])
    sums, counts = np.bincount(g, values, len(keys)), np.bincount(g, minlength=len(keys)).astype(np.float64)
    pick = np.random.default_rng(seed).integers(0, len(keys), size=(resamples, len(keys)))
    boot = sums[pick].sum(1) / counts[pick].sum(1)
    lo, hi = np.quantile(boot, [0.025, 0.975])
    return float(lo), float(hi)


def mean_interval(values: np.ndarray, groups: list[str], resamples: int = 2000, seed: int = 0) -> list[float]:
    """95% bootstrap interval ``[low, high]`` of the mean of ``values``, resampling whole groups (prompts);
    with a single group, the samples themselves. Always contains the mean."""
    values = np.asarray(values, dtype=np.float64)
    groups = list(groups) if len(set(groups)) > 1 else [str(i) for i in range(len(values))]
    lo, hi = _group_bootstrap(values, groups, resamples, seed)
    mean = float(values.mean())
    return [min(lo, mean), max(hi, mean)]


def is_reward_name(name: str) -> bool:
    """The training reward ("reward") or a judge's ("LABEL/reward"), not an extra metric."""
    return name == "reward" or name.endswith("/reward")


def interval_metrics(scores: dict[str, dict[int, np.ndarray]], groups: list[str]) -> dict[str, float]:
    """``{"{name}_{k}step_ci95_low": ..., "..._high": ...}``: ``mean_interval`` of the reward and of every
    judge (bootstrapped over ``groups``, the prompts of the samples)."""
    out = {}
    for name, by_k in scores.items():
        if is_reward_name(name):
            for k, v in by_k.items():
                out[f"{name}_{k}step_ci95_low"], out[f"{name}_{k}step_ci95_high"] = mean_interval(v, groups)
    return out


def paired_evaluation(gen, reward, prompts: list[str], seed: int, steps=(1, 2), unet=None, chunk: int = 64,
                      autocast=None, judges: dict | None = None, keep_scores: bool = False) -> dict:
    """``gen`` with its LoRA (``unet``, default ``gen.unet``) against the same model with the LoRA off, on the
    same prompts and noises: ``{"tuned": means, "initial": means, "gain": {metric_kstep: paired_gain},
    "ci95": {"tuned"|"initial": {metric_kstep: [low, high]}}}`` (each mean's interval over prompts).
    ``keep_scores``: also ``"scores": {"tuned"|"initial": score_samples's per-sample scores}``."""
    from lasro.generators.lora import adapters_off

    unet = unet if unet is not None else gen.unet
    kw = dict(seed=seed, steps=steps, chunk=chunk, autocast=autocast, judges=judges, keep_images=False)
    tuned, _ = score_samples(gen, reward, prompts, unet=unet, **kw)
    with adapters_off(unet) as base_unet:
        initial, _ = score_samples(gen, reward, prompts, unet=base_unet, **kw)
    out = {"tuned": mean_metrics(tuned), "initial": mean_metrics(initial),
           "gain": {f"{name}_{k}step": paired_gain(tuned[name][k], initial[name][k], prompts)
                    for name in tuned for k in tuned[name]},
           "ci95": {label: {f"{name}_{k}step": mean_interval(v, prompts) for name, by_k in sc.items()
                            for k, v in by_k.items()}
                    for label, sc in (("tuned", tuned), ("initial", initial))}}
    if keep_scores:
        out["scores"] = {"tuned": tuned, "initial": initial}
    return out


def spread_samples(prompts: list[str], values: np.ndarray, count: int = 8) -> list[int]:
    """Up to ``count`` sample indices, one per prompt, whose prompts span the range of the per-prompt mean of
    ``values`` (its quantiles, lowest first); each prompt's first sample."""
    first: dict[str, int] = {}
    for i, p in enumerate(prompts):
        first.setdefault(p, i)
    means = {p: float(np.mean([v for q, v in zip(prompts, values) if q == p])) for p in first}
    ranked = sorted(first, key=lambda p: (means[p], first[p]))
    if len(ranked) <= count:
        return [first[p] for p in ranked]
    picks = np.unique(np.round(np.linspace(0, len(ranked) - 1, count)).astype(int))
    return [first[ranked[i]] for i in picks]


def before_after_picture(gen, prompts: list[str], seed: int, scores: dict, k: int, unet=None, chunk: int = 64,
                         autocast=None, count: int = 8, name: str = "reward") -> Image.Image:
    """The initial model (``unet``'s LoRA off) and the tuned one side by side on ``count`` of the paired
    evaluation's samples (the same prompts and noises): the first sample of prompts chosen to span the
    initial per-prompt mean ``name`` score, one row each (lowest initial score first), labelled with the
    prompt, each image with its score (the tuned one with its change).
    ``scores``: ``paired_evaluation(..., keep_scores=True)["scores"]``."""
    from lasro.generators.lora import adapters_off

    unet = unet if unet is not None else gen.unet
    before, after = scores["initial"][name][k], scores["tuned"][name][k]
    picked = spread_samples(prompts, before, count)
    idx = sorted(picked, key=lambda i: (before[i], picked.index(i)))  # rows by the initial score shown
    tuned_ims = render_samples(gen, prompts, seed, idx, k, unet, chunk, autocast)
    with adapters_off(unet) as base_unet:
        initial_ims = render_samples(gen, prompts, seed, idx, k, base_unet, chunk, autocast)
    images, captions, colors = [], [], []
    for j, i in enumerate(idx):
        change = after[i] - before[i]
        images += [initial_ims[j], tuned_ims[j]]
        captions += [format_score(before[i]), f"{format_score(after[i])} ({format_change(change)})"]
        colors += ["black", (26, 127, 55) if change > 0 else (180, 35, 24) if change < 0 else "black"]
    return labelled_grid(images, rows=len(idx), row_labels=[prompts[i] for i in idx], captions=captions,
                         column_headers=["initial", "tuned"], caption_colors=colors)


def paired_gain(after: np.ndarray, before: np.ndarray, groups: list[str], resamples: int = 2000,
                seed: int = 0) -> dict:
    """Mean of ``after - before`` (paired samples) and its 95% bootstrap interval.

    Resamples whole groups (the prompts): samples of one prompt share its difficulty, so resampling
    them one by one would understate the spread.
    """
    diff = np.asarray(after, dtype=np.float64) - np.asarray(before, dtype=np.float64)
    lo, hi = _group_bootstrap(diff, groups, resamples, seed)
    return {"mean": float(diff.mean()), "ci95": [lo, hi]}


def summary_lines(result: dict) -> list[str]:
    """A paired final evaluation (``final_eval.json``) as lines a person reads at the end of a run: for the
    reward, its parts, each judge and every exact-match, initial -> tuned and the paired gain with its 95%
    interval, at each step count (the other extra metrics stay in the file)."""
    lines = []
    for key, gain in result["gain"].items():
        name = key.rsplit("_", 1)[0]
        if not (name == "reward" or name.endswith("/reward") or name.startswith("reward/") or "exact_match" in name):
            continue
        before, after = result["initial"][f"{key}_mean"], result["tuned"][f"{key}_mean"]
        lo, hi = gain["ci95"]
        lines.append(f"{key:<40} {before:.3f} -> {after:.3f}   gain {gain['mean']:+.3f} [{lo:+.3f}, {hi:+.3f}]")
    return lines
