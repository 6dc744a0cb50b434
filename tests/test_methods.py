"""The baselines (PPO, DPO, GORS, DRaFT) on LaSRO's machinery, and the pixel-space surrogate ablation."""
import json
import math

import numpy as np
import pytest
import torch

from lasro.config import ConfigError
from lasro.methods import MethodNotApplicable
from lasro.training import Trainer
from lasro.methods.dpo import diffusion_dpo_loss
from lasro.methods.gors import gors_weights
from lasro.methods.ppo import gaussian_log_prob, per_prompt_advantages, ppo_clipped_loss
from lasro.surrogates import PixelSurrogate

from .conftest import tiny_train_config

# tiny_train_config: 2 prompts x 2 noises per round, 1- and 2-step outputs scored: 8 queries a round
EXTRA = {"ppo": {}, "dpo": {}, "gors": {}, "draft": {"reward": "saturation"}}


def _lora(trainer):
    return {n: p.detach().clone() for n, p in trainer.base_unet.named_parameters() if "lora_" in n}


@pytest.mark.parametrize("method", ["ppo", "dpo", "gors", "draft"])
def test_baseline_trains_two_rounds_and_moves_the_lora(tiny_dirs, tmp_path, method):
    out = tmp_path / "run"
    cfg = tiny_train_config(out, tiny_dirs["sdxl"], algorithm={"method": method}, **EXTRA[method])
    trainer = Trainer(cfg)
    assert trainer.method.name == method and not hasattr(trainer.method, "surrogate")  # baselines build none
    before = _lora(trainer)
    rows = trainer.train()
    assert [r["round"] for r in rows] == [0, 1, 2]
    # no pre-training: the queries start at 0 and grow by one collection's worth (or DRaFT's scored batches)
    per_round = 8 if method != "draft" else cfg.algorithm.generator_steps * cfg.optim.batch_size * 2
    assert [r["reward_queries"] for r in rows] == [0, per_round, 2 * per_round]
    for row in rows:
        assert all(math.isfinite(v) for v in row.values() if isinstance(v, float)), row
        assert {"eval/reward_1step_mean", "eval/reward_2step_mean"} <= set(row)
    assert "generator/loss" in rows[-1] and "surrogate/pair_accuracy" not in rows[-1]
    after = _lora(trainer)
    assert max((after[n] - before[n]).abs().max() for n in before) > 1e-5
    assert (out / "lora" / "pytorch_lora_weights.safetensors").exists()
    state = json.loads((out / "checkpoints" / "round-000002" / "state.json").read_text())
    assert state["method"] == method and "surrogate.safetensors" not in state["files"]


def test_baseline_resumes_and_refuses_another_methods_checkpoint(tiny_dirs, tmp_path):
    out = tmp_path / "run"
    Trainer(tiny_train_config(out, tiny_dirs["sdxl"], algorithm={"method": "gors"})).train()
    rows = Trainer(tiny_train_config(out, tiny_dirs["sdxl"], algorithm={"method": "gors", "rounds": 3})
                         ).train(resume="latest")
    assert [(r["round"], r["reward_queries"]) for r in rows] == [(3, 24)]
    from lasro.training.checkpointing import CheckpointError

    with pytest.raises(CheckpointError, match="written by method 'gors'"):
        Trainer(tiny_train_config(out, tiny_dirs["sdxl"], algorithm={"method": "dpo", "rounds": 4})
                      ).load_checkpoint("latest")


def test_query_budget_stops_every_method_at_the_round_that_reaches_it(tiny_dirs, tmp_path):
    cfg = tiny_train_config(tmp_path / "run", tiny_dirs["sdxl"], algorithm={"method": "dpo", "rounds": 50,
                            "max_reward_queries": 20}, logging={"eval_every_queries": 16})
    rows = Trainer(cfg).train()
    assert [r["reward_queries"] for r in rows] == [0, 8, 16, 24]
    # evaluated at round 0, when 16 is crossed, and at the last round
    assert ["eval/reward_2step_mean" in r for r in rows] == [True, False, True, True]


def test_ppo_log_prob_is_the_gaussian_density():
    g = torch.Generator().manual_seed(0)
    x, mean = torch.randn(3, 4, 2, 2, generator=g), torch.randn(3, 4, 2, 2, generator=g)
    std = torch.tensor([0.5, 1.0, 2.0]).view(3, 1, 1, 1)
    hand = (-0.5 * ((x - mean) / std) ** 2 - torch.log(std) - 0.5 * math.log(2 * math.pi)).flatten(1).mean(1)
    torch.testing.assert_close(gaussian_log_prob(x, mean, std), hand)  # DDPO's per-dimension mean
    normal = torch.distributions.Normal(mean, 0.1)
    torch.testing.assert_close(gaussian_log_prob(x, mean, 0.1), normal.log_prob(x).flatten(1).mean(1))


