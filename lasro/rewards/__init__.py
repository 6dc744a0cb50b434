"""Rewards: interface, validation, registry and built-ins (imported here to register them)."""

from lasro.rewards.base import CheckedReward, Reward, RewardError, RewardOutput
from lasro.rewards.registry import (build_judges, build_reward, judge_labels, judge_tolerances, list_rewards,
                                    register_reward)
from lasro.rewards.weighted import WeightedReward
from lasro.rewards import jpeg as _jpeg  # noqa: F401  (registers the jpeg_* rewards)
from lasro.rewards import shapes_detector as _shapes  # noqa: F401  (registers shapes_detector)
from lasro.rewards import shapes_fidelity as _fidelity  # noqa: F401  (registers shapes_fidelity)
from lasro.rewards import shapes_spatial as _spatial  # noqa: F401  (registers shapes_spatial)
from lasro.rewards import shapes_judge as _judge  # noqa: F401  (registers shapes_judge)
from lasro.rewards import remote as _remote  # noqa: F401  (registers remote)
from lasro.rewards import ocr as _ocr  # noqa: F401  (registers ocr)
from lasro.rewards import saturation as _saturation  # noqa: F401  (registers saturation)
from lasro.rewards import hub as _hub  # noqa: F401  (registers the model-backed rewards)
from lasro.rewards import human as _human  # noqa: F401  (registers human)

__all__ = [
    "Reward",
    "RewardError",
    "RewardOutput",
    "register_reward",
    "build_reward",
    "build_judges",
    "judge_labels",
    "judge_tolerances",
    "list_rewards",
    "WeightedReward",
    "CheckedReward",
]
