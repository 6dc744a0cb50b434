"""A method written the way a user would write one: this file and nothing else (no registration in
lasro), named in a config by its path ``tests.toy_method:BestOfRound``."""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from lasro.config import Section
from lasro.methods import Method
from lasro.methods.common import denoising_timesteps, x0_errors
from lasro.rollouts import same_prompt_groups


class BestOfRoundConfig(Section):
    """The ``best_of_round:`` section of a config."""

    weight: float = Field(1.0, gt=0)  # scale of the regression loss
    timesteps: Literal["sampler", "uniform"] = "sampler"


class BestOfRound(Method):
    """Regress the generator onto the best of each prompt's on-policy samples every round."""

    name = "best_of_round"
    Config = BestOfRoundConfig

    def train_round(self, round_index: int) -> dict:
        run = self.run
        c = run.collector.collect(explore=False)
        best = np.array([g[np.argmax(c.rewards[g])] for g in same_prompt_groups(c.prompts, c.steps)])

        def loss(idx):
            x0, prompts, steps = c.gather(idx)
            t = denoising_timesteps(run, steps, self.cfg.best_of_round.timesteps)
            err = x0_errors(run.gen, run.unet, x0, t, run.draws.randn(x0.shape), run.embeds(prompts))
            return self.cfg.best_of_round.weight * err.mean(), {"best_of_round/mse": float(err.detach().mean())}

        draw = lambda size: best[run.draws.integers(0, len(best), size)]  # noqa: E731
        return {**c.reward_stats(), **run.generator_steps(self.cfg.algorithm.generator_steps, loss, draw=draw)}
