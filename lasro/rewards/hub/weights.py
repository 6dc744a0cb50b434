"""Find a reward model's files: a local folder or file, or a hub id (cached or downloaded).

Every failure becomes a :class:`~lasro.rewards.base.RewardError` that says how to point the reward at
a local copy, because reward models are usually needed on machines without hub access.
"""
from __future__ import annotations

import os
import pickle
from typing import Any, Callable, TypeVar

from lasro.rewards.base import RewardError

T = TypeVar("T")


def looks_like_path(pretrained: str) -> bool:
    """True for strings meant as a filesystem path rather than a hub id ('owner/name')."""
    return (pretrained.startswith(("/", "./", "../", "~")) or pretrained.count("/") > 1
            or os.path.exists(os.path.expanduser(pretrained)))


def local_copy_hint(hub_id: str, kwarg: str = "pretrained") -> str:
    """The sentence every weights error ends with: how to fetch the model elsewhere and point at it."""
    return (f"Without hub access, download it elsewhere with `huggingface-cli download {hub_id} --local-dir DIR` "
            f"(or `hf download {hub_id} --local-dir DIR`), copy DIR to this machine and pass `{kwarg}: DIR` in "
            "the reward's kwargs. Set HF_HUB_OFFLINE=1 to fail fast instead of waiting on the network.")


def missing_weights_error(reward: str, pretrained: str, reason: str, kwarg: str = "pretrained",
                          hub_id: str | None = None) -> RewardError:
    """RewardError naming the reward, what it tried to load, why it failed and how to use a local copy."""
    hub_id = hub_id or ("MODEL_ID" if looks_like_path(pretrained) else pretrained)
    return RewardError(f"reward '{reward}' could not load {kwarg}={pretrained!r}: {reason.rstrip('.')}. "
                       + local_copy_hint(hub_id, kwarg))


def load_pretrained(reward: str, pretrained: str, loader: Callable[[str], T], kwarg: str = "pretrained",
                    hub_id: str | None = None) -> T:
    """``loader(pretrained)`` (a ``from_pretrained``), turning a missing folder or an unreachable hub into
    a RewardError with the local-copy hint. ``hub_id`` is the id to suggest when ``pretrained`` is a path
    (the reward's default)."""
    expanded = os.path.expanduser(pretrained)
    if looks_like_path(pretrained) and not os.path.exists(expanded):
        raise missing_weights_error(reward, pretrained, "no such folder", kwarg, hub_id)
    try:
        return loader(expanded if os.path.exists(expanded) else pretrained)
    except (OSError, ValueError) as e:
        raise missing_weights_error(reward, pretrained, str(e).splitlines()[0][:300], kwarg,
                                    hub_id if looks_like_path(pretrained) else pretrained) from e


def resolve_file(reward: str, pretrained: str, filename: str, kwarg: str = "pretrained",
                 hub_id: str | None = None) -> str:
    """Path of ``filename`` given a file path, a folder holding it, or a hub repo id (cached or fetched)."""
    expanded = os.path.expanduser(pretrained)
    if os.path.isfile(expanded):
        return expanded
    if os.path.isdir(expanded):
        path = os.path.join(expanded, filename)
        if not os.path.isfile(path):
            raise missing_weights_error(reward, pretrained, f"the folder has no {filename}", kwarg, hub_id)
        return path
    if looks_like_path(pretrained):
        raise missing_weights_error(reward, pretrained, "no such file or folder", kwarg, hub_id)
    from huggingface_hub import hf_hub_download

    try:
        return hf_hub_download(pretrained, filename)
    except Exception as e:  # noqa: BLE001 - offline, missing repo, missing file, network: all the same advice
        raise missing_weights_error(reward, pretrained, f"{type(e).__name__}: {str(e).splitlines()[0][:300]}",
                                    kwarg, pretrained) from e


def load_complete_state_dict(model: Any, state: dict[str, Any], reward: str, source: str, architecture: str) -> Any:
    """Load ``state`` into ``model``, requiring every parameter to be present and every key used: a
    checkpoint that only partly fits would otherwise score with random weights."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]  # buffers some versions do not save
    if missing or unexpected:
        raise RewardError(f"reward '{reward}': {source} does not fit {architecture}: missing {missing[:8]}, "
                          f"unexpected {unexpected[:8]}")
    return model


def load_state_dict_file(path: str) -> dict[str, Any]:
    """Tensors from a .safetensors file or a torch pickle (read with ``weights_only=True``: no code runs)."""
    import torch

    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise RewardError(f"{path} holds objects other than tensors, so it was not unpickled (lasro loads "
                          "checkpoints with weights_only=True). If you trust the file, re-save its state dict "
                          "with safetensors and point the reward at that .safetensors file") from e
