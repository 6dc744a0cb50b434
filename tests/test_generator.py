import pytest
import torch

from lasro.generators import FewStepGenerator, ModelLoadError, load_pipeline


def _gen(path, **kw):
    return FewStepGenerator(load_pipeline(path, torch.float32), **kw)


@pytest.mark.parametrize("family", ["sdxl", "sd"])
def test_one_step_sample_equals_the_diffusers_pipeline(tiny_dirs, family):
    g = _gen(tiny_dirs[family])
    prompts = ["a red square", "two blue circles"]
    noise = torch.randn(g.latent_shape(2), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        (x1,) = g.sample(g.unet, noise, g.encode_prompts(prompts), timesteps=[999])
    ref = g.pipe(prompts, num_inference_steps=1, guidance_scale=0.0, latents=noise.clone(),
                 output_type="latent").images
    assert x1.shape == ref.shape == (2, 4, 8, 8)
    torch.testing.assert_close(x1, ref, rtol=1e-4, atol=1e-4)


def test_lcm_scheduler_one_step_matches_pipeline(tiny_dirs):
    g = _gen(tiny_dirs["sdxl"], scheduler="lcm")
    assert g.is_lcm
    noise = torch.randn(g.latent_shape(1), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        (x1,) = g.sample(g.unet, noise, g.encode_prompts(["a cat"]), timesteps=[999])
    ref = g.pipe(["a cat"], num_inference_steps=1, guidance_scale=0.0, latents=noise.clone(),
                 output_type="latent").images
    torch.testing.assert_close(x1, ref, rtol=1e-4, atol=1e-4)


def test_gradients_reach_lora_and_no_frozen_weight(tiny_dirs):
    g = _gen(tiny_dirs["sdxl"])
    lora = g.add_lora(4, 4)
    assert lora and all(p.requires_grad for p in lora)
    x1, x2 = g.sample(g.unet, torch.randn(g.latent_shape(2)), g.encode_prompts(["a", "b"]))
    (x1.square().mean() + x2.square().mean()).backward()
    lora_ids = {id(p) for p in lora}
    for module in (g.unet, g.pipe.vae, g.pipe.text_encoder, g.pipe.text_encoder_2):
        for name, p in module.named_parameters():
            if id(p) in lora_ids:
                assert p.grad is not None, name
                if "lora_B" in name:  # lora_A's gradient is zero while B is at its zero init
                    assert p.grad.abs().sum() > 0, name
            else:
                assert not p.requires_grad and p.grad is None, name


def test_two_steps_flow_through_both_calls_unless_stopped(tiny_dirs):
    g = _gen(tiny_dirs["sdxl"])
    emb = g.encode_prompts(["a"])
    for stop, expect_grad in ((False, True), (True, False)):
        noise = torch.randn(g.latent_shape(1), requires_grad=True)
        _, x2 = g.sample(g.unet, noise, emb, renoise=[torch.randn(g.latent_shape(1))], stop_grad_at_t1=stop)
        if expect_grad:
            (grad,) = torch.autograd.grad(x2.sum(), noise)
            assert grad.abs().sum() > 0
        else:
            assert not x2.requires_grad


def test_decode_gives_rgb_images(tiny_dirs):
    g = _gen(tiny_dirs["sd"])
    images = g.decode(torch.randn(g.latent_shape(3)))
    assert len(images) == 3 and images[0].size == (64, 64) and images[0].mode == "RGB"


def test_missing_local_folder_is_named():
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_pipeline("./no/such/model", torch.float32)


def test_hub_id_without_network_says_how_to_use_a_local_folder():
    with pytest.raises(ModelLoadError, match="local folder"):
        load_pipeline("stabilityai/sdxl-turbo-does-not-exist", torch.float32)
