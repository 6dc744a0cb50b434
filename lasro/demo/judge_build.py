"""Build the shipped learned judge (``shapes_judge``): data the project generates, a small CNN fitted to it.

Data: the demo model's own 1- and 2-step samples on train prompts (the images a fine-tune starts from),
and rendered scenes, some with the errors few-step models make (blur, a colour blended toward another,
a faint ghost object, a dropped object). A share of the items is scored against another train prompt, so
that the judge has to read the prompt. Target: the mean of ``shapes_detector`` and ``shapes_fidelity``.
The judge is fitted with a soft-label cross-entropy and checked on held-out items of test-split prompts.
"""
from __future__ import annotations

import json
import logging
import os
import platform
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter

from lasro import shapes
from lasro.rewards.shapes_judge import WEIGHTS, JudgeNet, judge_scores, pil_pixels, prompt_vector

log = logging.getLogger("lasro.demo")


@dataclass
class JudgeSpec:
    samples: int = 4096  # demo-model samples (half at 1 step, half at 2)
    renders: int = 2048  # rendered scenes, two thirds of them with an error
    swap_fraction: float = 0.3  # items scored against another prompt
    steps: int = 2500
    batch: int = 128
    lr: float = 2e-3
    width: int = 32
    seed: int = 0


def _corrupt(objects: list, rng: np.random.Generator) -> Image.Image:
    """A render with one of the errors 1-2-step models make, or none (a third of the time)."""
    kind = rng.integers(6)
    if kind == 1 and len(objects) > 1:  # a dropped object
        drop = rng.integers(len(objects))
        objects = [o for i, o in enumerate(objects) if i != drop]
    image = shapes.render(objects)
    if kind == 2:  # blur
        image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.6, 1.6))))
    elif kind == 3:  # a colour blended toward another palette colour
        o = objects[rng.integers(len(objects))]
        other = list(shapes.COLOURS)[rng.integers(len(shapes.COLOURS))]
        mask = np.asarray(shapes.render([o]).convert("L")) < 250
        rgb = np.asarray(image).astype(np.float64)
        rgb[mask] = (1 - 0.5) * rgb[mask] + 0.5 * np.array(shapes.COLOURS[other])
        image = Image.fromarray(rgb.round().astype(np.uint8))
    elif kind == 4:  # a faint ghost object
        cx, cy = rng.uniform(10, 54, 2)
        ghost = shapes.SceneObject(list(shapes.COLOURS)[rng.integers(4)], shapes.SHAPES[rng.integers(3)], cx, cy, 14)
        image = Image.blend(image, shapes.render([*objects, ghost]), float(rng.uniform(0.2, 0.45)))
    return image


