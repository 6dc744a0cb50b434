"""The demo model: the build command (at a tiny scale), the shipped weights, `lasro eval`, the default job."""
import json
import os

import pytest
import torch

from lasro.demo.build import PACKAGED_MODEL, BuildSpec, build, word_tokenizer

from .conftest import tiny_train_config


def test_word_tokenizer_gives_one_token_per_domain_word_and_spells_other_words():
    tok = word_tokenizer(32)
    ids = tok("two red triangles, a blue square", add_special_tokens=False).input_ids
    assert len(ids) == 7
    assert tok.convert_ids_to_tokens(ids)[2] == "triangles</w>"
    assert len(tok("cat", add_special_tokens=False).input_ids) == 3  # unknown words fall back to letters
    assert tok.unk_token_id not in tok("cat", add_special_tokens=False).input_ids


@pytest.fixture(scope="module")
def smoke_build(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    spec = BuildSpec(scale=0.004, eval_prompts=8)
    record = build(str(root / "model"), str(root / "work"), spec)
    return root, spec, record


def test_build_writes_a_pipeline_that_lasro_and_diffusers_load(smoke_build):
    from diffusers import StableDiffusionXLPipeline

    from lasro.generators.few_step import FewStepGenerator

    root, _, record = smoke_build
    model = root / "model"
    for part in ("model_index.json", "BUILD.json", "samples_2step.png", "unet/diffusion_pytorch_model.safetensors",
                 "vae/diffusion_pytorch_model.safetensors", "text_encoder_2/model.safetensors",
                 "tokenizer/tokenizer_config.json", "tokenizer_2/tokenizer_config.json"):
        assert (model / part).exists(), part
    saved = json.loads((model / "BUILD.json").read_text())
    assert saved["spec"]["seed"] == 0 and saved["eval"] == record["eval"]
    for k in ("reward_1step_mean", "reward_2step_mean", "exact_match_1step_mean", "exact_match_2step_mean"):
        assert 0.0 <= record["eval"][k] <= 1.0
    pipe = StableDiffusionXLPipeline.from_pretrained(str(model))
    assert pipe.unet.config.addition_embed_type == "text_time"
    gen = FewStepGenerator.from_pretrained(str(model))
    assert gen.resolution == 64 and gen.latent_shape(2) == (2, 4, 16, 16)
    assert type(pipe.scheduler).__name__ == "EulerAncestralDiscreteScheduler"


def test_work_folder_of_other_settings_is_refused(smoke_build, tmp_path):
    root, spec, _ = smoke_build
    with pytest.raises(ValueError, match="other settings \\(scale differ\\)"):
        build(str(tmp_path / "x"), str(root / "work"), BuildSpec(scale=0.005, eval_prompts=8))


def test_interrupted_build_resumes_from_the_stage_cache_and_reproduces_the_weights(smoke_build, tmp_path, caplog):
    from safetensors.torch import load_file

    root, spec, _ = smoke_build
    for stage in ("pairs", "student"):  # as if the build had been killed after the teacher stage
        os.remove(root / "work" / f"{stage}.pt")
    with caplog.at_level("INFO", logger="lasro.demo"):
        build(str(tmp_path / "again"), str(root / "work"), spec)
    assert "stage teacher: reusing" in caplog.text and "stage student done" in caplog.text
    a = load_file(str(root / "model" / "unet" / "diffusion_pytorch_model.safetensors"))
    b = load_file(str(tmp_path / "again" / "unet" / "diffusion_pytorch_model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


shipped = pytest.mark.skipif(not os.path.exists(os.path.join(PACKAGED_MODEL, "model_index.json")),
                             reason="shipped demo model not built")


@shipped
def test_shipped_model_is_small_and_records_how_it_was_built():
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(PACKAGED_MODEL)
                for f in fs if f.endswith(".safetensors"))
    assert total <= 25e6
    record = json.loads(open(os.path.join(PACKAGED_MODEL, "BUILD.json")).read())
    assert record["command"].startswith("lasro demo build") and record["spec"]["seed"] == 0
    assert record["spec"]["scale"] == 1.0


@shipped
def test_lasro_eval_on_the_shipped_model_prints_one_json_line(capsys):
    from lasro.cli import main

    assert main(["eval", "--prompts", "shapes:test:8", "--seeds", "2", "--judge", "jpeg_compressibility"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["samples"] == 16 and row["model"] == "demo:shapes"
    # the demo's reward: half detector, half fidelity, each logged, and the detector's exact-match (the judge)
    for k in ("reward_1step_mean", "reward_2step_mean", "reward/shapes_detector_2step_mean",
              "reward/shapes_fidelity_2step_mean", "shapes_detector/exact_match_1step_mean",
              "shapes_detector/exact_match_2step_mean"):
        assert 0.0 <= row[k] <= 1.0
    assert row["reward_2step_mean"] == pytest.approx(
        0.5 * row["reward/shapes_detector_2step_mean"] + 0.5 * row["reward/shapes_fidelity_2step_mean"])
    assert row["jpeg_compressibility/reward_2step_mean"] < 0  # minus kB: a judge scored the same samples


def test_default_job_is_the_demo():
    from lasro.methods import load_config

    cfg = load_config(None)
    assert cfg.model.pretrained == "demo:shapes"
    assert cfg.reward == [{"name": "shapes_detector", "weight": 0.5}, {"name": "shapes_fidelity", "weight": 0.5}]
    assert cfg.prompts.train == "shapes:train"


@shipped
def test_lasro_trains_the_shipped_model_with_the_detector(tmp_path):
    from lasro.training import Trainer

    cfg = tiny_train_config(tmp_path, "demo:shapes", reward="shapes_detector",
                            prompts={"train": "shapes:train", "eval": "shapes:test:2", "eval_seeds": 2})
    rows = Trainer(cfg).train()
    assert rows[-1]["round"] == 2
    assert "eval/exact_match_2step_mean" in rows[-1]
    assert (tmp_path / "lora" / "pytorch_lora_weights.safetensors").exists()


@shipped
def test_build_recipe_gives_the_shipped_architecture():
    """A rebuild (`lasro demo build`) puts together the same parts as the shipped model: same configs."""
    from lasro.demo.build import build_models

    spec = BuildSpec()
    parts = dict(zip(("vae", "text_encoder", "text_encoder_2", "unet"),
                     build_models(spec, word_tokenizer(spec.max_tokens))))
    for name, model in parts.items():
        with open(os.path.join(PACKAGED_MODEL, name, "config.json"), encoding="utf-8") as f:
            shipped_config = json.load(f)
        built = json.loads(json.dumps(dict(model.config) if name in ("vae", "unet") else model.config.to_dict()))
        for key, value in shipped_config.items():
            if key.startswith("_") or key in ("scaling_factor", "transformers_version", "architectures", "dtype"):
                continue  # versions, and what training (the VAE's latent scale) or saving fills in
            assert built.get(key) == value, (name, key)


def test_generators_do_not_import_the_demo():
    """Layering: lasro.demo.build is built on lasro.generators, never the other way round."""
    import subprocess
    import sys

    code = ("import sys, lasro.generators, lasro.generators.tiny; "
            "print([m for m in sys.modules if m.startswith('lasro.demo')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
