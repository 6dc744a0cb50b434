"""SIGKILL a tiny run at several points, resume it, and get exactly the weights of an uninterrupted run."""
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (point, N-th call that kills): counted in a 4-round run; each lands mid-run after a checkpoint.
# "checkpoint" kills while round 2's checkpoint is being written: resume uses round 1.
KILL_POINTS = [("sampling", 15), ("reward", 9), ("surrogate", 8), ("checkpoint", 3)]


def _run(*args):
    return subprocess.run([sys.executable, "-m", "tests.kill_runner", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def _weights(out):
    final = os.path.join(out, "checkpoints", "round-000004")
    return (load_file(os.path.join(out, "lora", "pytorch_lora_weights.safetensors")),
            load_file(os.path.join(final, "surrogate.safetensors")))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    proc = _run("none", 0, out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return _weights(out)


@pytest.mark.parametrize("point,nth", KILL_POINTS)
def test_sigkill_then_resume_gives_the_uninterrupted_weights(point, nth, tmp_path, reference):
    out = tmp_path / "run"
    killed = _run(point, nth, out)
    assert killed.returncode == -9, f"not killed at {point}#{nth}: {killed.stderr[-1000:]}"
    assert not os.path.exists(out / "lora"), "killed run must not have finished"
    saved = sorted(os.listdir(out / "checkpoints"))
    assert any(n.startswith("round-") for n in saved), saved
    resumed = _run("none", 0, out, "latest")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    lora, sur = _weights(out)
    ref_lora, ref_sur = reference
    assert lora.keys() == ref_lora.keys() and sur.keys() == ref_sur.keys()
    for k in ref_lora:
        torch.testing.assert_close(lora[k], ref_lora[k], rtol=0, atol=1e-6)
    for k in ref_sur:
        torch.testing.assert_close(sur[k], ref_sur[k], rtol=0, atol=1e-6)
