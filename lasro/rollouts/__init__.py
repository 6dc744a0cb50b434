"""Samples and their true-reward scores: collection, the replay buffer, same-prompt pairs, and the random
draws every process shares."""
from lasro.rollouts.buffer import ReplayBuffer, ranked_pairs, same_prompt_groups
from lasro.rollouts.collector import Collection, Collector
from lasro.rollouts.distributed import SharedDraws, multi_process_cpu

__all__ = ["Collection", "Collector", "ReplayBuffer", "SharedDraws", "multi_process_cpu", "ranked_pairs",
           "same_prompt_groups"]
