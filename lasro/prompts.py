"""Prompt sets: a list in the config, a text file with one prompt per line, or a built-in
domain split such as ``shapes:test`` / ``shapes:test:64`` (64 distinct prompts, object counts
as evenly represented as the split allows), or ``shapes:pairs-test`` (two different objects, both orders:
the spatial task's prompts)."""
from __future__ import annotations

import os

BUILTIN_PREFIX = "shapes:"


def _builtin(spec: str, key: str) -> list[str]:
    from lasro import shapes

    parts = spec.split(":")
    if len(parts) not in (2, 3) or parts[1] not in ("train", "test", "pairs-train", "pairs-test"):
        raise ValueError(f"{key}: {spec!r} is not a prompt set; use 'shapes:train', 'shapes:test', "
                         "'shapes:test:N' (N distinct prompts, object counts 1-4 balanced) or 'shapes:pairs-train' / "
                         "'shapes:pairs-test' (two different objects, both orders)")
    if parts[1].startswith("pairs-"):
        pairs = shapes.pair_prompts(parts[1].removeprefix("pairs-"))
        return pairs if len(parts) == 2 else pairs[:_count(spec, parts[2], key)]
    if len(parts) == 2:
        return shapes.split_prompts(parts[1])
    return shapes.balanced_prompts(parts[1], _count(spec, parts[2], key), seed=0)


def _count(spec: str, text: str, key: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{key}: {spec!r}: the count after the split must be an integer") from None


def resolve_prompts(spec: list[str] | str, key: str) -> list[str]:
    if isinstance(spec, str) and spec.startswith(BUILTIN_PREFIX) and not os.path.isfile(spec):
        prompts = _builtin(spec, key)
    elif isinstance(spec, str):
        if not os.path.isfile(spec):
            raise FileNotFoundError(f"{key}: prompt file {spec!r} not found (give a list of prompts, a "
                                    "text file with one prompt per line, or a built-in set such as 'shapes:train')")
        with open(spec, encoding="utf-8") as f:
            prompts = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    else:
        prompts = [p for p in spec if p.strip()]
    if not prompts:
        raise ValueError(f"{key}: no prompts given")
    return prompts
