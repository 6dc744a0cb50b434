"""Generators: the few-step diffusers adapter, its LoRA switches, model loading and offline tiny pipelines."""
from lasro.generators.few_step import FewStepGenerator, PromptEmbedCache, PromptEmbeds
from lasro.generators.loading import (
           DTYPES,
           ModelLoadError,
           default_device,
           load_pipeline,
)
from lasro.generators.lora import adapters_off, copy_weights, lora_weight_change, weights_swapped
from lasro.generators.tiny import (
           TinySpec,
           build_random_sdxl_pipeline,
           build_tiny_pipeline,
)

__all__ = ["DTYPES", "FewStepGenerator", "ModelLoadError", "PromptEmbedCache", "PromptEmbeds", "TinySpec",
           "adapters_off", "build_random_sdxl_pipeline", "build_tiny_pipeline", "default_device", "load_pipeline",
           "lora_weight_change", "weights_swapped", "copy_weights"]
