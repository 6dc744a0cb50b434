"""What the baselines share beyond LaSRO's machinery: no surrogate, and round 0 is only the initial
evaluation (no pre-training queries), so every method's query count starts at zero."""
from __future__ import annotations

from lasro.trainer import LaSROTrainer


class Baseline(LaSROTrainer):
    """A fine-tuning method other than LaSRO: reuses collection and true-reward counting, evaluation,
    logging, checkpoints and sharding; by default each round collects on-policy samples (no exploration)
    and learns from them with ``learn_from_round``."""

    uses_surrogate = False

    def warm_start(self) -> dict:
        return {}

    def train_round(self, round_index: int) -> dict:
        stats = self.collect(round_index, explore=False)
        stats.update(self.learn_from_round(round_index))
        return stats

    def learn_from_round(self, round_index: int) -> dict:
        """Generator updates on the samples ``collect`` just buffered under ``round_index``."""
        raise NotImplementedError
