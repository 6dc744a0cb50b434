"""The latent surrogate reward R_psi(z, c): the generator's own UNet encoder plus a small CNN head.

Paper: backbone = pretrained UNet encoder (conv_in, down blocks, mid block; text via
cross-attention and SDXL's added conditions), head to a scalar, Bradley-Terry loss on
same-prompt pairs. Ours (METHOD.md section 4): weights copied from the generator's
UNet, LoRA on the backbone, a fixed timestep (0) and a learned step-count embedding.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from .generators.few_step import PromptEmbeds

SURROGATE_LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2"]


def _groups(channels: int) -> int:
    return math.gcd(channels, 8)


class ScoreHead(nn.Module):
    """Strided conv + GroupNorm + SiLU blocks, global average pool, linear to one score.

    Convs stride 2 only while the map is larger than 4x4: normalising a 1x1 map would
    erase what the backbone saw (tiny models reach that size quickly).
    """

    def __init__(self, in_channels: int, channels: int, layers: int = 2):
        super().__init__()
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        c = in_channels
        for _ in range(layers):
            self.convs.append(nn.Conv2d(c, channels, 3, padding=1))
            self.norms.append(nn.GroupNorm(_groups(channels), channels))
            c = channels
        # No bias: the Bradley-Terry loss ignores a constant shift, so a bias would get only
        # rounding-noise gradients that Adam amplifies into a random walk.
        self.out = nn.Linear(c, 1, bias=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for conv, norm in zip(self.convs, self.norms):
            stride = 2 if min(h.shape[-2:]) > 4 else 1
            h = F.silu(norm(F.conv2d(h, conv.weight, conv.bias, stride=stride, padding=1)))
        return self.out(h.mean(dim=(2, 3))).squeeze(-1)


class LatentSurrogate(nn.Module):
    """Scores clean latents; differentiable in the latent, so the generator can ascend it."""

    def __init__(self, unet, head_channels: int | None = None, head_layers: int = 2, timestep: int = 0,
                 step_embedding: bool = True):
        super().__init__()
        cfg = unet.config
        if cfg.addition_embed_type not in (None, "text_time"):
            raise NotImplementedError(f"surrogate: UNet addition_embed_type {cfg.addition_embed_type!r} is not supported")
        if getattr(unet, "peft_config", None):
            raise ValueError("build the surrogate from the UNet before adding the generator's LoRA")
        # Deep copies: the surrogate's backbone trains apart from the generator.
        self.conv_in = copy.deepcopy(unet.conv_in)
        self.time_proj = copy.deepcopy(unet.time_proj)
        self.time_embedding = copy.deepcopy(unet.time_embedding)
        self.text_time = cfg.addition_embed_type == "text_time"
        if self.text_time:
            self.add_time_proj = copy.deepcopy(unet.add_time_proj)
            self.add_embedding = copy.deepcopy(unet.add_embedding)
        self.down_blocks = copy.deepcopy(unet.down_blocks)
        self.mid_block = copy.deepcopy(unet.mid_block) if unet.mid_block is not None else None
        emb_dim = self.time_embedding.linear_2.out_features
        self.step_embedding = nn.Embedding(3, emb_dim) if step_embedding else None
        if self.step_embedding is not None:
            nn.init.zeros_(self.step_embedding.weight)  # starts as the pretrained encoder exactly
        feat = cfg.block_out_channels[-1]
        self.head = ScoreHead(feat, head_channels or min(feat, 256), head_layers)
        self.register_buffer("timestep", torch.tensor(int(timestep)), persistent=False)
        # The copies keep the generator's frozen flags; the surrogate starts fully trainable and
        # `add_backbone_lora` or the `frozen` backbone option freeze what they should.
        self.requires_grad_(True)
        self.to(unet.dtype)
        # The parts trained from scratch stay fp32 even when the backbone is bf16/fp16.
        self.head.float()
        if self.step_embedding is not None:
            self.step_embedding.float()

    def backbone_parameters(self):
        skip = {id(p) for p in self.head.parameters()}
        if self.step_embedding is not None:
            skip |= {id(p) for p in self.step_embedding.parameters()}
        return [p for p in self.parameters() if id(p) not in skip]

    def add_backbone_lora(self, rank: int, alpha: float, targets: list[str] | None = None) -> None:
        """Freeze the backbone and train low-rank adapters on it (METHOD.md default)."""
        from peft import LoraConfig, inject_adapter_in_model

        for p in self.backbone_parameters():
            p.requires_grad_(False)
        cfg = LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian",
                         target_modules=list(targets or SURROGATE_LORA_TARGETS))
        for name in ("down_blocks", "mid_block"):
            module = getattr(self, name)
            if module is not None:
                setattr(self, name, inject_adapter_in_model(cfg, module))
        for n, p in self.named_parameters():
            if "lora_" in n:
                p.data = p.data.float()
                p.requires_grad_(True)

    def forward(self, latents: torch.Tensor, embeds: PromptEmbeds, steps: torch.Tensor) -> torch.Tensor:
        dtype = self.conv_in.weight.dtype
        b = latents.shape[0]
        t = self.timestep.expand(b).to(latents.device)
        emb = self.time_embedding(self.time_proj(t).to(dtype))
        if self.text_time:
            time_embeds = self.add_time_proj(embeds.time_ids.flatten()).reshape(b, -1)
            emb = emb + self.add_embedding(torch.cat([embeds.pooled, time_embeds], dim=-1).to(dtype))
        if self.step_embedding is not None:
            emb = emb + self.step_embedding(steps.to(latents.device).long()).to(dtype)
        ctx = embeds.hidden.to(dtype)
        h = self.conv_in(latents.to(dtype))
        for block in self.down_blocks:
            if getattr(block, "has_cross_attention", False):
                h, _ = block(hidden_states=h, temb=emb, encoder_hidden_states=ctx)
            else:
                h, _ = block(hidden_states=h, temb=emb)
        if self.mid_block is not None:
            if getattr(self.mid_block, "has_cross_attention", False):
                h = self.mid_block(h, emb, encoder_hidden_states=ctx)
            else:
                h = self.mid_block(h, emb)
        return self.head(h.float())


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
                 step_embedding: bool = True):
        super().__init__()
        self.decode_pixels = decode_pixels  # a callable, not a submodule: the VAE belongs to the generator
        convs, c = [], 3
        for _ in range(layers):
            convs += [nn.Conv2d(c, channels, 3, stride=2, padding=1), nn.GroupNorm(_groups(channels), channels),
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
        h = self.convs(rgb * 2 - 1).mean(dim=(2, 3))
        film = self.text(embeds.hidden.float().mean(dim=1))
        if self.step_embedding is not None:
            film = film + self.step_embedding(steps.to(rgb.device).long())
        scale, shift = film.chunk(2, dim=-1)
        return self.out(F.silu(h * (1 + scale) + shift)).squeeze(-1)


class SurrogateEnsemble(nn.Module):
    """K independently initialised surrogates trained on the same pairs, each with its own
    Bradley-Terry loss; ``forward`` returns their scores as (batch, K).

    Why (ours, not the paper's): a generator that follows one surrogate's gradient finds the
    places where that surrogate is wrong. Members agree where their data pins the reward down and
    disagree elsewhere, so the generator can ascend a pessimistic score (``pessimistic``:
    mean - beta * std over members) that stops paying where the data runs out.
    Pixel members share one decode of the latents."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {len(members)}")
        self.members = nn.ModuleList(members)
        self.reads_pixels = all(getattr(m, "reads_pixels", False) for m in members)

    def backbone_parameters(self) -> list:
        return [p for m in self.members for p in m.backbone_parameters()]

    def forward(self, latents: torch.Tensor, embeds: PromptEmbeds, steps: torch.Tensor,
                pixels: torch.Tensor | None = None) -> torch.Tensor:
        if self.reads_pixels:
            rgb = self.members[0].images(latents, pixels)
            scores = [m.score_rgb(rgb, embeds, steps) for m in self.members]
        else:
            scores = [m(latents, embeds, steps) for m in self.members]
        return torch.stack(scores, dim=-1)


