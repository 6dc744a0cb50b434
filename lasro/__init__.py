"""lasro: fine-tune few-step text-to-image diffusion models toward any reward with LaSRO.

``from lasro import load_config, Trainer`` is the Python API's entry; the names load lazily so that
``import lasro.config`` stays light."""
__version__ = "0.1.0"

_EXPORTS = {"load_config": "lasro.methods", "Method": "lasro.methods", "register_method": "lasro.methods",
            "Trainer": "lasro.training", "register_reward": "lasro.rewards", "build_reward": "lasro.rewards"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lasro' has no attribute {name!r}")
