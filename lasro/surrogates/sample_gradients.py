"""Per-sample gradient equalisation for the generator objective (ours, not the paper's).

Moving one latent along the surrogate's gradient helps the true reward only for a short step, then
hurts (docs/results/demo-surrogate/). Under the plain objective each sample pulls the LoRA
with its own gradient's size, so samples with steep surrogate gradients take long steps while the
others barely move. ``equalize_sample_gradients`` is an identity whose backward rescales each sample's
gradient to the batch's mean RMS: the same total pull, shared equally between samples.
"""
from __future__ import annotations

import torch


class _EqualizeSampleGradients(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        rms = grad.float().flatten(1).square().mean(1).sqrt()
        scale = rms.mean() / rms.clamp_min(torch.finfo(torch.float32).tiny)
        scale = torch.where(rms > 0, scale, torch.zeros_like(scale))
        return grad * scale.to(grad.dtype).view(-1, *([1] * (grad.dim() - 1)))


def equalize_sample_gradients(x: torch.Tensor) -> torch.Tensor:
    """``x`` unchanged; in backward, each sample's (first-dimension row's) gradient rescaled to the batch's
    mean per-sample RMS (a zero gradient stays zero)."""
    return _EqualizeSampleGradients.apply(x)