def test_ppo_ratio_is_one_and_clipping_is_inactive_at_the_first_inner_step(tiny_dirs, tmp_path):
    cfg = tiny_train_config(tmp_path / "run", tiny_dirs["sdxl"], algorithm={"method": "ppo"})
    trainer = Trainer(cfg)
    trainer.method.collect_rollouts()
    idx = np.arange(len(trainer.method.rollout["prompts"]))
    trajectories = trainer.method.ratios(idx)
    assert [len(t) for t in trajectories] == [1, 2]  # 1-step: the output; 2-step: z_t1 and the output
    for k, ratios in enumerate(trajectories):
        for ratio in ratios:
            torch.testing.assert_close(ratio.detach(), torch.ones_like(ratio), rtol=0, atol=1e-6)
            adv = trainer.method.rollout["adv"][k]
            clipped = ppo_clipped_loss(ratio, adv, cfg.ppo.clip_range)
            assert torch.equal(clipped, -(ratio * adv).mean())
            assert clipped.requires_grad  # the first step still has a gradient


def test_ppo_ratios_stay_near_one_over_a_rounds_minibatch_steps(tiny_dirs, tmp_path):
    """Summed log-probabilities put every ratio at 0 or ~1e4 after one step; per-dimension means keep PPO a
    trust region: small log-ratios and a clip fraction below 1 through the round's epochs."""
    cfg = tiny_train_config(tmp_path / "run", tiny_dirs["sdxl"], algorithm={"method": "ppo"},
                            ppo={"epochs": 3, "samples_per_update": 1}, optim={"batch_size": 1, "lr": 1e-4})
    stats = Trainer(cfg).method.train_round(1)
    for k in (1, 2):
        assert stats[f"ppo/abs_log_ratio_max_{k}step"] < 0.1  # summed over dimensions: 9-22
        assert 0.0 <= stats[f"ppo/clip_fraction_{k}step"] < 1.0
        assert abs(stats[f"ppo/ratio_{k}step"] - 1) < 0.05


def test_ppo_advantages_are_normalised_per_prompt_and_step_count():
    prompts = ["a", "a", "b", "b", "a", "a"]
    steps = np.array([1, 1, 1, 1, 2, 2])
    adv = per_prompt_advantages(prompts, steps, np.array([1.0, 3.0, 10.0, 10.0, 0.0, 5.0]), clip=5.0)
    np.testing.assert_allclose(adv, [-1, 1, 0, 0, -1, 1], atol=1e-6)  # equal rewards: no advantage


def test_dpo_loss_falls_when_the_policy_fits_the_winner_better():
    ref_w, ref_l = torch.tensor([0.5]), torch.tensor([0.5])
    base, _ = diffusion_dpo_loss(torch.tensor([0.5]), torch.tensor([0.5]), ref_w, ref_l, beta=10.0)
    better, acc = diffusion_dpo_loss(torch.tensor([0.4]), torch.tensor([0.5]), ref_w, ref_l, beta=10.0)
    worse, _ = diffusion_dpo_loss(torch.tensor([0.5]), torch.tensor([0.4]), ref_w, ref_l, beta=10.0)
    assert better < base < worse and acc == 1.0
    assert base == pytest.approx(math.log(2))  # policy = reference: -log sigmoid(0)


def test_gors_weights_keep_the_top_fraction_and_favour_high_reward():
    rewards = np.array([0.1, 0.9, 0.5, 0.7, 0.3, 0.2, 0.8, 0.6])
    steps = np.array([1, 1, 1, 1, 2, 2, 2, 2])
    w = gors_weights(rewards, steps, top_fraction=0.5, temperature=1.0)
    assert np.flatnonzero(w).tolist() == [1, 3, 6, 7]  # the best half of each step count
    assert w[1] > w[3] > 0 and w[6] > w[7] > 0
    np.testing.assert_allclose([w[steps == k].sum() for k in (1, 2)], [2.0, 2.0])  # mean 1 over the kept
    only_two = gors_weights(rewards, steps, top_fraction=0.5, temperature=1.0, step_counts=[2])
    assert np.flatnonzero(only_two).tolist() == [6, 7] and np.allclose(only_two[6:], w[6:])


def test_draft_gradient_reaches_the_lora_and_raises_the_differentiable_reward(tiny_dirs, tmp_path):
    cfg = tiny_train_config(tmp_path / "run", tiny_dirs["sdxl"], reward="saturation",
                            algorithm={"method": "draft", "c1": 0.0}, optim={"lr": 3e-3, "batch_size": 4})
    trainer = Trainer(cfg)
    prompts = ["a red circle"] * 4
    trainer.gen_opt.zero_grad()
    loss, _ = trainer.method.reward_loss(prompts)
    loss.backward()
    grads = [p.grad for n, p in trainer.base_unet.named_parameters() if "lora_" in n]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)

    def reward_now():
        trainer.draws.noise_gen.manual_seed(123)  # the same noises before and after
        with torch.no_grad():
            return float(-trainer.method.reward_loss(prompts)[0])

    start = reward_now()
    for _ in range(4):
        trainer.generator_step(trainer.method.reward_loss)
    assert reward_now() > start


