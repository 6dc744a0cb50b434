"""The generator objective's anchor: held to the initial model, or to the round's starting LoRA weights."""
import pytest
import torch

from lasro.training import Trainer

from .conftest import tiny_train_config


@pytest.fixture(scope="module")
def moved_trainer(tiny_dirs, tmp_path_factory):
    """A trainer whose LoRA has moved away from the initial model (as after some rounds)."""
    cfg = tiny_train_config(tmp_path_factory.mktemp("anchor"), tiny_dirs["sdxl"], lasro={"anchor": "round"})
    trainer = Trainer(cfg)
    trainer.method.warm_start()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in trainer.lora_params:
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return trainer


def _anchor_term(trainer, anchor: str) -> float:
    trainer.cfg.lasro.anchor = anchor
    torch.manual_seed(1)
    return trainer.method.generator_loss(["a red circle", "a blue square"])[1]["generator/anchor"]


def test_round_start_holds_outputs_to_the_rounds_start_not_to_the_initial_model(moved_trainer):
    t = moved_trainer
    t.method._round_start = [p.detach().clone() for p in t.lora_params]
    before = [p.detach().clone() for p in t.lora_params]
    assert _anchor_term(t, "round") == 0.0  # the reference pass ran the current weights
    assert _anchor_term(t, "initial") > 1e-6  # the LoRA moved the outputs away from the initial model
    # the reference pass put the trained weights back exactly
    assert all(torch.equal(p, b) for p, b in zip(t.lora_params, before))


def test_round_start_snapshots_the_weights_each_round_starts_from(moved_trainer):
    t = moved_trainer
    t.cfg.lasro.anchor = "round"
    start = [p.detach().clone() for p in t.lora_params]
    stats = t.method.train_round(1)
    assert all(torch.equal(a, s) for a, s in zip(t.method._round_start, start))
    assert any(not torch.equal(p, s) for p, s in zip(t.lora_params, start))  # the steps moved the LoRA
    assert stats["generator/anchor"] > 0  # the second step is held to the first's start
    # the next round anchors where this one ended
    end = [p.detach().clone() for p in t.lora_params]
    t.method.train_round(2)
    assert all(torch.equal(a, e) for a, e in zip(t.method._round_start, end))


def test_trust_region_clip_follows_the_gates_pair_accuracy(moved_trainer):
    """lasro.trust_region_accuracy scales the clip by (accuracy - 0.5) / (reference - 0.5): wider for a
    surrogate that orders fresh pairs well, none at chance; unset, the clip is fixed."""
    t, a = moved_trainer, moved_trainer.cfg.lasro
    m = t.method
    saved = (a.trust_region_accuracy, a.trust_region_clip, a.pair_accuracy_window, list(m.pair_accuracy_history))
    try:
        a.trust_region_clip, a.pair_accuracy_window = 1.0, 2
        m.pair_accuracy_history = [0.8, 1.0]
        a.trust_region_accuracy = None
        assert m.trust_region_clip() == 1.0
        a.trust_region_accuracy = 0.6
        assert m.trust_region_clip() == pytest.approx(4.0)  # mean accuracy 0.9: (0.9 - 0.5) / (0.6 - 0.5)
        m.pair_accuracy_history = [0.45]
        assert m.trust_region_clip() == 0.0
        m.pair_accuracy_history = []
        assert m.trust_region_clip() == 1.0  # no reading yet: the fixed clip
        m.pair_accuracy_history = [0.7]
        t.cfg.lasro.anchor = "initial"
        stats = m.generator_loss(["a red circle", "a blue square"])[1]
        assert stats["generator/trust_region_clip"] == pytest.approx(2.0)
    finally:
        a.trust_region_accuracy, a.trust_region_clip, a.pair_accuracy_window, m.pair_accuracy_history = saved


