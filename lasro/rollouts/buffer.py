"""Replay buffer of scored latents, and the same-prompt pairs the surrogate learns from."""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch


def same_prompt_groups(prompts: list[str], steps, comparable=None) -> list[np.ndarray]:
    """Indices of the samples sharing a prompt and step count (and, when given, a ``comparable`` group: a
    pairwise reward's pair), one array per group, in first-seen order."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    keys = np.asarray(steps).tolist()
    if comparable is not None:
        keys = list(zip(keys, np.asarray(comparable).tolist()))
    for i, key in enumerate(zip(prompts, keys)):
        groups[key].append(i)
    return [np.asarray(idx) for idx in groups.values()]


def gather_samples(latents: torch.Tensor, prompts: list[str], steps: np.ndarray, idx):
    """``(latents, prompts, steps)`` of samples ``idx`` (a buffer's or a collection's)."""
    idx = np.asarray(idx, dtype=np.int64)
    return latents[torch.from_numpy(idx)], [prompts[i] for i in idx], torch.from_numpy(steps[idx])


def ranked_pairs(prompts: list[str], steps, rewards, margin: float = 0.0,
                 comparable=None) -> tuple[np.ndarray, np.ndarray]:
    """Every (winner, loser) pair of the same prompt and step count (and ``comparable`` group, when given)
    whose reward gap exceeds ``margin``."""
    rewards = np.asarray(rewards, dtype=np.float64)
    win, lose = [], []
    for idx in same_prompt_groups(prompts, steps, comparable):
        r = rewards[idx]
        a, b = np.nonzero(r[:, None] - r[None, :] > margin)
        win.append(idx[a])
        lose.append(idx[b])
    if not win:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(win).astype(np.int64), np.concatenate(lose).astype(np.int64)


class ReplayBuffer:
    """FIFO store of (prompt, latent, true reward, step count, round), bounded by ``capacity`` items.

    Pairs are drawn with the newer item's weight ``recency_decay ** age`` so the surrogate
    tracks the current generator while older, off-policy samples still count.

    ``pixels`` (optional, uint8 N x 3 x H x W): the decoded images of the latents, kept for a
    surrogate that reads pixels so that its training steps need no VAE decode. They are not saved
    in ``state_dict``: decoding is deterministic, so a resumed run decodes the latents again.
    """

    def __init__(self, capacity: int = 4096, recency_decay: float = 0.9):
        if capacity < 2:
            raise ValueError("buffer.capacity must be at least 2")
        self.capacity = capacity
        self.recency_decay = recency_decay
        self.latents: torch.Tensor | None = None
        self.pixels: torch.Tensor | None = None
        self.prompts: list[str] = []
        self.rewards = np.zeros(0, dtype=np.float64)
        self.steps = np.zeros(0, dtype=np.int64)
        self.rounds = np.zeros(0, dtype=np.int64)
        self.groups = np.zeros(0, dtype=np.int64)  # comparable groups (0: an ordinary reward's samples)
        self._pairs: tuple[float, np.ndarray, np.ndarray, np.ndarray] | None = None  # cache until the next add

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.latents, self.pixels) if t is not None)

    def add(self, latents: torch.Tensor, prompts: list[str], rewards, steps, round_index: int,
            pixels: torch.Tensor | None = None, groups=None) -> None:
        n = latents.shape[0]
        if not (len(prompts) == len(rewards) == len(steps) == n):
            raise ValueError("latents, prompts, rewards and steps must have the same length")
        if self.latents is not None and (pixels is None) != (self.pixels is None):
            raise ValueError("give pixels with every add or with none")
        if pixels is not None and pixels.shape[0] != n:
            raise ValueError("pixels and latents must have the same length")
        lat = latents.detach().cpu()
        self.latents = lat if self.latents is None else torch.cat([self.latents, lat])
        if pixels is not None:
            pix = pixels.detach().cpu()
            self.pixels = pix if self.pixels is None else torch.cat([self.pixels, pix])
        self.prompts += list(prompts)
        self.rewards = np.concatenate([self.rewards, np.asarray(rewards, dtype=np.float64)])
        self.steps = np.concatenate([self.steps, np.asarray(steps, dtype=np.int64)])
        self.rounds = np.concatenate([self.rounds, np.full(n, round_index, dtype=np.int64)])
        self.groups = np.concatenate([self.groups, np.zeros(n, np.int64) if groups is None
                                      else np.asarray(groups, dtype=np.int64)])
        self._pairs = None
        drop = len(self) - self.capacity
        if drop > 0:
            self.latents = self.latents[drop:].clone()
            if self.pixels is not None:
                self.pixels = self.pixels[drop:].clone()
            self.prompts = self.prompts[drop:]
            self.rewards, self.steps, self.rounds = self.rewards[drop:], self.steps[drop:], self.rounds[drop:]
            self.groups = self.groups[drop:]

    def sample_pairs(self, n: int, rng: np.random.Generator, margin: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """``n`` (winner, loser) index pairs, recent-biased; empty arrays when no valid pair exists."""
        if self._pairs is None or self._pairs[0] != margin:
            win, lose = ranked_pairs(self.prompts, self.steps, self.rewards, margin,
                                     self.groups if self.groups.any() else None)
            age = (self.rounds.max() - np.maximum(self.rounds[win], self.rounds[lose])) if len(win) else win
            weight = self.recency_decay ** age.astype(np.float64)
            self._pairs = (margin, win, lose, weight / max(weight.sum(), 1e-300))
        _, win, lose, p = self._pairs
        if len(win) == 0:
            return win, lose
        pick = rng.choice(len(win), size=n, replace=True, p=p)
        return win[pick], lose[pick]

    def gather(self, idx: np.ndarray) -> tuple[torch.Tensor, list[str], torch.Tensor]:
        return gather_samples(self.latents, self.prompts, self.steps, idx)

    def gather_pixels(self, idx: np.ndarray) -> torch.Tensor | None:
        """The stored decoded images of ``idx`` (None when the buffer keeps none)."""
        if self.pixels is None:
            return None
        return self.pixels[torch.from_numpy(np.asarray(idx, dtype=np.int64))]

    def state_dict(self) -> dict:
        """Tensors and plain data only (checkpoints are loaded with weights_only)."""
        return {"latents": self.latents, "prompts": list(self.prompts),
                **{k: torch.from_numpy(getattr(self, k).copy()) for k in ("rewards", "steps", "rounds", "groups")}}

    def load_state_dict(self, state: dict) -> None:
        self.latents = state["latents"]
        self.prompts = list(state["prompts"])
        self.rewards = np.asarray(state["rewards"], dtype=np.float64)
        self.steps = np.asarray(state["steps"], dtype=np.int64)
        self.rounds = np.asarray(state["rounds"], dtype=np.int64)
        # checkpoints from before comparable groups: all zero, as those runs had no pairwise reward
        self.groups = np.asarray(state.get("groups", np.zeros(len(self.rounds))), dtype=np.int64)
        self.pixels = None  # the owner decodes the latents again if its surrogate reads pixels
        self._pairs = None
