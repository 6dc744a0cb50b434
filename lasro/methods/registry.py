"""Method name -> class (``algorithm.method``), so configs, the CLI and ``bench compare`` pick LaSRO or a
baseline by name, and a user's own method by dotted path (``package.module:Class``), as rewards are."""
from __future__ import annotations

import difflib
import importlib

from lasro.config import ConfigError, TrainConfig, config_from_dict, read_config_data
from lasro.methods.base import Method


class MethodNotApplicable(ConfigError):
    """The method cannot run with this config (e.g. DRaFT with a non-differentiable reward);
    ``bench compare`` reports such a method as skipped instead of failing."""


_METHODS: dict[str, type[Method]] = {}


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: register a ``Method`` subclass under its ``name``."""
    if not (isinstance(cls, type) and issubclass(cls, Method)) or not cls.name:
        raise TypeError(f"register_method expects a lasro.methods.Method subclass with a name, got {cls!r}")
    if cls.name in _METHODS and _METHODS[cls.name] is not cls:
        raise ValueError(f"method '{cls.name}' is already registered ({_METHODS[cls.name]!r})")
    _METHODS[cls.name] = cls
    return cls


def list_methods() -> list[str]:
    return sorted(_METHODS)


def _import_method(path: str) -> type[Method]:
    module_name, _, attr = path.partition(":")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"algorithm.method '{path}': could not import it ({type(e).__name__}: {e}); "
                          "give package.module:Class of a lasro.methods.Method subclass") from None
    if not (isinstance(obj, type) and issubclass(obj, Method)) or not obj.name:
        raise ConfigError(f"algorithm.method '{path}' is {obj!r}, not a lasro.methods.Method subclass with a name")
    return register_method(obj)


def method_class(name: str) -> type[Method]:
    """The class of a registered name or of a dotted path ``package.module:Class`` (registered on import)."""
    if ":" in name:
        return _import_method(name)
    if name not in _METHODS:
        close = difflib.get_close_matches(name, list(_METHODS), n=1)
        guess = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"algorithm.method: unknown method '{name}'.{guess} Methods: {', '.join(list_methods())}, "
                          "or package.module:Class of your own")
    return _METHODS[name]


def method_sections(data: dict | None = None) -> dict[str, type]:
    """Config section classes of every registered method (and of ``data``'s method, imported if a path)."""
    method = ((data or {}).get("algorithm") or {}).get("method")
    if isinstance(method, str):
        method_class(method)
    return {name: cls.Config for name, cls in _METHODS.items() if cls.Config is not None}


def build_config(data: dict) -> TrainConfig:
    """A validated TrainConfig from a raw mapping: the shared sections, every method's section, and the
    chosen method's cross-section checks."""
    cfg = config_from_dict(data, method_sections(data))
    method_class(cfg.algorithm.method).check_config(cfg)
    return cfg


def load_config(path: str | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML config (none given: the embedded demo job) with ``--set`` overrides and validate it."""
    return build_config(read_config_data(path, overrides))
