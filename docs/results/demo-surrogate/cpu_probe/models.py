"""Candidate pixel surrogates (probe only)."""
import math
import torch
import torch.nn.functional as F
from torch import nn

from lasro.surrogate import PixelSurrogate


def _g(c):
    return math.gcd(c, 8)


def conv_block(cin, cout, stride):
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.GroupNorm(_g(cout), cout), nn.SiLU()]


class TokenAttnPixel(nn.Module):
    """CNN feature map; each prompt token queries it (sigmoid attention, so sums keep counts);
    per-token MLP of (pooled, token) -> score, averaged over tokens; plus a pooled global term."""

    reads_pixels = True

    def __init__(self, decode_pixels, text_dim, channels=64, sigmoid=True, strides=(2, 1, 2, 1), film=True):
        super().__init__()
        self.decode_pixels = decode_pixels
        layers, c = [], 3
        for s in strides:
            layers += conv_block(c, channels, s)
            c = channels
        self.convs = nn.Sequential(*layers)
        self.pos = None
        self.tok = nn.Sequential(nn.LayerNorm(text_dim), nn.Linear(text_dim, channels))
        self.q = nn.Linear(channels, channels)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.sigmoid = sigmoid
        self.mlp = nn.Sequential(nn.Linear(2 * channels, channels), nn.SiLU(), nn.Linear(channels, 1))
        self.gate = nn.Linear(channels, 1)
        self.step = nn.Embedding(3, channels)
        nn.init.zeros_(self.step.weight)
        self.glob = nn.Linear(channels, 1, bias=False)

    def forward(self, latents, embeds, steps, pixels=None):
        rgb = self.decode_pixels(latents).float() if pixels is None else pixels.to(latents.device).float() / 255
        f = self.convs(rgb * 2 - 1)
        b, c, h, w = f.shape
        k = self.k(f).flatten(2)  # b c n
        v = self.v(f).flatten(2).transpose(1, 2)  # b n c
        t = self.tok(embeds.hidden.float()) + self.step(steps.to(latents.device).long())[:, None]
        logits = torch.einsum("blc,bcn->bln", self.q(t), k) / math.sqrt(c)
        if self.sigmoid:
            a = torch.sigmoid(logits - 2.0)
            pooled = a @ v / (h * w) * 16
        else:
            pooled = logits.softmax(-1) @ v
        per_tok = self.mlp(torch.cat([pooled, t], -1)).squeeze(-1)  # b l
        g = self.gate(t).squeeze(-1).softmax(-1)
        return (per_tok * g).sum(-1) + self.glob(f.mean(dim=(2, 3))).squeeze(-1)


class TinyTransformerPixel(nn.Module):
    """Patch tokens of a conv stem + projected prompt tokens, a few transformer layers, a CLS score."""

    reads_pixels = True

    def __init__(self, decode_pixels, text_dim, d=64, layers=2, heads=4, grid=8):
        super().__init__()
        self.decode_pixels = decode_pixels
        stem, c = [], 3
        for _ in range(int(math.log2(64 // grid))):
            stem += conv_block(c, d, 2)
            c = d
        self.stem = nn.Sequential(*stem)
        self.pos = nn.Parameter(torch.randn(1, grid * grid, d) * 0.02)
        self.tok = nn.Sequential(nn.LayerNorm(text_dim), nn.Linear(text_dim, d))
        self.kind = nn.Parameter(torch.randn(2, d) * 0.02)
        self.cls = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.step = nn.Embedding(3, d)
        layer = nn.TransformerEncoderLayer(d, heads, 2 * d, dropout=0.0, batch_first=True, norm_first=True)
        self.enc = nn.TransformerEncoder(layer, layers)
        self.norm = nn.LayerNorm(d)
        self.out = nn.Linear(d, 1, bias=False)

    def forward(self, latents, embeds, steps, pixels=None):
        rgb = self.decode_pixels(latents).float() if pixels is None else pixels.to(latents.device).float() / 255
        f = self.stem(rgb * 2 - 1).flatten(2).transpose(1, 2) + self.pos + self.kind[0]
        t = self.tok(embeds.hidden.float()) + self.kind[1]
        b = f.shape[0]
        cls = self.cls.expand(b, -1, -1) + self.step(steps.to(latents.device).long())[:, None]
        x = self.enc(torch.cat([cls, f, t], 1))
        return self.out(self.norm(x[:, 0])).squeeze(-1)


class Ensemble(nn.Module):
    """Mean score of K members; training uses each member's own loss (see fit.py)."""

    reads_pixels = True

    def __init__(self, members):
        super().__init__()
        self.members = nn.ModuleList(members)

    def member_scores(self, *a, **k):
        return torch.stack([m(*a, **k) for m in self.members])

    def forward(self, *a, **k):
        return self.member_scores(*a, **k).mean(0)


class MLPPixel(PixelSurrogate):
    """The shipped CNN and FiLM, read out by a two-layer MLP of (FiLM output, mean prompt embedding)."""

    def __init__(self, dp, D, ch=32, layers=3, hidden=128):
        super().__init__(dp, D, ch, layers)
        self.mlp = nn.Sequential(nn.Linear(ch + D, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 1))

    def forward(self, latents, embeds, steps, pixels=None):
        rgb = self.decode_pixels(latents).float() if pixels is None else pixels.float() / 255
        h = self.convs(rgb * 2 - 1).mean(dim=(2, 3))
        film = self.text(embeds.hidden.float().mean(dim=1)) + self.step_embedding(steps.long())
        scale, shift = film.chunk(2, dim=-1)
        h = h * (1 + scale) + shift
        return self.mlp(torch.cat([h, embeds.hidden.float().mean(1)], -1)).squeeze(-1)
