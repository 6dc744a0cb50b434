"""``lasro bench step``: the cost of one LaSRO generator step against a bare 2-step LoRA
forward+backward on the same batch (the floor any reward-backprop method pays).
``lasro bench overlap``: one collection round with the reward scored inline vs in a worker thread."""
from __future__ import annotations

import dataclasses
import resource
import statistics
import sys
import tempfile
import time

import torch


def _peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux: KiB; whole-process peak RSS
    return kib / 1024


def _timed(fn, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t


def _quiet(cfg, tmp: str):
    """The config with logging into ``tmp`` and no trackers: benchmarks leave no run behind."""
    return dataclasses.replace(
        cfg, optim=dataclasses.replace(cfg.optim, gradient_accumulation_steps=1),
        logging=dataclasses.replace(cfg.logging, output_dir=tmp, tensorboard=False, wandb=False, progress=False))


def bench_step(cfg, repeats: int = 3, warmup: int = 1) -> dict:
    from .trainer import LaSROTrainer

    with tempfile.TemporaryDirectory() as tmp:
        tr = LaSROTrainer(_quiet(cfg, tmp))
        dev = tr.acc.device
        prompts = tr.train_prompts[: cfg.optim.batch_size]
        prompts = (prompts * cfg.optim.batch_size)[: cfg.optim.batch_size]
        emb = tr.embeds(prompts)
        shape = tr.gen.latent_shape(len(prompts))

        def lasro_step():
            tr.gen_opt.zero_grad(set_to_none=True)
            loss, _ = tr.generator_loss(prompts)
            tr.acc.backward(loss)
            tr.gen_opt.step()

        def bare_step():
            tr.gen_opt.zero_grad(set_to_none=True)
            noise, eps = torch.randn(shape, device=dev), torch.randn(shape, device=dev)
            with tr.acc.autocast():
                x = tr.gen.sample(tr.unet, noise, emb, renoise=[eps])
            tr.acc.backward(sum(o.float().square().mean() for o in x))
            tr.gen_opt.step()

        for _ in range(warmup):
            lasro_step()
            bare_step()
        t_lasro = [_timed(lasro_step, dev) for _ in range(repeats)]
        t_bare = [_timed(bare_step, dev) for _ in range(repeats)]
        count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        lasro_s, bare_s = statistics.median(t_lasro), statistics.median(t_bare)
        return {
            "model": cfg.model.pretrained, "dtype": cfg.model.dtype, "device": str(dev),
            "resolution": tr.gen.resolution, "batch": len(prompts), "steps": len(tr.gen.timesteps),
            "unet_params_m": round(count(tr.base_unet) / 1e6, 2),
            "surrogate_params_m": round(count(tr.base_surrogate) / 1e6, 2),
            "regularizer": cfg.algorithm.regularizer, "repeats": repeats,
            "lasro_step_s": round(lasro_s, 4), "bare_2step_lora_fwd_bwd_s": round(bare_s, 4),
            "ratio": round(lasro_s / bare_s, 3), "peak_memory_mib": round(_peak_memory_mib(dev), 1),
            "torch_threads": torch.get_num_threads(), "python": sys.version.split()[0],
        }


def bench_overlap(cfg, repeats: int = 3, warmup: int = 1) -> dict:
    """Median seconds of ``collect`` (sample, decode, score, buffer) with scoring inline and overlapped,
    alternating the two so drift in machine load hits both alike."""
    from .trainer import LaSROTrainer

    with tempfile.TemporaryDirectory() as tmp:
        own = dataclasses.replace(cfg, exploration=dataclasses.replace(cfg.exploration))  # toggled below
        tr = LaSROTrainer(_quiet(own, tmp))
        dev = tr.acc.device

        def collect(overlap: bool):
            tr.cfg.exploration.overlap_scoring = overlap
            return _timed(lambda: tr.collect(0), dev)

        for _ in range(warmup):
            collect(False), collect(True)
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(repeats):
            for overlap in (False, True):
                times[overlap].append(collect(overlap))
        inline_s, overlap_s = statistics.median(times[False]), statistics.median(times[True])
        ex = cfg.exploration
        return {
            "model": cfg.model.pretrained, "reward": str(cfg.reward), "device": str(dev),
            "samples_per_round": ex.prompts_per_round * ex.samples_per_prompt * len(tr.steps_1_2),
            "chunk": tr._chunk, "repeats": repeats, "inline_s": round(inline_s, 4),
            "overlapped_s": round(overlap_s, 4), "speedup": round(inline_s / overlap_s, 3),
            "torch_threads": torch.get_num_threads(),
        }
