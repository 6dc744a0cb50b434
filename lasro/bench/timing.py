"""What the benchmarks share: timing, peak memory, and a config (and LaSRO trainer) that leaves no run behind."""
from __future__ import annotations

import contextlib
import resource
import tempfile
import time

import torch

from lasro.training import Trainer


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux: KiB; whole-process peak RSS
    return kib / 1024


def reset_peak(device: torch.device) -> None:
    """Start a new peak-memory reading: CUDA's allocator statistics, or on Linux the process's VmHWM."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")


def read_peak(device: torch.device) -> int:
    """Bytes at the peak since ``reset_peak``."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device)
    with open("/proc/self/status") as f:
        line = next(x for x in f if x.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


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




@contextlib.contextmanager
def lasro_trainer(cfg):
    """A LaSRO ``Trainer`` for ``cfg`` (whatever its method), logging into a folder removed afterwards."""
    with tempfile.TemporaryDirectory() as tmp:
        lasro_cfg = cfg.model_copy(update={"algorithm": cfg.algorithm.model_copy(update={"method": "lasro"})})
        yield Trainer(quiet(lasro_cfg, tmp))
