"""Interrupt a tiny run (SIGKILL anywhere, pre-training included; SIGTERM mid-round on 1 and 2 processes),
resume it with the same command and --resume latest, and get exactly the weights of an uninterrupted run."""
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TORCHRUN = os.path.join(os.path.dirname(sys.executable), "torchrun")
# (point, N-th call that kills): counted in a 4-round run with a checkpoint after each pre-training collection
# and surrogate step. "surrogate" 2 lands in pre-training (resumes from its first step's checkpoint); 8 in round
# 2; "checkpoint" 9 while round 2's checkpoint is written (resume uses round 1).
KILL_POINTS = [("sampling", 15), ("reward", 9), ("surrogate", 2), ("surrogate", 8), ("checkpoint", 9)]


def _run(*args, processes=1):
    launcher = [TORCHRUN, "--standalone", "--nproc_per_node", str(processes)] if processes > 1 else [sys.executable]
    return subprocess.run(launcher + ["-m", "tests.kill_runner", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def _weights(out):
    final = os.path.join(out, "checkpoints", "round-000004")
    return (load_file(os.path.join(out, "lora", "pytorch_lora_weights.safetensors")),
            load_file(os.path.join(final, "surrogate.safetensors")))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    proc = _run("KILL", "none", 0, out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return _weights(out)


@pytest.mark.parametrize("point,nth", KILL_POINTS)
def test_sigkill_then_resume_gives_the_uninterrupted_weights(point, nth, tmp_path, reference):
    out = tmp_path / "run"
    killed = _run("KILL", point, nth, out)
    assert killed.returncode == -9, f"not killed at {point}#{nth}: {killed.stderr[-1000:]}"
    assert not os.path.exists(out / "lora"), "killed run must not have finished"
    saved = sorted(os.listdir(out / "checkpoints"))
    assert any(n.startswith("round-") for n in saved), saved
    resumed = _run("KILL", "none", 0, out, "latest")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    _assert_same(_weights(out), reference)


def _assert_same(weights, reference):
    (lora, sur), (ref_lora, ref_sur) = weights, reference
    assert lora.keys() == ref_lora.keys() and sur.keys() == ref_sur.keys()
    for k in ref_lora:
        torch.testing.assert_close(lora[k], ref_lora[k], rtol=0, atol=1e-6)
    for k in ref_sur:
        torch.testing.assert_close(sur[k], ref_sur[k], rtol=0, atol=1e-6)


def test_sigkill_before_the_first_checkpoint_then_resume_latest_starts_afresh(tmp_path, reference):
    out = tmp_path / "run"
    killed = _run("KILL", "sampling", 1, out)
    assert killed.returncode == -9 and not os.path.exists(out / "checkpoints" / "round-000000")
    resumed = _run("KILL", "none", 0, out, "latest")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "no checkpoint under" in resumed.stderr and "starting the run from scratch" in resumed.stderr
    _assert_same(_weights(out), reference)


def test_sigterm_mid_round_writes_a_checkpoint_exits_143_and_resumes_exactly(tmp_path, reference):
    out = tmp_path / "run"
    stopped = _run("TERM", "sampling", 15, out)  # mid-round 2 (as the SIGKILL case above)
    assert stopped.returncode == 143, stopped.stderr[-2000:]
    assert "stopped on SIGTERM: checkpoint" in stopped.stderr and "round-000002" in stopped.stderr
    assert "--resume latest" in stopped.stderr and not os.path.exists(out / "lora")
    resumed = _run("KILL", "none", 0, out, "latest")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    _assert_same(_weights(out), reference)


def test_sigterm_to_one_of_two_processes_stops_both_at_the_same_point(tmp_path):
    ref = tmp_path / "reference"
    assert _run("KILL", "none", 0, ref, processes=2).returncode == 0
    out = tmp_path / "run"
    stopped = _run("TERM", "sampling", 15, out, processes=2)  # only rank 0 is signalled
    # both processes stop at the same safe point with the message (rank 1 never received the signal)
    assert stopped.returncode != 0 and stopped.stderr.count("stopped on SIGTERM") == 2, stopped.stderr[-3000:]
    assert os.path.exists(out / "checkpoints" / "round-000002" / "rng-1.pt") and not os.path.exists(out / "lora")
    resumed = _run("KILL", "none", 0, out, "latest", processes=2)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _assert_same(_weights(out), _weights(ref))
