"""Fine-tuning methods by name (``algorithm.method``): LaSRO and the baselines it is compared with, as
equals on one training loop. Importing registers the built-in ones."""
from lasro.methods import dpo, draft, gors, lasro, ppo  # noqa: F401,E402  (register the built-in methods)
from lasro.methods.base import Method, MethodState
from lasro.methods.registry import (
                                    MethodNotApplicable,
                                    build_config,
                                    list_methods,
                                    load_config,
                                    method_class,
                                    method_sections,
                                    register_method,
)

__all__ = ["Method", "MethodNotApplicable", "MethodState", "build_config", "list_methods", "load_config",
           "method_class", "method_sections", "register_method"]
