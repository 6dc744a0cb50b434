"""Checkpoints: written to a temporary folder and renamed into place, so a crash never
leaves a half-written ``round-N``; old ones pruned to a total limit; every file's digest recorded
and checked on resume.

``checkpoints/round-000005/`` is the state after round 5; ``round-000000-pre-000003`` one taken during
round 0's warm start (LaSRO's pre-training), which sorts before ``round-000000``. Layout:
  generator_lora/pytorch_lora_weights.safetensors  diffusers format (pipe.load_lora_weights)
  generator_optimizer.pt, rng-<rank>.pt
  <name>.safetensors, <name>.pt   the method's own tensors and objects (LaSRO: surrogate.safetensors,
                                  surrogate_optimizer.pt, buffer.pt)
  judge_guard_lora.safetensors   with guarded judges (eval_rewards max_drop): the LoRA of the last evaluation
                                  where every guarded judge held
  state.json   counters, the method's values, the config; written last

The ``.pt`` files hold tensors and plain data only (numbers, strings, lists, dicts) and are read with
``torch.load(weights_only=True)``: a checkpoint from someone else cannot run code when resumed, and a
file that carries any other pickled object is refused.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import random
import re
import shutil
import time

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from lasro.config import config_to_dict
from lasro.methods import MethodState

log = logging.getLogger("lasro")
JUDGED_LORA = "judge_guard_lora.safetensors"  # the judge guard's snapshot (lasro/training/judge_guard.py)

CHECKPOINT_RE = re.compile(r"^round-(\d{6})(?:-pre-(\d{6}))?$")
COMPLETE_MARK = "state.json"  # written last: a folder without it is incomplete


class CheckpointError(RuntimeError):
    """A checkpoint is missing or unreadable; the message names it."""


def checkpoint_dir(output_dir: str) -> str:
    return os.path.join(output_dir, "checkpoints")


def checkpoint_name(round_index: int, pre: int | None = None) -> str:
    """``round-NNNNNN`` after a round; ``round-NNNNNN-pre-NNNNNN``: the ``pre``-th one during its warm start."""
    return f"round-{round_index:06d}" + ("" if pre is None else f"-pre-{pre:06d}")


def _order(name: str) -> tuple[int, int, int]:
    """Sort key: by round; within a round, warm-start checkpoints (in order) before the round's own."""
    m = CHECKPOINT_RE.match(name)
    return (int(m.group(1)), 0, int(m.group(2))) if m.group(2) else (int(m.group(1)), 1, 0)


def list_checkpoints(output_dir: str) -> list[str]:
    """Complete checkpoints, oldest first."""
    root = checkpoint_dir(output_dir)
    if not os.path.isdir(root):
        return []
    names = sorted((n for n in os.listdir(root) if CHECKPOINT_RE.match(n)), key=_order)
    return [os.path.join(root, n) for n in names if os.path.isfile(os.path.join(root, n, COMPLETE_MARK))]


def tmp_dir(output_dir: str, name: str) -> str:
    """Where checkpoint ``name`` is written before it is renamed into place."""
    return os.path.join(checkpoint_dir(output_dir), f".tmp-{name}")


def begin(output_dir: str, name: str) -> str:
    """A fresh temporary folder to write checkpoint ``name`` into."""
    tmp = tmp_dir(output_dir, name)
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
    """Checkpoints to try, best first: for ``latest`` every complete one newest first (none: an empty
    list, the run starts afresh), else the given one."""
    if resume == "latest":
        return list(reversed(list_checkpoints(output_dir)))
    return [resolve(output_dir, resume)]


def commit(output_dir: str, tmp: str, name: str, state: dict, total_limit: int) -> str:
    """Write state.json (with file digests) last, then rename the folder into place and prune old ones."""
    state = {**state, "files": _digests(tmp)}
    with open(os.path.join(tmp, COMPLETE_MARK), "w") as f:
        json.dump(state, f, indent=1)
    _fsync_tree(tmp)
    final = os.path.join(checkpoint_dir(output_dir), name)
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
    """A checkpoint folder's path -> the folder if it is a complete checkpoint, else a clear error."""
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
    """Tensors and plain data from a ``.pt`` file; anything else in it (a pickled object, which could run
    code) is refused."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"checkpoint file {path} holds a pickled object other than tensors and plain data, and is refused: "
            "loading it could run code. lasro writes only tensors and plain data; do not resume from a checkpoint "
            f"you did not write or cannot trust ({str(e).splitlines()[0][:200]})") from e
    except Exception as e:  # noqa: BLE001 - any other failure means a corrupt file
        raise CheckpointError(f"checkpoint file {path} is corrupt or unreadable ({type(e).__name__}: {e})") from e


def plain_rng_state() -> dict:
    """This process's global RNG states as tensors and plain data (loadable with weights_only)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"python": random.getstate(), "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss,
                                                   gauss], "torch": torch.get_rng_state()}


