"""Build the shapes demo model from scratch: an SDXL-architecture pipeline distilled for 1-2 steps.

Stages (each cached in the work folder, so an interrupted build resumes at the stage it was in):
1. data      render scenes of the train split, tokenizer over the domain's words
2. vae       AutoencoderKL (4x down, 4x16x16 latents) on the scenes
3. teacher   text_time UNet + two CLIP text encoders, epsilon prediction, 10 % prompt dropout, EMA
4. pairs     teacher samples (DDIM 10 steps, CFG) from fixed noises; the second-step targets
             come from the teacher re-run from the re-noised sample at t=499
5. student   copy of the teacher regressed onto those targets through lasro's own 1-2 step sampler
Then the pipeline (Euler-ancestral trailing scheduler, like SDXL-Turbo) is saved with
``save_pretrained`` and evaluated with ``shapes_detector``.
"""
from __future__ import annotations

import copy
import json
import logging
import math
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from lasro import shapes
from lasro.generators.tiny import assemble_sdxl_pipeline, build_text_encoders, build_unet, build_vae, turbo_scheduler

log = logging.getLogger("lasro.demo")

PACKAGED_MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shapes_sdxl")
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
TIME_IDS = [shapes.IMAGE_SIZE, shapes.IMAGE_SIZE, 0, 0, shapes.IMAGE_SIZE, shapes.IMAGE_SIZE]


@dataclass
class BuildSpec:
    """Sizes and step counts; ``scale`` shrinks every count (0.01 gives a seconds-long smoke build)."""

    seed: int = 0
    scale: float = 1.0
    layout: str = "grid2x2-shuffled"  # shapes.layout's placement (recorded so a cache of another layout is refused)
    scenes: int = 24000
    text_hidden: int = 64
    text_layers: int = 3
    max_tokens: int = 32
    vae_channels: tuple[int, ...] = (16, 32, 64)
    vae_steps: int = 1000
    vae_batch: int = 32
    vae_lr: float = 1e-3
    unet_channels: tuple[int, ...] = (32, 64, 128)
    attention_head_channels: int = 32  # channels per attention head (heads = block channels / this)
    min_snr_gamma: float = 5.0  # min-SNR loss weighting: focus the teacher on the noisy steps that set layout
    teacher_steps: int = 3000
    teacher_batch: int = 64
    teacher_lr: float = 5e-4
    prompt_dropout: float = 0.1
    ema_decay: float = 0.999
    teacher_sampling_steps: int = 10
    guidance: float = 3.0
    pairs: int = 6144
    student_steps: int = 1000
    student_batch: int = 64
    student_lr: float = 2e-4
    eval_prompts: int = 256

    def count(self, n: int, minimum: int = 2) -> int:
        return max(minimum, int(round(n * self.scale)))


# ------------------------------------------------------------------ tokenizer
def word_tokenizer(max_tokens: int):
    """A CLIPTokenizer whose BPE merges build every domain word into one token.

    Single characters stay in the vocabulary so any other text still tokenizes (as letters).
    Longer words' merge chains rank first, so a short word's merges never split a longer word.
    """
    from transformers import CLIPTokenizer

    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [","]
    vocab: dict[str, int] = {}
    for ch in letters:
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(ch + "</w>", len(vocab))
    merges: list[str] = []
    for word in sorted(shapes.vocabulary(), key=lambda w: (-len(w), w)):
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        while len(parts) > 1:
            pair = f"{parts[0]} {parts[1]}"
            if pair not in merges:
                merges.append(pair)
            parts = [parts[0] + parts[1]] + parts[2:]
            vocab.setdefault(parts[0], len(vocab))
    vocab[BOS] = len(vocab)
    vocab[EOS] = len(vocab)
    with tempfile.TemporaryDirectory() as d:  # CLIPTokenizer reads merges from a file
        merges_file = os.path.join(d, "merges.txt")
        with open(merges_file, "w", encoding="utf-8") as f:
            f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
        vocab_file = os.path.join(d, "vocab.json")
        with open(vocab_file, "w", encoding="utf-8") as f:
            json.dump(vocab, f)
        tok = CLIPTokenizer(vocab_file, merges_file, model_max_length=max_tokens, pad_token=EOS)
    for word in shapes.vocabulary():
        ids = tok(word, add_special_tokens=False).input_ids
        if len(ids) != 1:
            raise RuntimeError(f"tokenizer splits domain word {word!r} into {ids}")
    return tok


