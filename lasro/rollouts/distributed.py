"""Random draws shared by every process, each taking its contiguous shard.

Every draw (prompts, noises, t1, pairs, minibatch orders) is made for the global batch by generators
that are identical on every process; each process then keeps its part. So N processes with per-process
batch b see exactly what one process with batch N*b sees, and the buffers stay identical everywhere.
"""
from __future__ import annotations

import os

import numpy as np
import torch


def multi_process_cpu() -> bool:
    """Launched as several processes (torchrun) on a machine without CUDA/XPU: accelerate needs
    ``cpu=True`` to pick its gloo multi-CPU backend instead of running each process alone."""
    xpu = hasattr(torch, "xpu") and torch.xpu.is_available()
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available() and not xpu


class SharedDraws:
    """The run's shared random streams (numpy for indices, torch for noises) and sharding."""

    def __init__(self, seed: int, num_processes: int = 1, process_index: int = 0, device="cpu"):
        self.num_processes, self.process_index, self.device = num_processes, process_index, device
        self.rng = np.random.default_rng(seed)
        self.noise_gen = torch.Generator().manual_seed(seed * 1000)

    def shard(self, local_size: int) -> slice:
        """This process's contiguous part of a global batch of ``local_size * num_processes``."""
        i = self.process_index
        return slice(i * local_size, (i + 1) * local_size)

    def randn(self, shape) -> torch.Tensor:
        """Standard normal noise of a local ``shape``, cut from the global draw."""
        world = (shape[0] * self.num_processes,) + tuple(shape[1:])
        return torch.randn(world, generator=self.noise_gen)[self.shard(shape[0])].to(self.device)

    def noises(self, shape, two_step: bool) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """A sampler's inputs: the start noise, and (for 2 steps) the re-noising noise."""
        noise = self.randn(shape)
        return noise, ([self.randn(shape)] if two_step else None)

    def integers(self, low: int, high: int, size: int) -> np.ndarray:
        """Local ``size`` integers in [low, high), cut from the global draw."""
        return self.rng.integers(low, high, size=size * self.num_processes)[self.shard(size)]

    def state_dict(self) -> dict:
        return {"shared": self.rng.bit_generator.state, "noise": self.noise_gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["shared"]
        self.noise_gen.set_state(state["noise"])
