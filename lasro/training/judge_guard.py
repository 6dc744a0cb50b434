"""Held-out judges as constraints, not only curves: a judge given ``max_drop`` stops the run once its mean
on the per-round monitor falls more than that below round 0's, and the run keeps the LoRA of the last
evaluation where every guarded judge held.

The monitor scores the same prompts and noises at every evaluation, so the comparison with round 0 is
paired: the drop is the mean over those samples of (judge now - judge at round 0). Its noise is the monitor's,
a few hundredths with the demo's 256 samples (``prompts.eval`` x ``eval_seeds``): a tolerance well below that
trips on noise, so give the monitor more samples or the judge a wider tolerance."""
from __future__ import annotations

import torch

from lasro.generators import copy_weights


class JudgeGuard:
    """``tolerances``: judge label -> max_drop. ``observe`` each evaluation's metrics (round 0 first); it
    snapshots the LoRA while every judge holds and names what fell when one does not."""

    def __init__(self, tolerances: dict[str, float]):
        self.tolerances = dict(tolerances)
        self.baseline: dict[str, float] = {}  # metric key -> its value at round 0
        self.last_held: int | None = None  # round of the last evaluation where every guarded judge held
        self.tripped: dict | None = None  # what fell, once one did
        self.snapshot: list[torch.Tensor] | None = None  # the LoRA weights at ``last_held``

    @property
    def active(self) -> bool:
        return bool(self.tolerances)

    def keys(self, metrics: dict) -> dict[str, str]:
        """Metric key -> judge label, for every step count the evaluation scored each guarded judge at."""
        return {k: label for label in self.tolerances for k in metrics
                if k.startswith(f"eval/{label}/reward_") and k.endswith("step_mean")}

    def observe(self, round_index: int, metrics: dict, lora_params: list[torch.Tensor]) -> list[str]:
        """Check one evaluation; the violations as sentences (empty: every judge held, and the LoRA is
        snapshotted). Round 0's evaluation (or the first one seen) sets the baseline."""
        if not self.active:
            return []
        keys = self.keys(metrics)
        missing = [label for label in self.tolerances if label not in keys.values()]
        if missing:
            raise ValueError(f"eval_rewards max_drop: no evaluation figures for judge(s) {missing}")
        if not self.baseline:
            self.baseline = {k: float(metrics[k]) for k in keys}
        violations = []
        for k, label in sorted(keys.items()):
            drop = self.baseline[k] - float(metrics[k])
            if drop > self.tolerances[label]:
                steps = k.rsplit("_", 2)[-2]
                violations.append(f"judge {label!r} at {steps}: {metrics[k]:.4f}, {drop:.4f} below round 0's "
                                  f"{self.baseline[k]:.4f} (max_drop {self.tolerances[label]:g})")
        if violations:
            self.tripped = {"round": round_index, "kept_round": self.last_held, "violations": violations}
        else:
            self.last_held = round_index
            self.snapshot = [p.detach().clone() for p in lora_params]
        return violations

    def restore(self, lora_params: list[torch.Tensor]) -> None:
        """Put the LoRA of the last evaluation where every judge held back into the model."""
        if self.snapshot is None:
            raise RuntimeError("no evaluation where every judge held has been recorded")
        copy_weights(lora_params, self.snapshot)

    # ----------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        return {"baseline": self.baseline, "last_held": self.last_held, "tripped": self.tripped}

    def load_state_dict(self, state: dict | None, snapshot: list[torch.Tensor] | None) -> None:
        state = state or {}
        self.baseline = {k: float(v) for k, v in (state.get("baseline") or {}).items()}
        self.last_held, self.tripped = state.get("last_held"), state.get("tripped")
        self.snapshot = snapshot

    def tensors(self) -> dict[str, torch.Tensor]:
        """The snapshot as named tensors (for a checkpoint file)."""
        if self.snapshot is None:
            return {}
        return {f"lora_{i}": t.detach().float().cpu().contiguous() for i, t in enumerate(self.snapshot)}
