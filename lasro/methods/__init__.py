"""Fine-tuning methods by name (``algorithm.method``): LaSRO and the baselines it is compared with,
all on LaSROTrainer's collection, evaluation, logging and checkpoints. Importing registers them."""
from lasro.methods.registry import MethodNotApplicable, build_trainer, list_methods, register_method, trainer_class
from lasro.methods import draft, dpo, gors, ppo  # noqa: F401,E402  (register the baselines)

__all__ = ["MethodNotApplicable", "build_trainer", "list_methods", "register_method", "trainer_class"]