def test_lora_weight_change_is_the_mean_squared_adapted_weight_change(moved_trainer):
    from lasro.generators import lora_weight_change

    unet = moved_trainer.gen.unet
    total, count = 0.0, 0
    for module in unet.modules():
        if isinstance(getattr(module, "lora_A", None), torch.nn.ModuleDict) and "default" in module.lora_A:
            a = module.lora_A["default"].weight.detach().flatten(1)
            b = module.lora_B["default"].weight.detach().flatten(1)
            delta = module.scaling["default"] * (b @ a)  # the explicit weight change
            total, count = total + float(delta.square().sum()), count + delta.numel()
    got = lora_weight_change(unet)
    assert got.requires_grad and got.item() == pytest.approx(total / count, rel=1e-4)


def test_cheaper_regularisers_skip_the_reference_pass(moved_trainer):
    """lora_l2 never runs the anchor's reference pass; anchor_every k runs it on every k-th step only."""
    t, a = moved_trainer, moved_trainer.cfg.lasro
    saved = (a.regularizer, a.anchor_every, a.anchor)
    calls = []
    real_model = t.method.anchor_model

    def counting_anchor_model():
        calls.append(1)
        return real_model()

    t.method.anchor_model = counting_anchor_model
    try:
        a.anchor = "initial"
        a.regularizer = "lora_l2"
        loss, stats = t.method.generator_loss(["a red circle", "a blue square"])
        assert calls == [] and stats["generator/lora_weight_change"] > 0 and "generator/anchor" not in stats
        a.regularizer, a.anchor_every = "anchor", 3
        due, anchored = [], []
        for _ in range(3):
            due.append(t.method.generator_steps_taken() % 3 == 0)
            anchored.append("generator/anchor" in t.generator_step(t.method.generator_loss))
        assert anchored == due and sum(anchored) == 1 and len(calls) == 1
    finally:
        a.regularizer, a.anchor_every, a.anchor = saved
        del t.method.anchor_model


def test_accuracy_scaled_learning_rate_follows_the_gates_accuracy(moved_trainer):
    t, a = moved_trainer, moved_trainer.cfg.lasro
    saved = (a.lr_accuracy, list(t.method.pair_accuracy_history))
    base = [g["lr"] for g in t.gen_opt.param_groups]
    try:
        a.lr_accuracy = 0.9
        t.method.pair_accuracy_history = [0.6]
        with t.method.accuracy_scaled_lr() as scale:
            assert scale == pytest.approx(0.25) and t.gen_opt.param_groups[0]["lr"] == pytest.approx(0.25 * base[0])
        assert [g["lr"] for g in t.gen_opt.param_groups] == base  # restored
        t.method.pair_accuracy_history = [0.97]
        with t.method.accuracy_scaled_lr() as scale:
            assert scale == 1.0  # never above the configured rate
        a.lr_accuracy = None
        with t.method.accuracy_scaled_lr() as scale:
            assert scale is None and [g["lr"] for g in t.gen_opt.param_groups] == base
    finally:
        a.lr_accuracy, t.method.pair_accuracy_history = saved