def restore_rng_state(rng: dict) -> None:
    kind, keys, pos, has_gauss, gauss = rng["numpy"]
    random.setstate(_tuples(rng["python"]))
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(rng["torch"])


def _tuples(value):
    """random.setstate wants the nested tuples that a round trip may have turned into lists."""
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


# ------------------------------------------------------------ a run's state
def save_checkpoint(run, pre: int | None = None) -> str | None:
    """All processes enter (wait_for_everyone); the main process writes atomically. ``pre``: the index of a
    checkpoint taken during round 0's warm start (``run.round`` is 0 then).

    A failed write (e.g. a full disk) removes the partial folder and raises a CheckpointError
    that names the previous, intact checkpoint."""
    run.acc.wait_for_everyone()
    name = checkpoint_name(run.round, pre)
    try:
        tmp, method_state = _write_files(run, name)
    except Exception as e:  # noqa: BLE001 - torch.save raises RuntimeError, safetensors its own error
        shutil.rmtree(tmp_dir(run.out, name), ignore_errors=True)
        found = list_checkpoints(run.out)
        raise CheckpointError(
            f"could not write checkpoint {name} under {checkpoint_dir(run.out)}: {e}. "
            + (f"The previous checkpoint {found[-1]} is intact: free space, then resume with --resume latest."
               if found else "No earlier checkpoint exists.")) from e
    path = None
    if run.is_main:
        state = {"round": run.round, "warm_start": pre is not None, "reward_queries": run.reward_queries,
                 "elapsed": run.wall_seconds(), "method": run.method.name, "method_state": method_state.values,
                 "method_files": {"tensors": sorted(method_state.tensors), "objects": sorted(method_state.objects)},
                 "num_processes": run.acc.num_processes, "config": config_to_dict(run.cfg),
                 "judge_guard": run.guard.state_dict()}
        path = commit(run.out, tmp, name, state, run.cfg.logging.checkpoints_total_limit)
    run.acc.wait_for_everyone()
    return path


def _write_files(run, name: str) -> tuple[str, MethodState]:
    """Every file but state.json, into the temporary folder."""
    tmp = tmp_dir(run.out, name)
    method_state = run.method.state()
    if run.is_main:
        begin(run.out, name)
        run.gen.save_lora(os.path.join(tmp, "generator_lora"))
        if run.guard.snapshot is not None:
            save_file(run.guard.tensors(), os.path.join(tmp, JUDGED_LORA))
        torch.save(run.gen_opt.state_dict(), os.path.join(tmp, "generator_optimizer.pt"))
        for key, tensors in method_state.tensors.items():
            save_file(tensors, os.path.join(tmp, f"{key}.safetensors"))
        for key, obj in method_state.objects.items():
            torch.save(obj, os.path.join(tmp, f"{key}.pt"))
    run.acc.wait_for_everyone()
    torch.save({**plain_rng_state(), **run.draws.state_dict()}, os.path.join(tmp, f"rng-{run.acc.process_index}.pt"))
    run.acc.wait_for_everyone()
    return tmp, method_state


def checkpoint_bytes(run) -> int:
    """Estimated size of one checkpoint: the LoRA, every optimiser state and the method's tensors and
    objects (a replay buffer counted as full)."""
    def size(obj) -> int:
        if isinstance(obj, torch.Tensor):
            return obj.numel() * obj.element_size()
        if isinstance(obj, dict):
            return sum(size(v) for v in obj.values())
        if isinstance(obj, (list, tuple)):
            return sum(size(v) for v in obj)
        return 0

    state = run.method.state()
    lora = sum(p.numel() * 4 for p in run.lora_params)  # saved as float32
    return (lora + size(run.gen_opt.state_dict()) + size(state.tensors) + size(state.objects)
            + run.method.growth_bytes())


