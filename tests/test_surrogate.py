import numpy as np
import pytest
import torch

from lasro.rollouts import ReplayBuffer, ranked_pairs
from lasro.generators.few_step import FewStepGenerator, PromptEmbeds
from lasro.generators.tiny import build_tiny_pipeline
from lasro.surrogates import LatentSurrogate, bradley_terry_loss


def test_bradley_terry_loss_values():
    win, lose = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 0.0])
    expected = -(torch.log(torch.sigmoid(torch.tensor(2.0))) + torch.log(torch.tensor(0.5))) / 2
    torch.testing.assert_close(bradley_terry_loss(win, lose), expected)


def test_backbone_is_the_generators_unet_encoder_and_only_adapters_train():
    gen = FewStepGenerator(build_tiny_pipeline(family="sdxl"))
    s = LatentSurrogate(gen.unet)
    torch.testing.assert_close(s.down_blocks[0].resnets[0].conv1.weight, gen.unet.down_blocks[0].resnets[0].conv1.weight)
    s.add_backbone_lora(2, 2)
    trainable = {n for n, p in s.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n.startswith(("head.", "step_embedding.")) for n in trainable)
    latents = torch.randn(2, 4, 8, 8, requires_grad=True)
    score = s(latents, gen.encode_prompts(["a", "b"]), torch.tensor([1, 2]))
    assert score.shape == (2,)
    score.sum().backward()
    assert latents.grad.abs().sum() > 0  # differentiable in the latent: the generator can ascend it
    assert all(p.grad is None for n, p in s.named_parameters() if n not in trainable)


def test_full_backbone_trains_although_the_generator_unet_is_frozen():
    """``surrogate.backbone: full``: the copied encoder weights get gradients, the generator's do not."""
    from lasro.methods import load_config
    from lasro.surrogates import build_surrogate

    gen = FewStepGenerator(build_tiny_pipeline(family="sdxl"))
    assert not any(p.requires_grad for p in gen.unet.parameters())
    cfg = load_config(None, ["surrogate.space=latent", "surrogate.backbone=full"])
    s = build_surrogate(cfg.surrogate, gen)
    score = s(torch.randn(2, 4, 8, 8), gen.encode_prompts(["a", "b"]), torch.tensor([1, 2]))
    score.sum().backward()
    conv = s.down_blocks[0].resnets[0].conv1.weight
    assert conv.requires_grad and conv.grad is not None and conv.grad.abs().sum() > 0
    assert gen.unet.down_blocks[0].resnets[0].conv1.weight.grad is None
    frozen = build_surrogate(load_config(None, ["surrogate.space=latent", "surrogate.backbone=frozen"]).surrogate, gen)
    assert not any(p.requires_grad for p in frozen.backbone_parameters())