# --------------------------------------------------------------------- models
def build_models(spec: BuildSpec, tokenizer):
    """Random-init SDXL-architecture parts sized for 64 px scenes (built in this order: it fixes their weights)."""
    h = spec.text_hidden
    te1, te2 = build_text_encoders(tokenizer, h, spec.text_layers)
    vae = build_vae(spec.vae_channels, shapes.IMAGE_SIZE)
    u = tuple(spec.unet_channels)
    unet = build_unet(u, shapes.IMAGE_SIZE // 2 ** (len(spec.vae_channels) - 1), (h, h),
                      tuple(max(1, ch // spec.attention_head_channels) for ch in u),  # = heads (diffusers)
                      norm_num_groups=16)
    return vae, te1, te2, unet


def encode_text(te1, te2, ids: torch.Tensor):
    """SDXL's prompt encoding (penultimate hidden states of both encoders, pooled text of the second)."""
    o1 = te1(ids, output_hidden_states=True)
    o2 = te2(ids, output_hidden_states=True)
    hidden = torch.cat([o1.hidden_states[-2], o2.hidden_states[-2]], dim=-1)
    time_ids = torch.tensor([TIME_IDS], dtype=hidden.dtype).repeat(ids.shape[0], 1)
    return hidden, {"text_embeds": o2.text_embeds, "time_ids": time_ids}


def _tokenize(tokenizer, prompts: list[str]) -> torch.Tensor:
    return tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids


def _cosine(opt, total: int, warmup: int = 50):
    def f(step):
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
    return torch.optim.lr_scheduler.LambdaLR(opt, f)


class _Stage:
    """One training stage's loop: AdamW without weight decay, linear warm-up then cosine decay, gradients
    clipped to norm 1, and a log line every ~10 % with a running mean of the loss and elapsed time.

    ``params`` is what AdamW takes (parameters or parameter groups); ``adamw`` its other arguments.
    """

    def __init__(self, stage: str, total: int, params, **adamw):
        self.opt = torch.optim.AdamW(params, weight_decay=0.0, **adamw)
        self.sched = _cosine(self.opt, total)
        self.params = [p for group in self.opt.param_groups for p in group["params"]]
        self.stage, self.total, self.start, self.losses = stage, total, time.time(), []
        self.every = max(1, total // 10)

    def step(self, i: int, loss: torch.Tensor) -> None:
        """Back-propagate ``loss``, take the optimiser and schedule steps, log step ``i``."""
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        self.sched.step()
        self.losses.append(loss.item())
        if (i + 1) % self.every == 0 or i + 1 == self.total:
            log.info("%s %d/%d loss %.4f (%.0f s)", self.stage, i + 1, self.total,
                     float(np.mean(self.losses[-self.every:])), time.time() - self.start)


# --------------------------------------------------------------------- stages
def stage_data(spec: BuildSpec, rng: np.random.Generator):
    if spec.layout != shapes.LAYOUT:
        raise ValueError(f"this lasro renders the {shapes.LAYOUT!r} layout; the spec asks for {spec.layout!r}")
    n = spec.count(spec.scenes, 64)
    images, prompts = [], []
    for _ in range(n):
        img, prompt = shapes.sample_scene(rng, "train")
        images.append(np.asarray(img))
        prompts.append(prompt)
    pixels = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()  # uint8 N,3,64,64
    return {"pixels": pixels, "prompts": prompts}


def _to_unit(pixels_u8: torch.Tensor) -> torch.Tensor:
    return pixels_u8.float() / 127.5 - 1.0


def stage_vae(spec: BuildSpec, vae, data, gen: torch.Generator):
    """Reconstruction (MSE + L1) with a tiny KL term; returns the latent scaling factor."""
    steps = spec.count(spec.vae_steps)
    pixels = data["pixels"]
    loop = _Stage("vae", steps, vae.parameters(), lr=spec.vae_lr)
    vae.train()
    for i in range(steps):
        idx = torch.randint(len(pixels), (spec.vae_batch,), generator=gen)
        x = _to_unit(pixels[idx])
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen)
        y = vae.decode(z).sample
        kl = post.kl().mean() / x[0].numel()
        loss = F.mse_loss(y, x) + 0.1 * F.l1_loss(y, x) + 1e-4 * kl
        loop.step(i, loss)
    vae.eval()
    with torch.no_grad():
        means = torch.cat([vae.encode(_to_unit(pixels[i:i + 256])).latent_dist.mean
                           for i in range(0, min(len(pixels), 2048), 256)])
    vae.register_to_config(scaling_factor=float(1.0 / means.std()))
    return vae


@torch.no_grad()
def encode_latents(vae, pixels: torch.Tensor) -> torch.Tensor:
    parts = [vae.encode(_to_unit(pixels[i:i + 256])).latent_dist.mean for i in range(0, len(pixels), 256)]
    return torch.cat(parts) * vae.config.scaling_factor


def stage_teacher(spec: BuildSpec, unet, te1, te2, tokenizer, latents, prompts, alphas_cumprod, gen):
    """Epsilon-prediction training of UNet and text encoders; returns the EMA UNet."""
    steps = spec.count(spec.teacher_steps)
    ids_all = _tokenize(tokenizer, list(prompts))
    empty = _tokenize(tokenizer, [""])
    text_params = list(te1.parameters()) + list(te2.parameters())
    loop = _Stage("teacher", steps, [{"params": list(unet.parameters()), "lr": spec.teacher_lr},
                                     {"params": text_params, "lr": spec.teacher_lr / 2}])
    ema = copy.deepcopy(unet).requires_grad_(False)
    unet.train(), te1.train(), te2.train()
    for i in range(steps):
        idx = torch.randint(len(latents), (spec.teacher_batch,), generator=gen)
        x0 = latents[idx]
        ids = ids_all[idx].clone()
        drop = torch.rand(len(idx), generator=gen) < spec.prompt_dropout
        ids[drop] = empty
        hidden, added = encode_text(te1, te2, ids)
        t = torch.randint(0, 1000, (len(idx),), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        ab = alphas_cumprod[t].view(-1, 1, 1, 1)
        z = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
        pred = unet(z, t, encoder_hidden_states=hidden, added_cond_kwargs=added).sample
        snr = (ab / (1 - ab)).view(-1)
        weight = snr.clamp(max=spec.min_snr_gamma) / snr  # min-SNR-gamma for epsilon prediction
        loss = (weight * F.mse_loss(pred, noise, reduction="none").mean(dim=(1, 2, 3))).mean()
        loop.step(i, loss)
        decay = min(spec.ema_decay, (1 + i) / (10 + i))
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), unet.parameters()):
                pe.lerp_(p, 1 - decay)
    te1.eval(), te2.eval()
    return ema.eval()


@torch.no_grad()
def teacher_sample(teacher, z, t_start: int, hidden, added, uncond_hidden, uncond_added, spec: BuildSpec,
                   alphas_cumprod) -> torch.Tensor:
    """Deterministic DDIM (trailing timesteps, classifier-free guidance) from z at t_start to a clean latent."""
    n = spec.teacher_sampling_steps
    ts = [t for t in np.round(np.arange(1000, 0, -1000 / n)).astype(int) - 1 if t <= t_start]
    b = z.shape[0]
    h2 = torch.cat([uncond_hidden.expand(b, -1, -1), hidden])
    a2 = {k: torch.cat([uncond_added[k].expand(b, -1), v]) for k, v in added.items()}
    for k, t in enumerate(ts):
        tt = torch.full((2 * b,), int(t), dtype=torch.long)
        eps_u, eps_c = teacher(torch.cat([z, z]), tt, encoder_hidden_states=h2, added_cond_kwargs=a2).sample.chunk(2)
        eps = eps_u + spec.guidance * (eps_c - eps_u)
        ab = alphas_cumprod[t]
        x0 = (z - (1 - ab).sqrt() * eps) / ab.sqrt()
        ab_prev = alphas_cumprod[ts[k + 1]] if k + 1 < len(ts) else torch.tensor(1.0)
        z = ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * eps
    return z


def stage_pairs(spec: BuildSpec, teacher, te1, te2, tokenizer, generator, alphas_cumprod, gen, rng):
    """Fixed noises and train prompts -> teacher x0 at t=999 and teacher x0 from the re-noised t=499 point."""
    n = spec.count(spec.pairs, 16)
    prompts = shapes.sample_prompts("train", n, seed=int(rng.integers(2**31)))
    shape = generator.latent_shape(n)
    noise = torch.randn(shape, generator=gen)
    renoise = torch.randn(shape, generator=gen)
    t1 = generator.timesteps[1]
    with torch.no_grad():
        uh, ua = encode_text(te1, te2, _tokenize(tokenizer, [""]))
    x1s, x2s = [], []
    start = time.time()
    scale = generator._start_noise_scale(generator.timesteps[0])
    for i in range(0, n, 256):
        sl = slice(i, i + 256)
        with torch.no_grad():
            hidden, added = encode_text(te1, te2, _tokenize(tokenizer, prompts[sl]))
            x1 = teacher_sample(teacher, noise[sl] * scale, 999, hidden, added, uh, ua, spec, alphas_cumprod)
            ab = alphas_cumprod[t1]
            z1 = ab.sqrt() * x1 + (1 - ab).sqrt() * renoise[sl]
            x2 = teacher_sample(teacher, z1, t1, hidden, added, uh, ua, spec, alphas_cumprod)
        x1s.append(x1)
        x2s.append(x2)
    log.info("pairs %d teacher samples (%.0f s)", n, time.time() - start)
    return {"prompts": prompts, "noise": noise, "renoise": renoise, "x1": torch.cat(x1s), "x2": torch.cat(x2s)}


@torch.no_grad()
def evaluate_teacher(spec: BuildSpec, teacher, te1, te2, tokenizer, generator, reward, prompts, alphas_cumprod):
    """The multi-step teacher's detector figures (same noises as the student's evaluation)."""
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(generator.latent_shape(len(prompts)), generator=g)
    uh, ua = encode_text(te1, te2, _tokenize(tokenizer, [""]))
    scale = generator._start_noise_scale(generator.timesteps[0])
    scores, exact = [], []
    for i in range(0, len(prompts), 256):
        hidden, added = encode_text(te1, te2, _tokenize(tokenizer, prompts[i:i + 256]))
        x = teacher_sample(teacher, noise[i:i + 256] * scale, 999, hidden, added, uh, ua, spec, alphas_cumprod)
        out = reward(generator.decode(x), prompts[i:i + 256])
        scores.append(out.scores)
        exact.append(out.info["exact_match"])
    return {"reward_mean": float(np.mean(np.concatenate(scores))),
            "exact_match_mean": float(np.mean(np.concatenate(exact)))}


def stage_student(spec: BuildSpec, generator, pairs, gen):
    """Regress lasro's 1-step (t=999) and second-step (t=499) predictions onto the teacher's samples."""
    steps = spec.count(spec.student_steps)
    unet = generator.unet
    unet.requires_grad_(True).train()
    loop = _Stage("student", steps, unet.parameters(), lr=spec.student_lr)
    t0, t1 = generator.timesteps
    scale = generator._start_noise_scale(t0)
    alphas = generator.alphas_cumprod
    n = len(pairs["prompts"])
    for i in range(steps):
        idx = torch.randint(n, (spec.student_batch,), generator=gen)
        embeds = generator.encode_prompts([pairs["prompts"][j] for j in idx.tolist()])
        b = len(idx)
        x1 = generator.predict_x0(unet, pairs["noise"][idx] * scale, torch.full((b,), t0), embeds)
        ab = alphas[t1]
        z1 = ab.sqrt() * pairs["x1"][idx] + (1 - ab).sqrt() * pairs["renoise"][idx]
        x2 = generator.predict_x0(unet, z1, torch.full((b,), t1), embeds)
        loss = F.mse_loss(x1, pairs["x1"][idx]) + F.mse_loss(x2, pairs["x2"][idx])
        loop.step(i, loss)
    unet.requires_grad_(False).eval()


# ---------------------------------------------------------------------- build
def _cached(work: str, name: str, fn):
    """Run a stage once; its result is saved (atomically) in the work folder and reused on a rerun."""
    path = os.path.join(work, f"{name}.pt")
    if os.path.exists(path):
        log.info("stage %s: reusing %s", name, path)
        return torch.load(path, weights_only=True)  # tensors, numbers and strings: never unpickles objects
    start = time.time()
    out = fn()
    tmp = path + ".tmp"
    torch.save(out, tmp)
    os.replace(tmp, path)
    log.info("stage %s done in %.0f s", name, time.time() - start)
    return out


def _claim_work_folder(work: str, spec: BuildSpec) -> None:
    """The stage cache belongs to one BuildSpec; reusing it with other settings would mix builds."""
    os.makedirs(work, exist_ok=True)
    path = os.path.join(work, "spec.json")
    mine = json.loads(json.dumps(asdict(spec)))
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            theirs = json.load(f)
        if theirs != mine:
            changed = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            raise ValueError(f"work folder {work!r} holds stages of a build with other settings ({', '.join(changed)} "
                             "differ); pass another --work folder or delete this one")
    else:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(mine, f, indent=1)


def build(out: str, work: str, spec: BuildSpec) -> dict:
    """Run every stage and write the pipeline to ``out``; returns the build record."""
    from lasro.evaluation import evaluate_generator
    from lasro.generators.few_step import FewStepGenerator
    from lasro.rewards import build_reward
    from lasro.images import image_grid

    _claim_work_folder(work, spec)
    torch.manual_seed(spec.seed)
    rng = lambda k: np.random.default_rng([spec.seed, k])  # noqa: E731  (one stream per stage, so a
    gen = lambda k: torch.Generator().manual_seed(spec.seed * 1000 + k)  # noqa: E731  resumed build matches)
    started = time.time()
    tokenizer = word_tokenizer(spec.max_tokens)
    vae, te1, te2, unet = build_models(spec, tokenizer)
    alphas_cumprod = turbo_scheduler().alphas_cumprod.float()

    data = _cached(work, "data", lambda: stage_data(spec, rng(1)))
    vae_state = _cached(work, "vae", lambda: {
        "state": stage_vae(spec, vae, data, gen(2)).state_dict(), "scaling_factor": vae.config.scaling_factor})
    vae.load_state_dict(vae_state["state"])
    vae.register_to_config(scaling_factor=vae_state["scaling_factor"])
    vae.eval().requires_grad_(False)

    def teacher_fn():
        latents = encode_latents(vae, data["pixels"])
        ema = stage_teacher(spec, unet, te1, te2, tokenizer, latents, data["prompts"], alphas_cumprod, gen(3))
        return {"unet": ema.state_dict(), "te1": te1.state_dict(), "te2": te2.state_dict()}

    teacher_state = _cached(work, "teacher", teacher_fn)
    unet.load_state_dict(teacher_state["unet"])
    te1.load_state_dict(teacher_state["te1"])
    te2.load_state_dict(teacher_state["te2"])
    for m in (unet, te1, te2):
        m.eval().requires_grad_(False)
    teacher = copy.deepcopy(unet)

    generator = FewStepGenerator(assemble_sdxl_pipeline(vae, te1, te2, tokenizer, unet))
    reward = build_reward("shapes_detector")
    test_prompts = shapes.sample_prompts("test", spec.count(spec.eval_prompts, 8), seed=1234)
    teacher_figures = evaluate_teacher(spec, teacher, te1, te2, tokenizer, generator, reward, test_prompts,
                                       alphas_cumprod)
    log.info("teacher (DDIM %d steps, CFG %.1f) on %d test prompts: %s", spec.teacher_sampling_steps,
             spec.guidance, len(test_prompts), json.dumps(teacher_figures))
    pairs = _cached(work, "pairs", lambda: stage_pairs(spec, teacher, te1, te2, tokenizer, generator,
                                                       alphas_cumprod, gen(4), rng(4)))

    def student_fn():
        stage_student(spec, generator, pairs, gen(5))
        return generator.unet.state_dict()

    student_state = _cached(work, "student", student_fn)
    generator.unet.load_state_dict(student_state)

    os.makedirs(out, exist_ok=True)
    generator.pipe.save_pretrained(out)
    loaded = FewStepGenerator.from_pretrained(out)
    figures, images = evaluate_generator(loaded, reward, test_prompts, seed=0, steps=(1, 2))
    image_grid(images[2][:64], rows=8).save(os.path.join(out, "samples_2step.png"))
    record = {
        "command": " ".join(["lasro", "demo", "build"] + sys.argv[3:]) if sys.argv[1:3] == ["demo", "build"]
        else " ".join(sys.argv),
        "spec": asdict(spec),
        "minutes": round((time.time() - started) / 60, 1),
        "test_prompts": len(test_prompts),
        "eval": figures,
        "teacher_eval": teacher_figures,
        "torch": torch.__version__,
        "platform": platform.platform(),
        "threads": torch.get_num_threads(),
    }
    with open(os.path.join(out, "BUILD.json"), "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2)
    log.info("build done in %.1f min: %s", record["minutes"], json.dumps(figures))
    return record