def check_disk(run) -> None:
    """Before the first checkpoint: warn, or stop (``logging.disk_check``), when the output disk cannot hold
    ``logging.checkpoints_total_limit`` checkpoints plus the one being written."""
    mode = run.cfg.logging.disk_check
    if mode == "off":
        return
    os.makedirs(run.out, exist_ok=True)  # every process decides alike (one disk), only the main one logs
    limit = run.cfg.logging.checkpoints_total_limit
    one = checkpoint_bytes(run)
    need = one * ((limit if limit > 0 else run.cfg.algorithm.rounds + 1) + 1)
    free = shutil.disk_usage(run.out).free
    if need <= free:
        return
    text = (f"the disk of {run.out} has {_human(free)} free, but {limit or 'all'} checkpoints of about "
            f"{_human(one)} each (logging.checkpoints_total_limit, plus the one being written) need "
            f"{_human(need)}. Free space, lower logging.checkpoints_total_limit, or set logging.output_dir "
            "elsewhere")
    if mode == "stop":
        raise CheckpointError(text + " (logging.disk_check: warn only warns)")
    if run.is_main:
        log.warning("%s; logging.disk_check: stop refuses to start", text)


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}"
        n /= 1024


def load_checkpoint(run, resume: str) -> bool:
    """Restore everything; with ``latest``, a corrupt newest checkpoint is named and the previous used, and
    a run folder with no checkpoint yet starts afresh (False: nothing was restored)."""
    candidates = resume_candidates(run.out, resume)
    if not candidates:
        log.info("--resume latest: no checkpoint under %s yet: starting the run from scratch",
                 checkpoint_dir(run.out))
        return False
    for i, path in enumerate(candidates):
        try:
            state, files = _read(run, path)
            break
        except CheckpointError as e:
            if i + 1 == len(candidates):
                raise
            log.warning("%s; resuming from the previous checkpoint %s instead", e, candidates[i + 1])
    _apply(run, path, state, files)
    return True


def _read(run, path: str) -> tuple[dict, dict]:
    """Verify and read every file of a checkpoint before touching any state."""
    state = verify(path)
    names = state.get("method_files", {"tensors": [], "objects": []})
    files: dict = {}
    try:
        files["lora"] = load_file(os.path.join(path, "generator_lora", "pytorch_lora_weights.safetensors"))
        tensors = {n: load_file(os.path.join(path, f"{n}.safetensors")) for n in names["tensors"]}
        judged = os.path.join(path, JUDGED_LORA)
        files["judged"] = load_file(judged) if os.path.exists(judged) else None
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"checkpoint {path} is corrupt: {e}") from e
    files["optimizer"] = torch_load(os.path.join(path, "generator_optimizer.pt"))
    files["method"] = MethodState(state.get("method_state", {}), tensors,
                                  {n: torch_load(os.path.join(path, f"{n}.pt")) for n in names["objects"]})
    files["rng"] = torch_load(os.path.join(path, f"rng-{run.acc.process_index}.pt"))
    return state, files


def _apply(run, path: str, state: dict, files: dict) -> None:
    from diffusers.utils import convert_unet_state_dict_to_peft
    from peft import set_peft_model_state_dict

    if state["num_processes"] != run.acc.num_processes:
        raise CheckpointError(f"checkpoint {path} was written by {state['num_processes']} process(es); "
                              f"resume it with the same number (now {run.acc.num_processes})")
    if state.get("method") != run.method.name:
        raise CheckpointError(f"checkpoint {path} was written by method {state.get('method')!r}; "
                              f"resume it with algorithm.method: {state.get('method')} (now {run.method.name!r})")
    lora = {k[len("unet."):]: v for k, v in files["lora"].items() if k.startswith("unet.")}
    set_peft_model_state_dict(run.base_unet, convert_unet_state_dict_to_peft(lora), adapter_name="default")
    try:
        run.method.load_state(files["method"])
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path}: {e}") from e
    run.gen_opt.load_state_dict(files["optimizer"])
    judged = files["judged"]
    run.guard.load_state_dict(state.get("judge_guard"),
                              None if judged is None else [judged[f"lora_{i}"] for i in range(len(judged))])
    restore_rng_state(files["rng"])
    run.draws.load_state_dict(files["rng"])
    run.round, run.reward_queries = state["round"], state["reward_queries"]
    run.in_warm_start = bool(state.get("warm_start"))
    run.elapsed, run.t_start = state["elapsed"], time.time()
    # rows the interrupted run logged after this checkpoint go (during a warm start: round 0's too)
    run.tracker.truncate_after(run.round - 1 if run.in_warm_start else run.round)
    log.info("resumed from %s (round %d%s, %d reward queries)", path, run.round,
             ", warm start" if run.in_warm_start else "", run.reward_queries)
