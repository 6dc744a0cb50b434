"""Torch dtypes by name and the default device: one table for models, rewards and commands."""
from __future__ import annotations

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """A torch dtype from its name (``float32``, ``bfloat16``, ``float16``, or ``fp32``/``bf16``/``fp16``)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    name = DTYPE_ALIASES.get(dtype, dtype)
    if name not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of {', '.join([*DTYPES, *DTYPE_ALIASES])}")
    return DTYPES[name]


def default_device() -> str:
    """CUDA when present, else the CPU (when no device is given)."""
    return "cuda" if torch.cuda.is_available() else "cpu"
