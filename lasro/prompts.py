"""Prompt sets: a list in the config, or a text file with one prompt per line."""
from __future__ import annotations

import os


def resolve_prompts(spec: list[str] | str, key: str) -> list[str]:
    if isinstance(spec, str):
        if not os.path.isfile(spec):
            raise FileNotFoundError(f"{key}: prompt file {spec!r} not found (give a list of prompts or a "
                                    "text file with one prompt per line)")
        with open(spec, encoding="utf-8") as f:
            prompts = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    else:
        prompts = [p for p in spec if p.strip()]
    if not prompts:
        raise ValueError(f"{key}: no prompts given")
    return prompts
