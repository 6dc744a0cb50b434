import glob
import json
import os

import pytest
import torch

from lasro.training.checkpointing import CheckpointError
from lasro.cli import main
from lasro.generators import FewStepGenerator, load_pipeline
from lasro.training import Trainer

from .conftest import tiny_train_config

ROW_KEYS = {"round", "reward_queries", "eval/reward_1step_mean", "eval/reward_2step_mean",
            "surrogate/pair_accuracy", "surrogate/loss", "generator/loss", "generator/anchor", "time/wall_seconds"}


@pytest.mark.parametrize("family", ["sdxl", "sd"])
def test_train_writes_outputs_and_a_lora_diffusers_reads_back(tiny_dirs, tmp_path, family):
    out = tmp_path / "run"
    cfg = tiny_train_config(out, tiny_dirs[family])
    trainer = Trainer(cfg)
    rows = trainer.train()

    lines = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in lines] == [0, 1, 2] == [r["round"] for r in rows]
    assert ROW_KEYS <= set(lines[-1])
    # 1 pretrain collection + the round-0 collection + 2 rounds; 2 prompts x 2 noises x 2 step counts each
    assert [r["reward_queries"] for r in lines] == [16, 24, 32]
    assert 0.0 <= lines[-1]["surrogate/pair_accuracy"] <= 1.0
    assert glob.glob(str(out / "tensorboard" / "events.out.tfevents.*"))
    assert (out / "samples" / "eval_2step_round-0000.png").exists()
    assert (out / "samples" / "eval_1step_round-0002.png").exists()
    assert (out / "reward_curve.png").exists()
    ckpts = sorted(os.listdir(out / "checkpoints"))
    assert ckpts == ["round-000001", "round-000002"]  # total limit 2 pruned round 0
    assert {"generator_lora", "surrogate.safetensors", "generator_optimizer.pt", "surrogate_optimizer.pt", "buffer.pt",
            "rng-0.pt", "state.json"} <= set(os.listdir(out / "checkpoints" / "round-000002"))

    # The LoRA moved the weights, and diffusers' own loader reproduces the trained outputs.
    fresh = FewStepGenerator(load_pipeline(tiny_dirs[family], torch.float32))
    emb = fresh.encode_prompts(["a red square"])
    noise, eps = torch.randn(fresh.latent_shape(1)), torch.randn(fresh.latent_shape(1))
    with torch.no_grad():
        before = fresh.sample(fresh.unet, noise, emb, renoise=[eps])[-1]
        fresh.pipe.load_lora_weights(str(out / "lora"))
        after = fresh.sample(fresh.unet, noise, emb, renoise=[eps])[-1]
        trained = trainer.gen.sample(trainer.base_unet, noise, emb, renoise=[eps])[-1]
    assert (after - before).abs().max() > 1e-4
    torch.testing.assert_close(after, trained, rtol=1e-5, atol=1e-5)


