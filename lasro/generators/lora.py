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
    with torch.no_grad():
        for p, v in zip(params, values):
            p.copy_(v)
    try:
        yield
    finally:
        with torch.no_grad():
            for p, v in zip(params, own):
                p.copy_(v)