def test_draft_with_a_non_differentiable_reward_is_a_clear_error(tiny_dirs, tmp_path):
    cfg = tiny_train_config(tmp_path / "run", tiny_dirs["sdxl"], algorithm={"method": "draft"})
    with pytest.raises(MethodNotApplicable, match="reward 'jpeg_compressibility' is not differentiable"):
        Trainer(cfg)
    assert issubclass(MethodNotApplicable, ConfigError)


def test_unknown_method_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown method 'reinforce'. Methods: dpo, draft, gors, lasro, ppo"):
        tiny_train_config(tmp_path, "tiny:sdxl", algorithm={"method": "reinforce"})


def test_pixel_surrogate_trains_and_passes_the_generator_gradient_through_the_decode(tiny_dirs, tmp_path):
    cfg = tiny_train_config(tmp_path / "run", tiny_dirs["sdxl"], surrogate={"space": "pixel"})
    trainer = Trainer(cfg)
    assert isinstance(trainer.method.base_surrogate, PixelSurrogate)
    before = _lora(trainer)
    rows = trainer.train()
    assert math.isfinite(rows[-1]["surrogate/loss"]) and 0 <= rows[-1]["surrogate/pair_accuracy"] <= 1
    after = _lora(trainer)
    assert max((after[n] - before[n]).abs().max() for n in before) > 1e-5
    latents = torch.randn(trainer.gen.latent_shape(2), requires_grad=True)
    score = trainer.method.base_surrogate(latents, trainer.embeds(["a", "b"]), torch.tensor([1, 2]))
    score.sum().backward()
    assert score.shape == (2,) and latents.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in trainer.gen.pipe.vae.parameters())  # the VAE stays frozen


def test_pixel_surrogate_trains_on_the_buffers_decoded_images_and_a_resume_decodes_them_again(tiny_dirs, tmp_path):
    """The buffer keeps uint8 decodes of its latents; scoring them equals scoring the latents (up to
    the uint8 rounding), and a resumed run rebuilds them from the checkpointed latents."""
    out = tmp_path / "run"
    cfg = tiny_train_config(out, tiny_dirs["sdxl"], surrogate={"space": "pixel"})
    trainer = Trainer(cfg)
    trainer.train()
    buf = trainer.method.buffer
    assert buf.pixels is not None and buf.pixels.dtype == torch.uint8 and buf.pixels.shape[0] == len(buf)
    idx = np.arange(min(len(buf), 6))
    lat, prompts, steps = buf.gather(idx)
    sur = trainer.method.base_surrogate
    with torch.no_grad():
        decoded = sur(lat, trainer.embeds(prompts), steps)
        cached = sur(lat, trainer.embeds(prompts), steps, pixels=buf.gather_pixels(idx))
    torch.testing.assert_close(cached, decoded, atol=2e-2, rtol=0)
    resumed = Trainer(tiny_train_config(out, tiny_dirs["sdxl"], surrogate={"space": "pixel"}))
    resumed.load_checkpoint("latest")
    torch.testing.assert_close(resumed.method.buffer.pixels, buf.pixels)


def test_pixel_surrogate_collection_decodes_each_sample_once(tiny_dirs, tmp_path):
    """The reward's decode is the pixel cache: a collection decodes every latent once, not again for the
    buffer or the pair accuracy."""
    trainer = Trainer(tiny_train_config(tmp_path / "run", tiny_dirs["sdxl"], surrogate={"space": "pixel"}))
    decoded = []
    real = trainer.gen.decode_uint8
    trainer.gen.decode_uint8 = lambda latents: decoded.append(len(latents)) or real(latents)
    trainer.method.collect(0)
    assert sum(decoded) == len(trainer.method.buffer) == 2 * 2 * 2  # prompts x noises x step counts
    # the cached pixels are the decodes of the buffered latents
    torch.testing.assert_close(trainer.method.buffer.pixels, real(trainer.method.buffer.latents))


def test_ppo_takes_one_update_per_samples_per_update_and_normalises_small_groups_by_the_batch(tiny_dirs, tmp_path):
    cfg = tiny_train_config(tmp_path / "run", tiny_dirs["sdxl"], algorithm={"method": "ppo"},
                            ppo={"epochs": 2, "samples_per_update": 3}, optim={"batch_size": 1})
    stats = Trainer(cfg).method.train_round(1)
    assert stats["ppo/updates"] == 4  # 4 samples a round: updates of 3 and 1 samples, twice
    adv = per_prompt_advantages(["a", "a", "b", "b", "b"], np.ones(5), np.array([0.0, 1.0, 2.0, 2.0, 5.0]),
                                clip=5.0, min_group=3)
    batch = np.array([0.0, 1.0, 2.0, 2.0, 5.0])
    np.testing.assert_allclose(adv[:2], (batch[:2] - batch.mean()) / batch.std(), atol=1e-6)  # 2 < 3: batch
    np.testing.assert_allclose(adv[2:], [-1 / 2**0.5, -1 / 2**0.5, 2**0.5], atol=1e-6)  # per prompt
