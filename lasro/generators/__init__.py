"""Generators: the few-step diffusers adapter and offline tiny pipelines."""
from .few_step import FewStepGenerator, ModelLoadError, PromptEmbeds, load_pipeline
from .tiny import TinySpec, build_random_sdxl_pipeline, build_tiny_pipeline

__all__ = ["FewStepGenerator", "ModelLoadError", "PromptEmbeds", "load_pipeline", "TinySpec",
           "build_tiny_pipeline", "build_random_sdxl_pipeline"]