def test_surrogate_learns_a_synthetic_latent_ranking():
    """Reward = mean of latent channel 0; held-out same-prompt pair accuracy must reach 0.9."""
    torch.manual_seed(0)
    gen = FewStepGenerator(build_tiny_pipeline(family="sdxl"))
    s = LatentSurrogate(gen.unet)
    s.add_backbone_lora(4, 4)
    prompts = ["a red circle", "a blue square", "a green tree", "a cat"]
    cache = {p: gen.encode_prompts([p]) for p in prompts}
    embeds = lambda ps: PromptEmbeds.cat([cache[p] for p in ps])  # noqa: E731

    def make(n, seed):
        g = torch.Generator().manual_seed(seed)
        lat = torch.randn(n, 4, 8, 8, generator=g)
        lat[:, 0] += (torch.rand(n, generator=g) * 2 - 1)[:, None, None]
        return lat, [prompts[i % 4] for i in range(n)], lat[:, 0].mean((1, 2)).numpy()

    buf = ReplayBuffer(capacity=1024)
    lat, pr, r = make(512, 1)
    buf.add(lat, pr, r, np.full(512, 2), round_index=0)
    opt = torch.optim.AdamW([p for p in s.parameters() if p.requires_grad], lr=1e-3)
    rng = np.random.default_rng(0)
    for _ in range(150):
        w, l = buf.sample_pairs(32, rng)
        x, p, st = buf.gather(np.concatenate([w, l]))
        sc = s(x, embeds(p), st)
        loss = bradley_terry_loss(sc[:32], sc[32:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    lat, pr, r = make(128, 2)  # fresh, never trained on
    w, l = ranked_pairs(pr, np.full(128, 2), r)
    with torch.no_grad():
        sc = s(lat, embeds(pr), torch.full((128,), 2)).numpy()
    accuracy = float(np.mean(sc[w] > sc[l]))
    assert accuracy >= 0.9, accuracy


def _pixel_ensemble(members: int = 3):
    from lasro.methods import load_config
    from lasro.surrogates import build_surrogate

    gen = FewStepGenerator(build_tiny_pipeline(family="sdxl"))
    cfg = load_config(None, ["surrogate.space=pixel", f"surrogate.ensemble={members}", "surrogate.pessimism=1.0"])
    return gen, build_surrogate(cfg.surrogate, gen)


def test_pixel_ensemble_decodes_once_and_each_member_gets_its_own_loss(monkeypatch):
    from lasro.surrogates import SurrogateEnsemble

    torch.manual_seed(0)
    gen, s = _pixel_ensemble(3)
    assert isinstance(s, SurrogateEnsemble) and s.reads_pixels and len(s.members) == 3
    calls = []
    decode = gen.decode_pixels
    monkeypatch.setattr(s.members[0], "decode_pixels", lambda z: calls.append(1) or decode(z))
    latents = torch.randn(4, 4, 8, 8, requires_grad=True)
    embeds = gen.encode_prompts(["a", "b", "a", "b"])
    scores = s(latents, embeds, torch.tensor([1, 2, 1, 2]))
    assert scores.shape == (4, 3) and len(calls) == 1  # one decode for all members
    # independently initialised: the members disagree before training
    assert scores.std(dim=-1).min() > 0
    # the pixels a buffer caches give the same scores as decoding
    pixels = (decode(latents.detach()).clamp(0, 1) * 255).round().to(torch.uint8)
    torch.testing.assert_close(s(latents, embeds, torch.tensor([1, 2, 1, 2]), pixels=pixels), scores,
                               atol=0.05, rtol=0)
    # a loss on member 1 alone trains member 1 alone
    bradley_terry_loss(scores[:2, 1], scores[2:, 1]).backward()
    grads = [sum(float(p.grad.abs().sum()) for p in m.parameters() if p.grad is not None) for m in s.members]
    assert grads[1] > 0 and grads[0] == 0 and grads[2] == 0
    assert latents.grad.abs().sum() > 0  # the decode stays in the generator's gradient path


def test_pessimistic_score_is_the_members_lower_confidence_bound():
    from lasro.surrogates import mean_score, pessimistic

    scores = torch.tensor([[1.0, 3.0], [2.0, 2.0]])
    torch.testing.assert_close(mean_score(scores), torch.tensor([2.0, 2.0]))
    # equal means; the sample the members disagree on scores lower
    lcb = pessimistic(scores, 1.0)
    torch.testing.assert_close(lcb, torch.tensor([2.0 - 2 ** 0.5, 2.0]))
    torch.testing.assert_close(pessimistic(scores, 0.0), mean_score(scores))
    # against reference scores the spread is over each member's change: a member offset is no disagreement
    offset = torch.tensor([[0.0, 5.0], [1.0, 3.0]])
    torch.testing.assert_close(pessimistic(offset + 0.5, 1.0, reference=offset), torch.tensor([3.0, 2.5]))
    torch.testing.assert_close(pessimistic(torch.tensor([[1.0, 3.0]]), 1.0, reference=torch.tensor([[0.0, 0.0]])),
                               torch.tensor([2.0 - 2 ** 0.5]))
    single = torch.tensor([0.5, -1.0])  # a single surrogate's scores pass through both
    assert pessimistic(single, 2.0) is single and mean_score(single) is single


def test_ensemble_config_errors_name_the_fix():
    import pytest

    from lasro.config import ConfigError
    from lasro.methods import load_config

    with pytest.raises(ConfigError, match="surrogate.ensemble to 2 or more"):
        load_config(None, ["surrogate.pessimism=1.0"])
    with pytest.raises(ConfigError, match="surrogate.ensemble must be at least 1"):
        load_config(None, ["surrogate.ensemble=0"])
    with pytest.raises(ConfigError, match="surrogate.pessimism must be >= 0"):
        load_config(None, ["surrogate.ensemble=2", "surrogate.pessimism=-1"])


def test_latent_ensemble_members_have_their_own_backbone_adapters():
    from lasro.methods import load_config
    from lasro.surrogates import SurrogateEnsemble
    from lasro.surrogates import build_surrogate, surrogate_param_groups

    gen = FewStepGenerator(build_tiny_pipeline(family="sdxl"))
    cfg = load_config(None, ["surrogate.space=latent", "surrogate.ensemble=2", "surrogate.lora_rank=2"])
    s = build_surrogate(cfg.surrogate, gen)
    assert isinstance(s, SurrogateEnsemble) and not s.reads_pixels
    scores = s(torch.randn(3, 4, 8, 8), gen.encode_prompts(["a", "b", "c"]), torch.tensor([1, 2, 1]))
    assert scores.shape == (3, 2)
    lora = [n for n, p in s.named_parameters() if p.requires_grad and "lora_" in n]
    assert {n.split(".")[1] for n in lora} == {"0", "1"}
    # the optimiser's backbone group holds both members' adapters at surrogate.lr_backbone
    groups = surrogate_param_groups(cfg.surrogate, s)
    assert len(groups) == 2 and groups[1]["lr"] == cfg.surrogate.lr_backbone
    assert sum(p.numel() for p in groups[1]["params"]) == sum(p.numel() for n, p in s.named_parameters() if n in lora)


@pytest.mark.parametrize("space", ["pixel", "latent"])
def test_coordinate_channels_let_a_surrogate_tell_where_a_feature_is(space):
    """surrogate.coordinates builds either head with two coordinate channels (its pooled features then carry
    position); scores keep their shape and the gradient still reaches the latents."""
    from lasro.generators import FewStepGenerator
    from lasro.methods import load_config
    from lasro.surrogates import build_surrogate

    cfg = load_config(None, ["model.pretrained=tiny:sdxl", f"surrogate.space={space}", "surrogate.coordinates=true"])
    gen = FewStepGenerator.from_config(cfg.model)
    sur = build_surrogate(cfg.surrogate, gen)
    head = sur.head if space == "latent" else sur
    assert head.coordinates
    lat = torch.randn(gen.latent_shape(2))
    emb = gen.encode_prompts(["a red circle", "a red circle"])
    lat.requires_grad_(True)
    score = sur(lat, emb, torch.tensor([1, 1]))
    score.sum().backward()
    assert score.shape == (2,) and lat.grad is not None and lat.grad.abs().sum() > 0


def test_checkpointed_encoder_gives_the_same_scores_and_gradients():
    gen = FewStepGenerator(build_tiny_pipeline(family="sdxl"))
    emb, steps = gen.encode_prompts(["a", "b"]), torch.tensor([1, 2])
    latents = torch.randn(2, 4, 8, 8)
    results = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        s = LatentSurrogate(gen.unet, gradient_checkpointing=checkpointing)
        s.add_backbone_lora(2, 2)
        x = latents.clone().requires_grad_(True)
        score = s(x, emb, steps)
        score.sum().backward()
        results.append((score.detach(), x.grad))
    torch.testing.assert_close(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1])


def test_fewer_encoder_blocks_make_a_smaller_surrogate_that_still_scores():
    gen = FewStepGenerator(build_tiny_pipeline(family="sdxl"))
    full, short = LatentSurrogate(gen.unet), LatentSurrogate(gen.unet, encoder_blocks=1)
    assert len(short.down_blocks) == 1 and short.mid_block is None
    assert sum(p.numel() for p in short.parameters()) < sum(p.numel() for p in full.parameters())
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    score = short(x, gen.encode_prompts(["a", "b"]), torch.tensor([1, 2]))
    score.sum().backward()
    assert score.shape == (2,) and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="encoder_blocks must be 1 to"):
        LatentSurrogate(gen.unet, encoder_blocks=len(gen.unet.down_blocks) + 1)


def test_checkpointed_surrogate_gives_the_generator_the_same_gradient(tiny_dirs, tmp_path):
    """The generator's step runs the surrogate frozen and unfreezes it before backward: the recomputation
    must replay the forward pass as it was."""
    from lasro.training import Trainer

    from .conftest import tiny_train_config

    cfg = tiny_train_config(tmp_path, tiny_dirs["sdxl"], surrogate={"space": "latent", "coordinates": False})
    trainer = Trainer(cfg)
    trainer.method.warm_start()
    grads, draws = [], trainer.draws.state_dict()
    for checkpointing in (False, True):
        trainer.method.base_surrogate.gradient_checkpointing = checkpointing
        trainer.gen_opt.zero_grad(set_to_none=True)
        trainer.draws.load_state_dict(draws)  # the same noises both times
        loss, _ = trainer.method.generator_loss(["a red circle", "a blue square"])
        loss.backward()
        grads.append([p.grad.clone() for p in trainer.lora_params])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
