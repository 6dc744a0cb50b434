"""A reward that breaks mid-run stops the run with one clear error, and what was saved stays usable.

(Config typos, wrong types, missing model folders, offline hub ids: test_train_e2e.py and
test_config.py; reward return-value checks: test_rewards.py; corrupt checkpoints and a full disk:
test_train_e2e.py; non-finite losses: test_numerical_guard.py.)
"""
import json
import os

import numpy as np
import pytest

from lasro.cli import main

from .conftest import tiny_train_config


class Faulty:
    """Scores like a real reward for ``good_calls`` calls, then misbehaves as ``mode`` says."""

    calls = 0

    def __init__(self, mode: str, good_calls: int):
        self.mode, self.good_calls = mode, good_calls

    def __call__(self, images, prompts, metadata):
        Faulty.calls += 1
        n = len(images)
        if Faulty.calls <= self.good_calls:
            return np.array([float(np.asarray(im).mean()) for im in images])
        if self.mode == "raise":
            raise ConnectionError("judge server went away")
        if self.mode == "nan":
            return np.full(n, np.nan)
        return np.zeros(n + 1)  # wrong length


@pytest.mark.parametrize("mode,message", [
    ("raise", "raised ConnectionError: judge server went away"),
    ("nan", "returned non-finite scores"),
    ("wrong_length", "returned 9 scores for 8 images"),
])
def test_reward_failing_mid_run_stops_with_a_clear_error_and_keeps_checkpoints(mode, message, tmp_path, capsys):
    Faulty.calls = 0
    out = tmp_path / "run"
    cfg = tiny_train_config(out, "tiny:sdxl")
    # 2 collects before round 1's checkpoint (pretrain + round 0), round 1 collects + evals: fail in round 2
    good = 2 + 2 + 1 + 2
    path = tmp_path / "c.json"
    from lasro.config import config_to_dict

    data = config_to_dict(cfg)
    data["reward"] = {"name": "tests.test_bad_inputs:Faulty", "kwargs": {"mode": mode, "good_calls": good}}
    data["algorithm"]["rounds"] = 3
    path.write_text(json.dumps(data))
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lasro: error: reward 'tests.test_bad_inputs:Faulty'") and message in err
    saved = sorted(os.listdir(out / "checkpoints"))
    assert saved and all(n.startswith("round-") for n in saved), saved  # no partial folder
    # what was saved resumes (with a working reward)
    data["reward"] = "jpeg_compressibility"
    path.write_text(json.dumps(data))
    assert main(["train", str(path), "--resume", "latest"]) == 0
