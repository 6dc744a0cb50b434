"""What a fine-tuning method is to the training loop.

The loop (``lasro.training.Trainer``) owns everything methods share: the accelerator, the generator and
its LoRA optimiser, the reward, collection and query counting, the shared random draws, evaluation,
logging, checkpoints and the round schedule. A method owns only what is its own: its config section, its
models (LaSRO's surrogate), its data (a replay buffer, PPO's rollouts) and one round's update.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass
class MethodState:
    """What a method checkpoints: JSON-able ``values``, named tensor files (written as safetensors) and
    named objects (optimiser states, buffers; written with torch.save)."""

    values: dict = field(default_factory=dict)
    tensors: dict[str, dict] = field(default_factory=dict)
    objects: dict[str, Any] = field(default_factory=dict)


class Method:
    """One fine-tuning method. Subclass it, set ``name`` (and ``Config``, a ``lasro.config.Section``
    read from the config section of that name), implement ``train_round``, register it with
    ``lasro.methods.register_method`` or name it by dotted path (``algorithm.method: pkg.mod:Class``).

    ``run`` is the training loop; methods use its public parts: ``cfg``, ``acc``, ``gen``, ``unet`` (the
    trained, possibly wrapped UNet), ``base_unet``, ``lora_params``, ``reward``, ``train_prompts``,
    ``draws`` (shared random draws), ``collector``, ``embeds``, ``steps_1_2``, ``chunk``, ``round``,
    ``generator_steps``, ``draw_train_prompts``, ``optimizer_step`` and, in a long warm start,
    ``warm_start_point``."""

    name: ClassVar[str] = ""
    Config: ClassVar[type | None] = None  # the method's config section (cfg.<name>), if it has one
    # False for a method that reads the reward's gradient (DRaFT): a comparison of black-box methods shows
    # it as an upper reference, not as a baseline to beat
    black_box: ClassVar[bool] = True

    def __init__(self, run):
        """Called before the generator's LoRA is added: build models that copy the bare UNet here."""
        self.run, self.cfg = run, run.cfg

    @classmethod
    def check_config(cls, cfg) -> None:
        """Checks that span sections (raise ConfigError); each section validates itself."""

    @classmethod
    def check_reward(cls, reward) -> None:
        """Refuse a reward this method cannot use (raise MethodNotApplicable); called before models load."""

    def setup(self) -> None:
        """Called once the LoRA and the generator's optimiser exist: build optimisers, ``acc.prepare``."""

    def warm_start(self) -> dict:
        """Round 0, before the first evaluation (LaSRO pre-trains its surrogate); stats to log."""
        return {}

    def train_round(self, round_index: int) -> dict:
        """One round's update; returns the stats to log."""
        raise NotImplementedError

    @property
    def logged_progress(self) -> tuple[str, ...]:
        """Stats shown on the progress bar besides the held-out reward."""
        return ()

    def state(self) -> MethodState:
        """What to checkpoint besides the LoRA, its optimiser and the RNG."""
        return MethodState()

    def load_state(self, state: MethodState) -> None:
        """Restore ``state`` (raise ValueError naming what does not fit)."""

    def growth_bytes(self) -> int:
        """How much larger ``state()`` may grow during the run (a replay buffer filling up), for the disk check."""
        return 0
