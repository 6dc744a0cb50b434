"""Switches on a generator's LoRA: the initial model for a while (LoRA off), or other LoRA weights for a while."""
from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def adapters_off(unet):
    """The frozen initial model for the duration: the LoRA switched off (anchor and reference passes)."""
    unet.disable_adapters()
    try:
        yield unet
    finally:
        unet.enable_adapters()


@contextlib.contextmanager
def weights_swapped(params: list[torch.Tensor], values: list[torch.Tensor]):
    """``params`` hold ``values`` for the duration, then their own again (the round anchor's reference pass)."""
    own = [p.detach().clone() for p in params]
    copy_weights(params, values)
    try:
        yield
    finally:
        copy_weights(params, own)


@torch.no_grad()
def copy_weights(params: list[torch.Tensor], values: list[torch.Tensor]) -> None:
    """Write ``values`` into ``params`` in place (each cast to its parameter's device and dtype)."""
    for p, v in zip(params, values):
        p.copy_(v.to(p.device, p.dtype))


def lora_weight_change(unet) -> torch.Tensor:
    """The mean squared change the LoRA makes to the weights it adapts, ``sum ||scale * B A||^2 / sum numel``
    over the adapted layers, differentiable and without a forward pass: ``||B A||^2 = sum((B^T B) * (A A^T))``
    costs r x r products per layer (the ``lora_l2`` regulariser)."""
    total, count = None, 0
    for module in unet.modules():
        lora_a, lora_b = getattr(module, "lora_A", None), getattr(module, "lora_B", None)
        if not isinstance(lora_a, torch.nn.ModuleDict) or not lora_a:
            continue
        for name in lora_a:
            if name not in module.active_adapters:
                continue
            a = lora_a[name].weight.float().flatten(1)  # r x (in * k * k)
            b = lora_b[name].weight.float().flatten(1)  # out x r
            sq = module.scaling[name] ** 2 * ((b.T @ b) * (a @ a.T)).sum()
            total = sq if total is None else total + sq
            count += b.shape[0] * a.shape[1]
    if total is None:
        raise ValueError("the UNet has no active LoRA layers: nothing for lora_l2 to regularise")
    return total / count