def mean_score(scores: torch.Tensor) -> torch.Tensor:
    """One score per sample: an ensemble's (batch, K) scores averaged over members; (batch,) as is."""
    return scores.mean(dim=-1) if scores.dim() == 2 else scores


def pessimistic(scores: torch.Tensor, beta: float, reference: torch.Tensor | None = None) -> torch.Tensor:
    """mean - beta * std over an ensemble's members (a lower confidence bound); (batch,) scores as is.

    ``reference``: the members' scores of reference outputs (the anchor model's, same noises); the spread
    is then taken over each member's change from its reference score. Bradley-Terry fixes a member's
    scores only up to an offset per prompt, so members disagree on raw scores even where they agree
    on every ranking; the spread of changes counts only disagreement about the move."""
    if scores.dim() == 1:
        return scores
    return scores.mean(dim=-1) - beta * member_spread(scores, reference)


def member_spread(scores: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
    """Std over an ensemble's members of their (batch, K) scores, or of each member's change from its
    ``reference`` score (see ``pessimistic``): the disagreement the pessimistic score subtracts."""
    return (scores if reference is None else scores - reference).std(dim=-1)


def bradley_terry_loss(score_win: torch.Tensor, score_lose: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(R(win) - R(lose)), averaged over pairs (and over members for (pairs, K) scores,
    so each member of an ensemble gets its own loss)."""
    return -F.logsigmoid(score_win - score_lose).mean()
