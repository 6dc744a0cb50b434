"""Non-finite losses or gradients skip the step; several in a row stop the run with a clear error."""
import pytest
import torch

from lasro.training import NonFiniteError, Trainer

from .conftest import tiny_train_config


def _lora(trainer):
    return {n: p.detach().clone() for n, p in trainer.base_unet.named_parameters() if "lora_" in n}


def test_nonfinite_generator_steps_are_skipped_then_stop_the_run(tmp_path, caplog):
    cfg = tiny_train_config(tmp_path, "tiny:sdxl", algorithm={"max_nonfinite_steps": 2})
    trainer = Trainer(cfg)
    trainer.method.collect(0)
    trainer.save_checkpoint()
    good_loss = trainer.method.generator_loss
    draw = lambda size: ["a red circle"] * size  # noqa: E731

    def nan_loss(prompts):
        loss, stats = good_loss(prompts)
        return loss * float("nan"), stats

    before = _lora(trainer)
    with caplog.at_level("WARNING", logger="lasro"):
        stats = trainer.generator_step(nan_loss, draw)
    assert stats["generator/skipped"] == 1.0
    assert "non-finite generator loss" in caplog.text
    after = _lora(trainer)
    assert all(torch.equal(before[k], after[k]) for k in before)  # nothing moved

    assert "generator/skipped" not in trainer.generator_step(good_loss, draw)  # resets the streak, moves the LoRA
    assert any(not torch.equal(before[k], v) for k, v in _lora(trainer).items())

    trainer.generator_step(nan_loss, draw)
    with pytest.raises(NonFiniteError, match=r"2 generator steps in a row.*round-000000.*--resume latest"):
        trainer.generator_step(nan_loss, draw)


def test_nonfinite_surrogate_step_is_skipped(tmp_path):
    trainer = Trainer(tiny_train_config(tmp_path, "tiny:sdxl"))
    trainer.method.collect(0)
    trainer.method.collect(0)
    params = [p for p in trainer.method.base_surrogate.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in params]
    with torch.no_grad():
        params[0].fill_(float("nan"))  # poisons scores, loss and gradients
    assert trainer.method.surrogate_step() is None
    assert trainer._nonfinite["surrogate"] == 1
    assert all(torch.equal(b, p) for b, p in zip(before[1:], params[1:]))  # no optimiser step
