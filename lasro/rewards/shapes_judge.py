"""``shapes_judge``: a small learned judge for the shapes demo, the analogue of ImageReward or PickScore.

Why: users' rewards are often networks trained on someone's data, smooth where the data was thin, and
those blind spots are what a fine-tune finds. This one is a 0.3 M-parameter CNN (about 1 MB, shipped in
``lasro/demo/shapes_judge/``) that reads the image's pixels and the prompt's objects and predicts the mean
of ``shapes_detector`` and ``shapes_fidelity`` (prompt faithfulness and image fidelity), trained on the demo
model's own 1- and 2-step samples and on rendered scenes, some scored against another prompt
(``lasro demo build-judge``, recorded in ``BUILD.json`` beside the weights). It pools its features globally,
so it cannot see where objects are. Its rules are the two rewards it imitates, so name them as its judges:
a gain in ``shapes_judge`` that they do not share is the judge being gamed.

Score in [0, 1] (a sigmoid). Differentiable in the pixels (``differentiable``), so DRaFT can read its
gradient, as a DRaFT user would with ImageReward.
"""
from __future__ import annotations

import json
import os

import numpy as np
import torch
from PIL import Image
from torch import nn

from lasro.rewards.base import Reward
from lasro.rewards.registry import register_reward
from lasro.shapes import KINDS, MAX_OBJECTS, parse_prompt

SHIPPED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "demo", "shapes_judge")
WEIGHTS = "judge.safetensors"


def prompt_vector(prompts: list[str]) -> torch.Tensor:
    """[B, 12]: how many of each (colour, shape) kind each prompt asks for, over MAX_OBJECTS."""
    out = torch.zeros(len(prompts), len(KINDS))
    for i, p in enumerate(prompts):
        for kind, n in parse_prompt(p).items():
            out[i, KINDS.index(kind)] = n / MAX_OBJECTS
    return out


class JudgeNet(nn.Module):
    """Conv features of the image, pooled globally, joined with the prompt's object counts by an MLP."""

    def __init__(self, width: int = 32):
        super().__init__()
        w = width
        layers, c_in = [], 3
        for c_out, stride in ((w, 2), (2 * w, 2), (4 * w, 2), (4 * w, 1)):
            layers += [nn.Conv2d(c_in, c_out, 3, stride, 1), nn.GroupNorm(8, c_out), nn.SiLU()]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Linear(4 * w + len(KINDS), 4 * w), nn.SiLU(), nn.Linear(4 * w, 4 * w), nn.SiLU(),
                                  nn.Linear(4 * w, 1))

    def forward(self, pixels: torch.Tensor, prompt_vec: torch.Tensor) -> torch.Tensor:
        """Logits [B] from pixels [B, 3, H, W] in [0, 1] and ``prompt_vector``s."""
        h = self.features(pixels * 2 - 1).mean(dim=(2, 3))
        return self.head(torch.cat([h, prompt_vec.to(h)], dim=1)).squeeze(1)


def load_judge(path: str = SHIPPED) -> JudgeNet:
    """The judge in folder ``path`` (default: the shipped one), in eval mode."""
    from safetensors.torch import load_file

    weights = os.path.join(path, WEIGHTS)
    if not os.path.isfile(weights):
        raise FileNotFoundError(f"shapes_judge: no {WEIGHTS} in {path!r}; build one with `lasro demo build-judge "
                                f"--out {path}` (the shipped judge is in {SHIPPED})")
    with open(os.path.join(path, "BUILD.json")) as f:
        width = json.load(f)["spec"]["width"]
    net = JudgeNet(width)
    net.load_state_dict(load_file(weights))
    return net.eval().requires_grad_(False)


def pil_pixels(images: list[Image.Image]) -> torch.Tensor:
    """uint8 RGB [N, 3, H, W] of PIL images (what the judge reads, and how its training data is kept)."""
    return torch.from_numpy(np.stack([np.asarray(im.convert("RGB")) for im in images])).permute(0, 3, 1, 2)


@torch.no_grad()
def judge_scores(net: JudgeNet, pixels: torch.Tensor, prompts: list[str], chunk: int = 256) -> torch.Tensor:
    """Scores in [0, 1] (on the CPU) of uint8 ``pixels`` [N, 3, H, W], ``chunk`` images at a time on the net's
    device (DRaFT's gradient path moves the net to the generator's)."""
    device = next(net.parameters()).device
    return torch.cat([torch.sigmoid(net(pixels[i:i + chunk].to(device).float() / 255.0,
                                        prompt_vector(prompts[i:i + chunk]))).cpu()
                      for i in range(0, len(prompts), chunk)])


@register_reward("shapes_judge", description="Shapes demo: a shipped 1 MB CNN trained to predict the mean of the "
                                             "detector and fidelity rewards; smooth, with blind spots (0-1)")
class ShapesJudge(Reward):
    def __init__(self, path: str = SHIPPED):
        self.net = load_judge(path)

    def differentiable(self, pixels: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        net = self.net.to(pixels.device)
        return torch.sigmoid(net(pixels.float(), prompt_vector(prompts)))

    def __call__(self, images: list[Image.Image], prompts: list[str], metadata: list[dict]) -> np.ndarray:
        return judge_scores(self.net, pil_pixels(images), prompts).double().numpy()
