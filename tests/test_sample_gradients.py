"""Per-sample gradient equalisation in the generator objective (lasro.equalize_sample_gradients)."""
import pytest
import torch

import lasro.methods.lasro as lasro_module
from lasro.surrogates.sample_gradients import equalize_sample_gradients
from lasro.training import Trainer

from .conftest import tiny_train_config


def _rms(g):
    return g.flatten(1).square().mean(1).sqrt()


def test_identity_forward_and_equal_per_sample_gradients_of_the_batch_mean_size():
    x = torch.randn(3, 2, 4, requires_grad=True)
    y = equalize_sample_gradients(x)
    assert torch.equal(y, x)
    weights = torch.tensor([1.0, 10.0, 0.0]).view(3, 1, 1)  # steep, steeper, flat
    upstream = weights * torch.randn(3, 2, 4)
    (y * upstream).sum().backward()
    raw = _rms(upstream)
    got = _rms(x.grad)
    assert got[0] == pytest.approx(got[1]) and got[0] == pytest.approx(raw.mean().item())
    assert got[2] == 0  # a sample with no gradient gets none
    # directions are kept
    cos = torch.nn.functional.cosine_similarity(x.grad[:2].flatten(1), upstream[:2].flatten(1))
    assert torch.allclose(cos, torch.ones(2))


@pytest.mark.parametrize("on", [False, True])
def test_generator_loss_equalizes_only_when_switched_on(tiny_dirs, tmp_path, monkeypatch, on):
    cfg = tiny_train_config(tmp_path, tiny_dirs["sdxl"],
                            lasro={"equalize_sample_gradients": on, "regularizer": "none"})
    trainer = Trainer(cfg)
    trainer.method.warm_start()
    seen = []

    def spy(x):
        x.register_hook(lambda g: seen.append(g.detach().clone()))
        return equalize_sample_gradients(x)

    monkeypatch.setattr(lasro_module, "equalize_sample_gradients", spy)
    loss, _ = trainer.method.generator_loss(["a red circle", "a blue square"])
    loss.backward()
    if not on:
        assert seen == []
        return
    (grad,) = seen
    assert grad.shape[0] == 4  # 2 prompts x (1-step, 2-step) outputs
    rms = _rms(grad)
    assert rms.min() > 0 and torch.allclose(rms, rms[0].expand_as(rms), rtol=1e-4)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainer.lora_params)
