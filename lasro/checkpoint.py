"""Checkpoints: written to a temporary folder and renamed into place, so a crash never
leaves a half-written ``round-N``; old ones pruned to a total limit.

Layout of ``checkpoints/round-000005/``:
  generator_lora/pytorch_lora_weights.safetensors  diffusers format (pipe.load_lora_weights)
  surrogate.safetensors   the surrogate's trainable weights (LoRA, head, step embedding)
  optimizers.pt, buffer.pt, rng-<rank>.pt, state.json (counters, normalisers, config)
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil

import torch

CHECKPOINT_RE = re.compile(r"^round-(\d{6})$")
COMPLETE_MARK = "state.json"  # written last: a folder without it is incomplete


class CheckpointError(RuntimeError):
    """A checkpoint is missing or unreadable; the message names it."""


def checkpoint_dir(output_dir: str) -> str:
    return os.path.join(output_dir, "checkpoints")


def list_checkpoints(output_dir: str) -> list[str]:
    """Complete checkpoints, oldest first."""
    root = checkpoint_dir(output_dir)
    if not os.path.isdir(root):
        return []
    names = sorted(n for n in os.listdir(root) if CHECKPOINT_RE.match(n))
    return [os.path.join(root, n) for n in names if os.path.isfile(os.path.join(root, n, COMPLETE_MARK))]


def tmp_dir(output_dir: str, round_index: int) -> str:
    """Where the checkpoint of ``round_index`` is written before it is renamed into place."""
    return os.path.join(checkpoint_dir(output_dir), f".tmp-round-{round_index:06d}")


def begin(output_dir: str, round_index: int) -> str:
    """A fresh temporary folder to write the checkpoint of ``round_index`` into."""
    tmp = tmp_dir(output_dir, round_index)
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    return tmp


def _fsync_tree(path: str) -> None:
    for root, _, files in os.walk(path):
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                os.fsync(fh.fileno())


def _digests(path: str) -> dict[str, str]:
    """sha256 of every file in a checkpoint folder (except state.json), by relative path."""
    out = {}
    for root, _, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            rel = os.path.relpath(full, path)
            if rel == COMPLETE_MARK:
                continue
            h = hashlib.sha256()
            with open(full, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            out[rel] = h.hexdigest()
    return out


def verify(path: str) -> dict:
    """Read state.json and check every file against the digests recorded at save time."""
    state = read_state(path)
    recorded = state.get("files")
    if recorded is not None:
        found = _digests(path)
        bad = sorted(k for k in recorded if found.get(k) != recorded[k])
        if bad:
            raise CheckpointError(f"checkpoint {path} is corrupt: {', '.join(bad)} "
                                  f"{'is' if len(bad) == 1 else 'are'} missing or changed since it was saved")
    return state


def resume_candidates(output_dir: str, resume: str) -> list[str]:
    """Checkpoints to try, best first: for ``latest`` every complete one newest first, else the given one."""
    if resume == "latest":
        return list(reversed(list_checkpoints(output_dir))) or [resolve(output_dir, resume)]
    return [resolve(output_dir, resume)]


def commit(output_dir: str, tmp: str, round_index: int, state: dict, total_limit: int) -> str:
    """Write state.json (with file digests) last, then rename the folder into place and prune old ones."""
    state = {**state, "files": _digests(tmp)}
    with open(os.path.join(tmp, COMPLETE_MARK), "w") as f:
        json.dump(state, f, indent=1)
    _fsync_tree(tmp)
    final = os.path.join(checkpoint_dir(output_dir), f"round-{round_index:06d}")
    if os.path.exists(final):
        old = final + ".old"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    if total_limit > 0:
        for stale in list_checkpoints(output_dir)[:-total_limit]:
            shutil.rmtree(stale, ignore_errors=True)
    return final


def resolve(output_dir: str, resume: str) -> str:
    """``latest`` or a path -> a complete checkpoint folder, or a clear error."""
    if resume == "latest":
        found = list_checkpoints(output_dir)
        if not found:
            raise CheckpointError(f"--resume latest: no complete checkpoint under {checkpoint_dir(output_dir)}")
        return found[-1]
    if not os.path.isfile(os.path.join(resume, COMPLETE_MARK)):
        raise CheckpointError(f"--resume {resume}: not a complete lasro checkpoint (no {COMPLETE_MARK}); "
                              f"use 'latest' or one of {[os.path.basename(p) for p in list_checkpoints(output_dir)]}")
    return resume


def read_state(path: str) -> dict:
    try:
        with open(os.path.join(path, COMPLETE_MARK)) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"checkpoint {path} is corrupt: cannot read {COMPLETE_MARK} ({e})") from e


def torch_load(path: str):
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a corrupt file
        raise CheckpointError(f"checkpoint file {path} is corrupt or unreadable ({type(e).__name__}: {e})") from e
