"""Method name (``algorithm.method``) -> trainer class, so configs, the CLI and ``bench compare`` pick
LaSRO or a baseline by name."""
from __future__ import annotations

import difflib

from lasro.config import ConfigError, TrainConfig
from lasro.trainer import LaSROTrainer

class MethodNotApplicable(ConfigError):
    """The method cannot run with this config (e.g. DRaFT with a non-differentiable reward);
    ``bench compare`` reports such a method as skipped instead of failing."""


_METHODS: dict[str, type[LaSROTrainer]] = {"lasro": LaSROTrainer}


def register_method(cls: type[LaSROTrainer]) -> type[LaSROTrainer]:
    """Class decorator: register a trainer under its ``method`` name."""
    if cls.method in _METHODS:
        raise ValueError(f"method '{cls.method}' is already registered ({_METHODS[cls.method]!r})")
    _METHODS[cls.method] = cls
    return cls


def list_methods() -> list[str]:
    return sorted(_METHODS)


def trainer_class(name: str) -> type[LaSROTrainer]:
    if name not in _METHODS:
        close = difflib.get_close_matches(name, list(_METHODS), n=1)
        guess = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"unknown method '{name}'.{guess} Methods: {', '.join(list_methods())}")
    return _METHODS[name]


def build_trainer(cfg: TrainConfig, **kwargs) -> LaSROTrainer:
    """The trainer of ``cfg.algorithm.method`` (LaSRO or a baseline), built from ``cfg``."""
    return trainer_class(cfg.algorithm.method)(cfg, **kwargs)
