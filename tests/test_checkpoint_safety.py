"""Checkpoints that cannot run code, --resume latest on an empty run folder, and the disk preflight."""
import json
import os
import pickle
import shutil

import pytest

from lasro.training import Trainer
from lasro.training import checkpointing as ckpt

from .conftest import tiny_train_config


class Payload:
    """What an attacker would put in a checkpoint: unpickling it runs os.system."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture()
def saved(tmp_path):
    trainer = Trainer(tiny_train_config(tmp_path / "run", "tiny:sdxl"))
    trainer.method.collect(0)
    return trainer, trainer.save_checkpoint()


def test_every_checkpoint_file_loads_with_weights_only(saved):
    import torch

    _, path = saved
    names = [n for n in os.listdir(path) if n.endswith(".pt")]
    assert {"generator_optimizer.pt", "surrogate_optimizer.pt", "buffer.pt", "rng-0.pt"} <= set(names)
    for name in names:
        torch.load(os.path.join(path, name), weights_only=True)


@pytest.mark.parametrize("victim", ["buffer.pt", "rng-0.pt", "generator_optimizer.pt"])
def test_a_checkpoint_carrying_a_pickled_payload_is_refused_and_runs_nothing(saved, tmp_path, victim):
    trainer, path = saved
    marker = tmp_path / "pwned"
    with open(os.path.join(path, victim), "wb") as f:
        pickle.dump({"latents": Payload(marker)}, f)
    state_file = os.path.join(path, "state.json")  # re-sign it, as a crafted checkpoint would
    state = json.load(open(state_file))
    state["files"] = ckpt._digests(path)
    json.dump(state, open(state_file, "w"))
    with pytest.raises(ckpt.CheckpointError, match=rf"{victim} holds a pickled object .* refused: loading it could "
                                                   "run code"):
        Trainer(tiny_train_config(tmp_path / "run", "tiny:sdxl")).load_checkpoint(path)
    assert not marker.exists()


def test_resume_latest_without_any_checkpoint_starts_afresh(tmp_path, caplog):
    out = tmp_path / "run"
    with caplog.at_level("INFO", logger="lasro"):
        rows = Trainer(tiny_train_config(out, "tiny:sdxl", algorithm={"rounds": 1})).train(resume="latest")
    assert [r["round"] for r in rows] == [0, 1]
    assert "no checkpoint under" in caplog.text and "starting the run from scratch" in caplog.text
    with pytest.raises(ckpt.CheckpointError, match="not a complete lasro checkpoint"):  # an explicit path must exist
        Trainer(tiny_train_config(out, "tiny:sdxl")).load_checkpoint(str(out / "checkpoints" / "round-000009"))


def test_warm_start_checkpoints_sort_before_their_round():
    names = ["round-000001", "round-000000", "round-000000-pre-000012", "round-000000-pre-000003"]
    assert sorted(names, key=ckpt._order) == ["round-000000-pre-000003", "round-000000-pre-000012", "round-000000",
                                              "round-000001"]


@pytest.mark.parametrize("mode", ["warn", "stop", "off"])
def test_disk_preflight_warns_or_stops_when_the_checkpoints_would_not_fit(tmp_path, monkeypatch, caplog, mode):
    cfg = tiny_train_config(tmp_path / "run", "tiny:sdxl", logging={"disk_check": mode, "checkpoints_total_limit": 3})
    trainer = Trainer(cfg)
    one = ckpt.checkpoint_bytes(trainer)
    assert one > sum(p.numel() * 4 for p in trainer.lora_params)  # the LoRA is only part of it
    almost_full = shutil._ntuple_diskusage(10**12, 10**12 - 3 * one, 3 * one)  # room for 3 of the 4 needed
    monkeypatch.setattr(shutil, "disk_usage", lambda path: almost_full)
    with caplog.at_level("WARNING", logger="lasro"):
        if mode == "stop":
            full = r"has [0-9.]+ [KMG]iB free, but 3 checkpoints of about .* need .*checkpoints_total_limit"
            with pytest.raises(ckpt.CheckpointError, match=full):
                ckpt.check_disk(trainer)
        else:
            ckpt.check_disk(trainer)
    assert ("logging.checkpoints_total_limit" in caplog.text) == (mode == "warn")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**12, 0, 10**12))
    ckpt.check_disk(trainer)  # room enough: silent
