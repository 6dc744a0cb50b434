import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory):
    """Tiny SDXL-style and SD-style pipelines saved to folders, loaded back with from_pretrained."""
    from lasro.generators.tiny import build_tiny_pipeline

    root = tmp_path_factory.mktemp("tiny")
    out = {}
    for family in ("sdxl", "sd"):
        path = root / family
        build_tiny_pipeline(family=family).save_pretrained(path)
        out[family] = str(path)
    return out


def tiny_train_config(output_dir, model: str, **sections):
    """A LaSRO config small enough for a test to train in seconds."""
    from lasro.methods import build_config

    data = {
        "seed": 0,
        "reward": "jpeg_compressibility",
        "model": {"pretrained": model},
        "lora": {"rank": 4, "alpha": 8},
        "surrogate": {"batch_pairs": 4, "lora_rank": 2, "lora_alpha": 2},
        "exploration": {"samples_per_prompt": 2, "prompts_per_round": 2},
        "algorithm": {"rounds": 2, "generator_steps": 2},
        "lasro": {"pretrain_collect_rounds": 1, "pretrain_surrogate_steps": 3, "surrogate_steps": 2},
        "optim": {"batch_size": 2, "lr": 1e-3},
        "prompts": {"train": ["a red circle", "a blue square", "a green tree"], "eval": ["a red square"],
                    "eval_seeds": 2},
        "logging": {"output_dir": str(output_dir), "checkpoint_every": 1, "checkpoints_total_limit": 2,
                    "progress": False},
    }
    for key, value in sections.items():
        data[key].update(value) if isinstance(value, dict) and isinstance(data.get(key), dict) else data.__setitem__(
            key, value)
    return build_config(data)
