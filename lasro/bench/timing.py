"""What the benchmarks share: timing, peak memory, and a config that leaves no run behind."""
from __future__ import annotations

import resource
import time

import torch


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux: KiB; whole-process peak RSS
    return kib / 1024


def timed(fn, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t


def quiet(cfg, tmp: str):
    """The config with logging into ``tmp`` and no trackers: benchmarks leave no run behind."""
    return cfg.model_copy(update={
        "optim": cfg.optim.model_copy(update={"gradient_accumulation_steps": 1}),
        "logging": cfg.logging.model_copy(update={"output_dir": tmp, "tensorboard": False, "wandb": False,
                                                  "progress": False}),
        "exploration": cfg.exploration.model_copy()})


