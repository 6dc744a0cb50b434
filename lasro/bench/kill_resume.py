"""``lasro bench kill-resume``: SIGKILL a training run at random moments over its whole length (start-up
and pre-training included), restart each with the same command plus ``--resume latest``, and compare every
final LoRA with an uninterrupted run's. What a cluster job that is killed and restarted by a script gets."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np


def _train(config: str | None, out: str, overrides: list[str], resume: bool = False) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "lasro.cli", "train", *([config] if config else []), *overrides,
           "--set", f"logging.output_dir={out}", "--set", "logging.progress=false"]
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    return subprocess.Popen(cmd + (["--resume", "latest"] if resume else []), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env)


def _finish(proc: subprocess.Popen, what: str) -> None:
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {proc.returncode}): {err[-2000:]}")


def _lora(out: str) -> dict:
    from safetensors.torch import load_file

    return load_file(os.path.join(out, "lora", "pytorch_lora_weights.safetensors"))


def _latest_checkpoint(out: str) -> str:
    from lasro.training.checkpointing import list_checkpoints

    found = list_checkpoints(out)
    return os.path.basename(found[-1]) if found else "none"


def bench_kill_resume(config: str | None, overrides: list[str], kills: int, out: str, seed: int = 0) -> dict:
    """The uninterrupted run, then ``kills`` runs each SIGKILLed once at a moment drawn in its own
    ``1/kills`` slice of the uninterrupted wall time and resumed; per kill the newest checkpoint at the
    kill and the largest |difference| of the final LoRA from the uninterrupted one."""
    rng = np.random.default_rng(seed)
    reference = os.path.join(out, "uninterrupted")
    start = time.time()
    _finish(_train(config, reference, overrides), "the uninterrupted run")
    wall = time.time() - start
    ref = _lora(reference)
    rows = []
    for i in range(kills):
        run = os.path.join(out, f"kill-{i:02d}")
        at = (i + rng.uniform()) / kills * wall
        proc = _train(config, run, overrides)
        try:
            proc.wait(timeout=at)
            killed = False  # it finished before the moment came
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed = True
        row = {"kill": i, "at_seconds": round(at, 1), "killed": killed, "checkpoint_at_kill": _latest_checkpoint(run)}
        resume_start = time.time()
        _finish(_train(config, run, overrides, resume=True), f"the resume after kill {i}")
        got = _lora(run)
        diff = max(float((got[k] - ref[k]).abs().max()) for k in ref) if got.keys() == ref.keys() else float("inf")
        rows.append({**row, "resume_seconds": round(time.time() - resume_start, 1), "max_abs_diff": diff,
                     "equal": diff <= 1e-6})
    return {"config": config, "overrides": overrides, "uninterrupted_seconds": round(wall, 1), "kills": rows,
            "all_equal": all(r["equal"] for r in rows)}