def test_resume_latest_continues_counters_and_rows(tiny_dirs, tmp_path):
    out = tmp_path / "run"
    Trainer(tiny_train_config(out, tiny_dirs["sdxl"])).train()
    longer = tiny_train_config(out, tiny_dirs["sdxl"], algorithm={"rounds": 3})
    rows = Trainer(longer).train(resume="latest")
    assert [r["round"] for r in rows] == [3] and rows[0]["reward_queries"] == 40
    lines = [json.loads(l)["round"] for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert lines == [0, 1, 2, 3]


def test_pessimistic_ensemble_trains_logs_member_spread_and_resumes(tiny_dirs, tmp_path):
    """surrogate.ensemble=3 with pessimism: every member's weights are checkpointed and restored."""
    from safetensors.torch import load_file

    out = tmp_path / "run"
    sur = {"space": "pixel", "pixel_channels": 8, "ensemble": 3, "pessimism": 1.0}
    first = Trainer(tiny_train_config(out, tiny_dirs["sdxl"], surrogate=sur))
    rows = first.train()
    assert rows[-1]["generator/surrogate_member_std_2step"] > 0
    saved = load_file(str(out / "checkpoints" / "round-000002" / "surrogate.safetensors"))
    assert {k.split(".")[1] for k in saved} == {"0", "1", "2"}  # members.<i>.…
    resumed = Trainer(tiny_train_config(out, tiny_dirs["sdxl"], surrogate=sur, algorithm={"rounds": 3}))
    resumed.load_checkpoint("latest")
    for (name, p), q in zip(first.method.base_surrogate.named_parameters(), resumed.method.base_surrogate.parameters()):
        torch.testing.assert_close(p, q, msg=name)


def test_cli_train_and_sample(tiny_dirs, tmp_path, capsys):
    out = tmp_path / "cli"
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(f"""
reward: jpeg_compressibility
model: {{pretrained: {tiny_dirs['sd']}}}
exploration: {{samples_per_prompt: 2, prompts_per_round: 2}}
algorithm: {{rounds: 1, generator_steps: 1}}
lasro: {{pretrain_collect_rounds: 0, pretrain_surrogate_steps: 2, surrogate_steps: 1}}
optim: {{batch_size: 2}}
prompts: {{train: [a cat, a dog], eval: [a bird], eval_seeds: 1}}
logging: {{output_dir: {out}, progress: false}}
""")
    assert main(["train", str(cfg_path), "--set", "surrogate.batch_pairs=2"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["round"] == 1 and "eval/reward_2step_mean" in summary["before"]
    assert main(["sample", str(cfg_path), "--lora", str(out / "lora"), "--prompt", "a cat",
                 "--num-per-prompt", "2", "--out", str(tmp_path / "png")]) == 0
    assert sorted(os.listdir(tmp_path / "png")) == ["000_00.png", "000_01.png"]


@pytest.mark.parametrize("args, message", [
    (["--set", "optim.lrr=1"], "Did you mean 'lr'"),
    (["--set", "optim.lr=fast"], "optim.lr: expected a number"),
    (["--set", "surrogate.backbone=big"], "valid choices: 'lora', 'frozen', 'full'"),
    (["--set", "model.timesteps=[499, 999]"], "model.timesteps must decrease"),
    (["--set", "reward=jpeg_compresibility"], "Did you mean 'jpeg_compressibility'"),
    (["--set", "model.pretrained=./missing/model"], "does not exist"),
])
def test_bad_configs_give_clear_errors(args, message, capsys, tmp_path):
    assert main(["train", "--set", f"logging.output_dir={tmp_path}"] + args) == 2
    assert message in capsys.readouterr().err


def test_corrupt_latest_checkpoint_is_named_and_the_previous_one_used(tiny_dirs, tmp_path, caplog):
    out = tmp_path / "run"
    Trainer(tiny_train_config(out, tiny_dirs["sdxl"])).train()  # checkpoints round-1, round-2
    newest = out / "checkpoints" / "round-000002" / "surrogate.safetensors"
    data = bytearray(newest.read_bytes())
    data[-8:] = b"\x00" * 8  # same size, silently different weights: only the digest notices
    newest.write_bytes(bytes(data))
    longer = tiny_train_config(out, tiny_dirs["sdxl"], algorithm={"rounds": 3})
    with pytest.raises(CheckpointError, match="round-000002 is corrupt"):  # an explicit path: no fallback
        Trainer(longer).load_checkpoint(str(out / "checkpoints" / "round-000002"))
    with caplog.at_level("WARNING", logger="lasro"):
        rows = Trainer(longer).train(resume="latest")
    assert "round-000002 is corrupt: surrogate.safetensors is missing or changed" in caplog.text
    assert "previous checkpoint" in caplog.text and "round-000001" in caplog.text
    assert [r["round"] for r in rows] == [2, 3]


def test_full_disk_during_a_save_keeps_the_previous_checkpoint(tiny_dirs, tmp_path, monkeypatch):
    import errno

    out = tmp_path / "run"
    trainer = Trainer(tiny_train_config(out, tiny_dirs["sdxl"]))
    trainer.method.collect(0)
    first = trainer.save_checkpoint()
    before = {f: open(os.path.join(first, f), "rb").read() for f in ("state.json", "buffer.pt")}
    real_save = torch.save

    def full_disk(obj, f, *a, **k):  # what torch.save raises when the disk fills mid-write
        if str(f).endswith("buffer.pt"):
            raise RuntimeError("[enforce fail at inline_container.cc:664] . PytorchStreamWriter failed writing "
                               f"file data/3: file write failed ({os.strerror(errno.ENOSPC)})")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", full_disk)
    trainer.round = 1
    with pytest.raises(CheckpointError, match=r"file write failed \(No space left on device\).*round-000000 is intact.*--resume latest"):
        trainer.save_checkpoint()
    assert sorted(os.listdir(out / "checkpoints")) == ["round-000000"]  # no partial folder left
    assert {f: open(os.path.join(first, f), "rb").read() for f in before} == before
    monkeypatch.setattr(torch, "save", real_save)
    assert Trainer(tiny_train_config(out, tiny_dirs["sdxl"])).load_checkpoint("latest") is True  # round-0 intact


def test_generator_waits_while_the_surrogate_is_not_trusted(tiny_dirs, tmp_path):
    cfg = tiny_train_config(tmp_path / "run", tiny_dirs["sdxl"], lasro={"min_pair_accuracy": 1.01})
    trainer = Trainer(cfg)
    before = {n: p.detach().clone() for n, p in trainer.base_unet.named_parameters() if "lora_" in n}
    rows = trainer.train()
    assert [r.get("generator/gated") for r in rows[1:]] == [1.0, 1.0]
    assert all(torch.equal(before[n], p) for n, p in trainer.base_unet.named_parameters() if "lora_" in n)
    assert rows[-1]["reward_queries"] > rows[0]["reward_queries"]  # the surrogate still learns from new data


def test_eval_rewards_judge_the_same_eval_samples(tiny_dirs, tmp_path):
    cfg = tiny_train_config(tmp_path / "run", tiny_dirs["sdxl"], algorithm={"rounds": 1},
                            eval_rewards=["jpeg_incompressibility", {"name": "jpeg_incompressibility",
                                                                     "kwargs": {"quality": 50}}])
    rows = Trainer(cfg).train()
    for row in rows:
        for k in (1, 2):
            # the judge is minus the training reward on the very same images
            assert row[f"eval/jpeg_incompressibility/reward_{k}step_mean"] == pytest.approx(
                -row[f"eval/reward_{k}step_mean"], rel=1e-9)
            # a second judge of the same name gets its own label, and its own settings
            assert row[f"eval/jpeg_incompressibility#2/reward_{k}step_mean"] < row[
                f"eval/jpeg_incompressibility/reward_{k}step_mean"]
    logged = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert "eval/jpeg_incompressibility#2/reward_2step_mean" in logged


def test_eval_rewards_take_no_weight(tiny_dirs, tmp_path):
    cfg = tiny_train_config(tmp_path / "run", tiny_dirs["sdxl"],
                            eval_rewards=[{"name": "jpeg_incompressibility", "weight": 2}])
    with pytest.raises(ValueError, match="judges are reported one by one"):
        Trainer(cfg)


def test_overlapped_scoring_buffers_what_inline_scoring_buffers(tiny_dirs, tmp_path):
    buffers = []
    for overlap in (False, True):
        cfg = tiny_train_config(tmp_path / f"run{overlap}", tiny_dirs["sdxl"],
                                exploration={"prompts_per_round": 3, "samples_per_prompt": 4, "t1_range": [300, 700],
                                             "perturb_std": 0.1, "overlap_scoring": overlap})
        trainer = Trainer(cfg)
        assert trainer.chunk < 12  # several chunks: the reordering is exercised
        trainer.method.collect(0)
        buffers.append(trainer.method.buffer)
    a, b = buffers
    assert a.prompts == b.prompts and list(a.steps) == list(b.steps)
    torch.testing.assert_close(a.latents, b.latents, rtol=0, atol=0)
    assert list(a.rewards) == list(b.rewards)
    # each buffered reward belongs to its own latent, prompt and step count
    _, direct = trainer.collector.score_latents(b.latents.float(), b.prompts, b.steps)
    assert list(direct.scores) == list(b.rewards)


def test_gate_uses_the_mean_of_the_last_window_of_pair_accuracies(tiny_dirs, tmp_path):
    cfg = tiny_train_config(tmp_path / "run", tiny_dirs["sdxl"], lasro={"min_pair_accuracy": 0.6,
                                                                       "pair_accuracy_window": 3})
    trainer = Trainer(cfg)
    tr = trainer.method
    for _ in range(4):
        tr.collect(0)
    assert len(tr.pair_accuracy_history) == 3  # bounded to the window
    tr.pair_accuracy_history = [0.5]
    assert not tr.surrogate_trusted()
    tr.pair_accuracy_history = [0.9]  # before the window fills (the first rounds): the mean of what there is
    assert tr.surrogate_trusted()
    tr.pair_accuracy_history = [0.4, 0.45, 0.9]
    assert tr.gate_accuracy() == pytest.approx(0.5833, abs=1e-3) and not tr.surrogate_trusted()
    tr.pair_accuracy_history = [0.5, 0.5, 0.9]
    assert tr.surrogate_trusted()
    trainer.save_checkpoint()
    resumed = Trainer(cfg)
    resumed.load_checkpoint("latest")
    assert resumed.method.pair_accuracy_history == [0.5, 0.5, 0.9] and resumed.method.surrogate_trusted()