def _demo_samples(n: int, split: str, seed: int) -> tuple[list[Image.Image], list[str]]:
    from lasro.generators import FewStepGenerator
    from lasro.generators.loading import PACKAGED_MODEL

    gen = FewStepGenerator.from_pretrained(PACKAGED_MODEL)
    prompts = shapes.sample_prompts(split, n, seed)
    g = torch.Generator().manual_seed(seed)
    images = []
    for start in range(0, n, 64):
        chunk = prompts[start:start + 64]
        noise, eps = torch.randn(gen.latent_shape(len(chunk)), generator=g), torch.randn(gen.latent_shape(len(chunk)), generator=g)
        steps = gen.timesteps[: 1 + (start // 64) % 2]  # alternate 1- and 2-step chunks
        with torch.no_grad():
            x = gen.sample(gen.unet, noise, gen.encode_prompts(chunk), timesteps=steps, renoise=[eps])[-1]
        images += gen.decode(x)
    return images, prompts


def judge_data(spec: JudgeSpec, split: str = "train", scale: float = 1.0, seed: int | None = None):
    """(uint8 pixels [N, 3, 64, 64], prompts, targets in [0, 1]) for one split."""
    from lasro.rewards import build_reward

    seed = spec.seed if seed is None else seed
    rng = np.random.default_rng(seed)
    images, prompts = _demo_samples(max(64, int(spec.samples * scale)), split, seed)
    for _ in range(max(8, int(spec.renders * scale))):
        counts = shapes.random_composition(rng, split)
        images.append(_corrupt(shapes.layout(counts, rng), rng))
        prompts.append(shapes.prompt_for(counts))
    pool = shapes.split_prompts(split)
    prompts = [str(pool[rng.integers(len(pool))]) if rng.random() < spec.swap_fraction else p for p in prompts]
    detector, fidelity = build_reward("shapes_detector"), build_reward("shapes_fidelity")
    meta = [{}] * len(images)
    targets = 0.5 * detector(images, prompts, meta).scores + 0.5 * fidelity(images, prompts, meta).scores
    return pil_pixels(images).contiguous(), prompts, torch.from_numpy(targets).float()


def judge_metrics(net: JudgeNet, pixels, prompts, targets) -> dict:
    """Pearson r and MAE against the target, and the share of item pairs (targets ≥ 0.1 apart) ordered right."""
    pred = judge_scores(net, pixels, prompts).numpy()
    y = targets.numpy()
    rng = np.random.default_rng(0)
    a, b = rng.integers(len(y), size=(2, 20_000))
    keep = np.abs(y[a] - y[b]) >= 0.1
    right = np.sign(pred[a] - pred[b])[keep] == np.sign(y[a] - y[b])[keep]
    return {"items": len(y), "pearson_r": float(np.corrcoef(pred, y)[0, 1]), "mae": float(np.abs(pred - y).mean()),
            "pair_accuracy": float(right.mean()), "target_mean": float(y.mean())}


def build_judge(out: str, spec: JudgeSpec, scale: float = 1.0, command: str = "lasro demo build-judge") -> dict:
    """Generate the data, fit the judge, write judge.safetensors and BUILD.json to ``out``; return BUILD."""
    from safetensors.torch import save_file

    start = time.time()
    torch.manual_seed(spec.seed)
    pixels, prompts, targets = judge_data(spec, "train", scale)
    test = judge_data(spec, "test", scale * 0.25, seed=spec.seed + 1)
    log.info("judge data: %d train items, %d held-out (test prompts), %.0f s", len(prompts), len(test[1]),
             time.time() - start)
    net = JudgeNet(spec.width)
    opt = torch.optim.AdamW(net.parameters(), lr=spec.lr, weight_decay=1e-4)
    steps = max(1, int(spec.steps * scale))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, spec.lr, total_steps=steps, pct_start=0.1)
    vecs = prompt_vector(prompts)
    g = torch.Generator().manual_seed(spec.seed)
    for step in range(steps):
        idx = torch.randint(len(prompts), (spec.batch,), generator=g)
        x = pixels[idx].float() / 255
        if torch.rand((), generator=g) < 0.5:  # mirror: neither reward depends on left and right
            x = x.flip(3)
        loss = F.binary_cross_entropy_with_logits(net(x, vecs[idx]), targets[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 250 == 0 or step == steps - 1:
            log.info("judge step %d/%d: loss %.4f", step + 1, steps, loss.item())
    net.eval()
    build = {"spec": asdict(spec), "scale": scale, "parameters": sum(p.numel() for p in net.parameters()),
             "train": judge_metrics(net, pixels, prompts, targets), "held_out": judge_metrics(net, *test),
             "wall_seconds": round(time.time() - start, 1), "torch": torch.__version__,
             "machine": platform.machine(), "command": command}
    os.makedirs(out, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, os.path.join(out, WEIGHTS + ".tmp"))
    os.chmod(os.path.join(out, WEIGHTS + ".tmp"), 0o644)
    os.replace(os.path.join(out, WEIGHTS + ".tmp"), os.path.join(out, WEIGHTS))
    with open(os.path.join(out, "BUILD.json"), "w") as f:
        json.dump(build, f, indent=1)
    log.info("judge: held-out Pearson r %.3f, pair accuracy %.3f", build["held_out"]["pearson_r"],
             build["held_out"]["pair_accuracy"])
    return build
