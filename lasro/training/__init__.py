"""The method-free training loop, its checkpoints and its outputs (metrics, grids, curves)."""
from lasro.training.preemption import Preempted
from lasro.training.trainer import NonFiniteError, Trainer

__all__ = ["NonFiniteError", "Preempted", "Trainer"]
