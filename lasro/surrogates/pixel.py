"""The pixel-space surrogate (the paper's ablation): a small CNN on VAE-decoded images."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lasro.generators.few_step import PromptEmbeds
from lasro.surrogates.layers import groups, with_coordinates


class PixelSurrogate(nn.Module):
    """Ablation of the paper's latent surrogate: a small CNN on VAE-decoded images.

    Same interface as ``LatentSurrogate`` (latents in, one score out), so the trainer is unchanged; the
    frozen VAE decode runs inside ``forward`` and stays in the generator's gradient path. The prompt
    enters as FiLM from the mean of its token embeddings, the step count as a learned embedding.
    No pretrained weights: this is the "pixel-space critic" the paper's encoder surrogate is compared to.
    ``reads_pixels``: the trainer keeps the decoded images of buffered samples and passes them as
    ``pixels`` (uint8), so surrogate training skips the decode (about 95% of its cost on the demo).
    """

    reads_pixels = True

    def __init__(self, decode_pixels, text_dim: int, channels: int = 32, layers: int = 3,
                 step_embedding: bool = True, coordinates: bool = False):
        super().__init__()
        self.decode_pixels = decode_pixels  # a callable, not a submodule: the VAE belongs to the generator
        self.coordinates = coordinates
        convs, c = [], 3 + (2 if coordinates else 0)
        for _ in range(layers):
            convs += [nn.Conv2d(c, channels, 3, stride=2, padding=1), nn.GroupNorm(groups(channels), channels),
                      nn.SiLU()]
            c = channels
        self.convs = nn.Sequential(*convs)
        self.text = nn.Linear(text_dim, 2 * channels)
        self.step_embedding = nn.Embedding(3, 2 * channels) if step_embedding else None
        for m in (self.text, self.step_embedding):
            if m is not None:
                nn.init.zeros_(m.weight)  # starts unconditioned: FiLM scale 1, shift 0
        nn.init.zeros_(self.text.bias)
        self.out = nn.Linear(channels, 1, bias=False)  # no bias, as in ScoreHead

    def backbone_parameters(self) -> list:
        return []  # no pretrained backbone: every weight is trained at surrogate.lr_head

    def forward(self, latents: torch.Tensor, embeds: PromptEmbeds, steps: torch.Tensor,
                pixels: torch.Tensor | None = None) -> torch.Tensor:
        """``pixels``: the latents' decoded images (uint8) if already known; no gradient reaches the
        latents through them, so the generator's path always decodes."""
        return self.score_rgb(self.images(latents, pixels), embeds, steps)

    def images(self, latents: torch.Tensor, pixels: torch.Tensor | None = None) -> torch.Tensor:
        """The latents' images in [0, 1]: decoded (in the gradient path), or the cached uint8 ``pixels``."""
        if pixels is None:
            return self.decode_pixels(latents).float()
        return pixels.to(latents.device).float() / 255

    def score_rgb(self, rgb: torch.Tensor, embeds: PromptEmbeds, steps: torch.Tensor) -> torch.Tensor:
        """Scores of decoded images in [0, 1] (an ensemble decodes once and calls this per member)."""
        x = rgb * 2 - 1
        h = self.convs(with_coordinates(x) if self.coordinates else x).mean(dim=(2, 3))
        film = self.text(embeds.hidden.float().mean(dim=1))
        if self.step_embedding is not None:
            film = film + self.step_embedding(steps.to(rgb.device).long())
        scale, shift = film.chunk(2, dim=-1)
        return self.out(F.silu(h * (1 + scale) + shift)).squeeze(-1)