def test_reused_round_inputs_pay_for_references_once_a_round(moved_trainer):
    """lasro.round_inputs: reused: every step of a round trains on the first step's prompts and noises; the
    first step's outputs are the round-start reference (the same as a pass of the round's starting weights)
    and the anchor's pass runs once a round, not once a step."""
    t, a, m = moved_trainer, moved_trainer.cfg.lasro, moved_trainer.method
    saved = (a.round_inputs, a.anchor, a.regularizer)
    calls = {"anchor": 0, "start": 0}
    real = {"anchor": m.anchor_model, "start": m.round_start_model}

    def counting(kind):
        def model():
            calls[kind] += 1
            return real[kind]()
        return model

    m.anchor_model, m.round_start_model = counting("anchor"), counting("start")
    try:
        a.round_inputs, a.anchor, a.regularizer = "reused", "initial", "anchor"
        with m.round_of_steps() as (loss_fn, batches):
            assert len(batches) == t.cfg.algorithm.generator_steps
            assert all(b == batches[0] for b in batches)  # one set of micro-batches for the whole round
            first = t.generator_step(loss_fn, batches=batches[0])
            kept = m._round_cache[0]
            assert first["generator/surrogate_gain_std_2step"] == 0.0  # the start is the step's own output
            later = [t.generator_step(loss_fn, batches=batches[-1]) for _ in range(2)]
            assert m._round_cache[0] is kept  # the same noises, references and scores
            emb, noise, eps = kept["inputs"]
            with torch.no_grad(), real["start"]() as start_unet:
                starts = t.gen.sample(start_unet, noise, emb, renoise=eps)
        assert all(torch.allclose(s, k, atol=1e-5) for s, k in zip(starts, kept["starts"]))
        assert calls == {"anchor": 1, "start": 0}  # one anchor pass in three steps, no start pass
        assert all(r["generator/anchor"] > 0 for r in later) and m._round_cache is None
    finally:
        a.round_inputs, a.anchor, a.regularizer = saved
        del m.anchor_model, m.round_start_model


def test_a_rounds_first_step_needs_no_round_start_pass(moved_trainer):
    """Fresh inputs: at a round's first step the weights are the round's starting ones, so the step's own
    outputs are its round-start reference (gain 0, as a pass would give); later steps pay for the pass."""
    t, a, m = moved_trainer, moved_trainer.cfg.lasro, moved_trainer.method
    saved = (a.round_inputs, a.regularizer)
    calls = []
    real = m.round_start_model

    def counting():
        calls.append(m.generator_steps_taken())
        return real()

    m.round_start_model = counting
    try:
        a.round_inputs, a.regularizer = "fresh", "none"
        with m.round_of_steps() as (loss_fn, batches):
            first_step = m.generator_steps_taken()
            stats = [t.generator_step(loss_fn, batches=batches) for _ in range(3)]
        assert calls == [first_step + 1, first_step + 2]  # no pass at the first step, one at each later one
        assert stats[0]["generator/surrogate_gain_std_2step"] == 0.0
        assert stats[0]["generator/rms_latent_move_2step"] == 0.0
        assert stats[2]["generator/rms_latent_move_2step"] > 0  # the later steps compare with the real start
    finally:
        a.round_inputs, a.regularizer = saved
        del m.round_start_model


def test_reused_round_inputs_refuse_anchor_every():
    from lasro.methods.lasro import LaSROConfig

    with pytest.raises(ValueError, match="anchor_every.*round_inputs: reused"):
        LaSROConfig(round_inputs="reused", anchor_every=4)


def test_max_latent_move_stops_the_surrogate_gradient_of_outputs_that_moved_too_far(moved_trainer):
    """lasro.max_latent_move: an output further than the bound from the round start (RMS, latents) gets no
    surrogate gradient; the share is logged."""
    t, a, m = moved_trainer, moved_trainer.cfg.lasro, moved_trainer.method
    saved = (a.round_inputs, a.regularizer, a.max_latent_move)
    try:
        a.round_inputs, a.regularizer = "fresh", "none"
        for bound, out_share in ((1e-9, 1.0), (1e9, 0.0)):
            a.max_latent_move = bound
            m._round_start = [p.detach().clone() * 0 for p in t.lora_params]  # a start far from these weights
            m._round_start_step = -1
            torch.manual_seed(3)
            loss, stats = m.generator_loss(["a red circle", "a blue square"])
            assert stats["generator/rms_latent_move_2step"] > 1e-9
            assert stats["generator/moved_out_share_2step"] == out_share
            if out_share == 1.0:  # every output moved out: the surrogate term gives no gradient
                assert loss.requires_grad is False or float(loss.detach()) == 0.0
    finally:
        a.round_inputs, a.regularizer, a.max_latent_move = saved
        m._round_start = None
