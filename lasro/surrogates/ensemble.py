"""An ensemble of surrogates, and how their scores combine: mean, pessimistic bound, spread, and the
Bradley-Terry loss every surrogate trains with."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lasro.generators.few_step import PromptEmbeds


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
