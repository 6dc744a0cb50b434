"""Reward interface and the checks that turn a bad reward into a clear, early error."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from PIL import Image

HINT = (
    "a reward must return one finite float per image (list, numpy array or 1-D tensor "
    "of length N), optionally as a tuple (scores, info) with info a dict name -> per-image array"
)


class RewardError(RuntimeError):
    """Raised when a reward misbehaves; the message names the reward and what it did."""


@dataclass
class RewardOutput:
    """Validated reward result: float64 scores of shape (N,) plus per-image extra metrics."""

    scores: np.ndarray
    info: dict[str, np.ndarray] = field(default_factory=dict)


class Reward(abc.ABC):
    """Optional base class so reward implementations carry their name and description (a class
    registered with ``register_reward`` gets both from the decorator: it need not state them again).

    A reward may also define ``differentiable(pixels, prompts) -> torch.Tensor [B]``: the same score
    computed with autograd from float RGB ``pixels`` [B, 3, H, W] in [0, 1]. Only the DRaFT baseline
    (``algorithm.method: draft``) uses it; LaSRO and the other methods treat every reward as a black box.
    """

    name: str = ""
    description: str = ""
    needs_weights: bool = False

    @abc.abstractmethod
    def __call__(
        self, images: list[Image.Image], prompts: list[str], metadata: list[dict]
    ) -> Any:
        """Return one score per image, or (scores, info)."""


def _to_numpy(x: Any) -> Any:
    """Turn torch tensors (duck-typed) into numpy without a hard torch dependency."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        return x.detach().cpu().double().numpy()
    return x


def _describe(x: Any) -> str:
    """Short description of a returned object for error messages."""
    if x is None:
        return "None (did the reward forget to `return`?)"
    shape = getattr(x, "shape", None)
    if shape is not None:
        return f"{type(x).__name__} of shape {tuple(shape)}"
    if isinstance(x, (list, tuple)):
        return f"{type(x).__name__} of length {len(x)}"
    return f"{type(x).__name__} {x!r:.80}"


def _fmt_bad(arr: np.ndarray, bad: np.ndarray, limit: int = 5) -> str:
    """List the first few offending index/value pairs."""
    idx = np.flatnonzero(bad)
    shown = ", ".join(f"[{i}]={float(arr[i])!r}" for i in idx[:limit])
    more = f" and {len(idx) - limit} more" if len(idx) > limit else ""
    return f"{shown}{more} ({len(idx)} of {len(arr)})"


class CheckedReward:
    """Wraps a reward callable so every call is validated and failures name the reward."""

    def __init__(self, fn: Callable[..., Any], name: str, needs_weights: bool | None = None):
        self.fn = fn
        self.name = name
        self.description = getattr(fn, "description", "")
        self.needs_weights = (
            bool(getattr(fn, "needs_weights", False)) if needs_weights is None else needs_weights
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    @property
    def is_differentiable(self) -> bool:
        """Whether the wrapped reward defines ``differentiable(pixels, prompts)``."""
        return callable(getattr(self.fn, "differentiable", None))

    def differentiable(self, pixels: Any, prompts: list[str]) -> Any:
        """The reward as a differentiable function of float RGB ``pixels`` [B, 3, H, W] in [0, 1]: a
        tensor [B] that keeps the autograd graph. Checked like ``__call__``; errors name the reward."""
        if not self.is_differentiable:
            raise RewardError(f"reward '{self.name}' is not differentiable (it defines no "
                              "differentiable(pixels, prompts) method)")
        n = pixels.shape[0]
        if len(prompts) != n:
            raise ValueError(f"reward '{self.name}' got {n} images but {len(prompts)} prompts")
        try:
            out = self.fn.differentiable(pixels, list(prompts))
        except RewardError:
            raise
        except Exception as e:
            raise RewardError(f"reward '{self.name}'.differentiable raised {type(e).__name__}: {e} on a batch of "
                              f"{n} image(s)") from e
        if getattr(out, "shape", None) != (n,):
            raise RewardError(f"reward '{self.name}'.differentiable returned {_describe(out)} for {n} images, "
                              f"expected a tensor of shape ({n},)")
        bad = ~np.isfinite(_to_numpy(out))
        if bad.any():
            raise RewardError(f"reward '{self.name}'.differentiable returned non-finite scores "
                              f"{_fmt_bad(_to_numpy(out), bad)}")
        return out

    def __call__(
        self,
        images: list[Image.Image],
        prompts: list[str],
        metadata: list[dict] | None = None,
    ) -> RewardOutput:
        n = len(images)
        if len(prompts) != n:
            raise ValueError(f"reward '{self.name}' got {n} images but {len(prompts)} prompts")
        metadata = [{} for _ in range(n)] if metadata is None else metadata
        if len(metadata) != n:
            raise ValueError(f"reward '{self.name}' got {n} images but {len(metadata)} metadata dicts")
        try:
            out = self.fn(list(images), list(prompts), list(metadata))
        except RewardError:
            raise  # already names the (inner) reward that failed
        except Exception as e:
            raise RewardError(
                f"reward '{self.name}' raised {type(e).__name__}: {e} on a batch of {n} image(s); "
                "fix the reward or its kwargs (original traceback chained above)"
            ) from e
        info: Any = {}
        if isinstance(out, tuple) and len(out) == 2 and (out[1] is None or isinstance(out[1], dict)):
            out, info = out[0], out[1] or {}
        return RewardOutput(self._scores(out, n), self._info(info, n))

    def _scores(self, raw: Any, n: int) -> np.ndarray:
        """Validate and convert scores to a finite float64 array of shape (n,)."""
        if raw is None:
            raise RewardError(f"reward '{self.name}' returned {_describe(raw)}; {HINT}")
        try:
            arr = np.asarray(_to_numpy(raw), dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise RewardError(
                f"reward '{self.name}' returned {_describe(raw)}, which is not numeric ({e}); {HINT}"
            ) from e
        if arr.ndim != 1:
            raise RewardError(
                f"reward '{self.name}' returned scores of shape {arr.shape} "
                f"({_describe(raw)}) for {n} images, expected shape ({n},); {HINT}"
            )
        if arr.shape[0] != n:
            raise RewardError(
                f"reward '{self.name}' returned {arr.shape[0]} scores for {n} images; {HINT}"
            )
        bad = ~np.isfinite(arr)
        if bad.any():
            raise RewardError(
                f"reward '{self.name}' returned non-finite scores {_fmt_bad(arr, bad)}; {HINT} "
                "(guard divisions/logs, or map failures to a finite penalty)"
            )
        return arr

    def _info(self, info: Any, n: int) -> dict[str, np.ndarray]:
        """Validate the optional per-image info dict; numeric entries become float64."""
        if not isinstance(info, dict):
            raise RewardError(
                f"reward '{self.name}' returned info as {_describe(info)}; {HINT}"
            )
        checked: dict[str, np.ndarray] = {}
        for key, value in info.items():
            arr = np.asarray(_to_numpy(value))
            if arr.ndim != 1 or arr.shape[0] != n:
                raise RewardError(
                    f"reward '{self.name}' returned info[{key!r}] of shape {arr.shape} for {n} "
                    f"images; each info entry must hold exactly one value per image"
                )
            checked[str(key)] = arr.astype(np.float64) if arr.dtype.kind in "biuf" else arr
        return checked
