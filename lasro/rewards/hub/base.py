"""Shared machinery of the model-backed rewards: device and dtype, batching, no-grad scoring."""
from __future__ import annotations

import abc
from typing import Any

import numpy as np
import torch
from PIL import Image

from lasro.devices import default_device, resolve_dtype
from lasro.rewards.base import Reward


def resolve_device(device: str | None) -> torch.device:
    return torch.device(device or default_device())


class HubReward(Reward):
    """A reward computed by pretrained models: loads them once (in ``__init__``, so a missing model
    fails before training starts), then scores images in batches of ``batch_size`` without gradients
    (lasro treats every reward as a black box; the surrogate supplies the gradients).

    Subclasses set ``default_pretrained``, implement ``load(pretrained)`` (store models on self) and
    ``score_batch`` (return scores and optional per-image info for one batch).
    """

    needs_weights = True
    default_pretrained: str = ""

    def __init__(self, pretrained: str | None = None, model: Any = None, processor: Any = None,
                 device: str | None = None, dtype: str | torch.dtype = "float32", batch_size: int = 8):
        if int(batch_size) < 1:
            raise ValueError(f"{self.name}: batch_size must be >= 1, got {batch_size}")
        self.pretrained = pretrained or self.default_pretrained
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype)
        self.batch_size = int(batch_size)
        self.model, self.processor = model, processor
        self.load(self.pretrained)
        self.model = self.model.to(self.device, self.dtype).eval().requires_grad_(False)

    @abc.abstractmethod
    def load(self, pretrained: str) -> None:
        """Fill ``self.model`` / ``self.processor`` (and anything else) where they were not injected."""

    @abc.abstractmethod
    def score_batch(self, images: list[Image.Image], prompts: list[str], metadata: list[dict]
                    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Scores (and per-image info) of one batch of at most ``batch_size`` images."""

    def fill_from_pretrained(self, model_class: Any, processor_class: Any, pretrained: str,
                             processor_source: str | None = None, processor_kwarg: str = "pretrained",
                             processor_hub_id: str | None = None) -> None:
        """``model_class`` / ``processor_class`` ``.from_pretrained`` for whichever was not injected."""
        from lasro.rewards.hub.weights import load_pretrained

        if self.model is None:
            self.model = load_pretrained(self.name, pretrained, model_class.from_pretrained,
                                         hub_id=self.default_pretrained)
        if self.processor is None:
            self.processor = load_pretrained(self.name, processor_source or pretrained, processor_class.from_pretrained,
                                             kwarg=processor_kwarg, hub_id=processor_hub_id or self.default_pretrained)

    def pixel_values(self, images: list[Image.Image]) -> torch.Tensor:
        """Images through the image processor, on the model's device and dtype."""
        processor = getattr(self.processor, "image_processor", self.processor)
        pixels = processor(images=[im.convert("RGB") for im in images], return_tensors="pt")["pixel_values"]
        return pixels.to(self.device, self.dtype)

    def __call__(self, images: list[Image.Image], prompts: list[str], metadata: list[dict]):
        scores: list[np.ndarray] = []
        info: dict[str, list[np.ndarray]] = {}
        with torch.inference_mode():
            for i in range(0, len(images), self.batch_size):
                end = i + self.batch_size
                s, extra = self.score_batch(images[i:end], prompts[i:end], metadata[i:end])
                scores.append(np.asarray(s, dtype=np.float64))
                for key, value in extra.items():
                    info.setdefault(key, []).append(np.asarray(value))
        return np.concatenate(scores) if scores else np.zeros(0), {k: np.concatenate(v) for k, v in info.items()}
