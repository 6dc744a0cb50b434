"""Where models come from: a hub id or local folder, the shipped ``demo:shapes`` model, or a pipeline
built in code (``tiny:sdxl``, ``tiny:sd``, ``random:sdxl-turbo``)."""
from __future__ import annotations

import os

import torch

from lasro.devices import DTYPES, default_device  # noqa: F401  (re-exported by lasro.generators)

DEMO_MODEL = "demo:shapes"  # the SDXL-architecture shapes model shipped inside the package
# its folder, found without importing lasro.demo (whose build recipe imports the generator)
PACKAGED_MODEL = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "demo", "shapes_sdxl")


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message says where lasro looked and what to do."""


def _looks_like_path(name: str) -> bool:
    """Hub ids are 'name' or 'org/name'; anything else that is not a folder was meant as one."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


def load_pipeline(pretrained: str, dtype: torch.dtype, variant: str | None = None, unet: str | None = None,
                  tiny: dict | None = None):
    """Load a pipeline from a hub id or local folder, the shipped ``demo:shapes`` model, or build one:
    ``tiny:sdxl``, ``tiny:sd``, ``random:sdxl-turbo``."""
    from diffusers import DiffusionPipeline, UNet2DConditionModel

    from lasro.generators.tiny import build_random_sdxl_pipeline, build_tiny_pipeline

    if pretrained.startswith("tiny:"):
        pipe = build_tiny_pipeline(family=pretrained.split(":", 1)[1], **(tiny or {}))
        return pipe if dtype == torch.float32 else pipe.to(dtype)
    if pretrained == "random:sdxl-turbo":
        return build_random_sdxl_pipeline(dtype)
    if pretrained == DEMO_MODEL:
        if not os.path.isfile(os.path.join(PACKAGED_MODEL, "model_index.json")):
            raise ModelLoadError(f"the demo model is missing from {PACKAGED_MODEL}; regenerate it with "
                                 "`lasro demo build` or reinstall lasro")
        pretrained = PACKAGED_MODEL
    expanded = os.path.expanduser(pretrained)
    if _looks_like_path(pretrained) and not os.path.isdir(expanded):
        raise ModelLoadError(
            f"model folder {pretrained!r} does not exist. Set model.pretrained to a folder written by "
            f"`pipeline.save_pretrained` (with model_index.json), or to a hub id such as 'stabilityai/sdxl-turbo'.")
    kwargs = {"dtype": dtype}
    if variant:
        kwargs["variant"] = variant
    try:
        if unet:
            kwargs["unet"] = UNet2DConditionModel.from_pretrained(unet, dtype=dtype, variant=variant)
        return DiffusionPipeline.from_pretrained(expanded if os.path.isdir(expanded) else pretrained, **kwargs)
    except (OSError, ValueError) as e:
        hint = (f"could not load {pretrained!r}: {str(e).splitlines()[0][:300]}\n"
                "If this machine has no access to the Hugging Face hub, download the model elsewhere "
                f"(`hf download {pretrained} --local-dir ./models/NAME`), copy the folder here and set "
                "model.pretrained to that local folder (set HF_HUB_OFFLINE=1 to fail fast).")
        raise ModelLoadError(hint) from e
