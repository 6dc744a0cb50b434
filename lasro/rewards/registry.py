"""Name -> reward factory registry, so configs can pick rewards by name or dotted path."""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
from dataclasses import dataclass
from typing import Any, Callable

from lasro.rewards.base import CheckedReward
from lasro.rewards.weighted import WeightedReward

_SPEC_KEYS = ("name", "kwargs", "weight")


@dataclass(frozen=True)
class _Entry:
    """One registered reward factory and its one-line description."""

    factory: Callable[..., Any]
    description: str
    needs_weights: bool


_REGISTRY: dict[str, _Entry] = {}


def register_reward(
    name: str, *, description: str | None = None, needs_weights: bool | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering a factory (class or function: kwargs -> reward callable).

    The decorator is where a reward states its name and one-line description: on a class it also sets
    them as the class's ``name`` and ``description`` attributes (which the instances, error messages and
    ``CheckedReward`` read), so the class does not repeat them. A class may instead carry its own
    ``description`` and leave it out here; stating both, differently, is an error. ``needs_weights``
    defaults to the class's attribute (``HubReward`` subclasses: True) and to False for a function.
    """
    if not name or ":" in name:
        raise ValueError(f"invalid reward name {name!r}: must be non-empty and contain no ':'")

    def decorator(factory: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY:
            raise ValueError(f"reward '{name}' is already registered ({_REGISTRY[name].factory!r})")
        is_class = inspect.isclass(factory)
        desc, weights = description, needs_weights
        if is_class:
            for attr, value in (("name", name), ("description", desc)):
                own = factory.__dict__.get(attr)
                if own is not None and value is not None and own != value:
                    raise ValueError(f"reward '{name}': {factory.__qualname__}.{attr} = {own!r} differs from "
                                     f"register_reward's {value!r}; state it in one place")
            desc = factory.__dict__.get("description") if desc is None else desc
            weights = bool(getattr(factory, "needs_weights", False)) if weights is None else weights
        if not isinstance(desc, str):
            raise ValueError(f"reward '{name}' has no description: pass register_reward(..., description=...)")
        if is_class:
            factory.name, factory.description, factory.needs_weights = name, desc, weights
        _REGISTRY[name] = _Entry(factory, desc, bool(weights))
        return factory

    return decorator


def list_rewards() -> list[tuple[str, str, bool]]:
    """(name, description, needs_weights) of every registered reward, sorted by name."""
    return [(n, e.description, e.needs_weights) for n, e in sorted(_REGISTRY.items())]


def _import_attr(path: str) -> Any:
    """Resolve 'package.module:attr' (attr may be dotted) with errors naming what failed."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ValueError(f"reward path {path!r} must look like 'package.module:attr'")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as e:
        raise ValueError(
            f"could not import module '{module_name}' for reward '{path}': {type(e).__name__}: {e}"
        ) from e
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"module '{module_name}' has no attribute '{attr}' (reward '{path}')")
        obj = getattr(obj, part)
    return obj


def _unknown(name: str) -> ValueError:
    """Error for an unknown reward name: closest match, registered names, dotted-path form."""
    close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
    guess = f" Did you mean '{close[0]}'?" if close else ""
    return ValueError(
        f"unknown reward '{name}'.{guess} Registered rewards: {', '.join(sorted(_REGISTRY)) or '(none)'}. "
        "For your own reward pass a dotted path 'package.module:attr'."
    )


def _build_one(name: str, kwargs: dict[str, Any]) -> CheckedReward:
    """Build a single checked reward from a registered name or a dotted path."""
    if ":" in name:
        obj = _import_attr(name)
        if inspect.isclass(obj):
            fn = obj(**kwargs)
        elif kwargs:
            fn = functools.partial(obj, **kwargs)
        else:
            fn = obj
        if not callable(fn):
            raise ValueError(f"reward '{name}' resolved to non-callable {type(fn).__name__}")
        return CheckedReward(fn, name)
    if name not in _REGISTRY:
        raise _unknown(name)
    entry = _REGISTRY[name]
    return CheckedReward(entry.factory(**kwargs), name, needs_weights=entry.needs_weights)


def _parse(spec: str | dict[str, Any]) -> tuple[str, dict[str, Any], float | None]:
    """Normalise a string/dict spec into (name, kwargs, weight)."""
    if isinstance(spec, str):
        return spec, {}, None
    if not isinstance(spec, dict):
        raise TypeError(f"reward spec must be a str, dict or list, got {type(spec).__name__}")
    for key in spec:
        if key not in _SPEC_KEYS:
            raise ValueError(f"unknown key {key!r} in reward spec {spec!r}; valid keys: {', '.join(_SPEC_KEYS)}")
    if "name" not in spec:
        raise ValueError(f"reward spec {spec!r} has no 'name'")
    kwargs = spec.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        raise ValueError(f"'kwargs' of reward '{spec['name']}' must be a dict, got {type(kwargs).__name__}")
    weight = spec.get("weight")
    return str(spec["name"]), dict(kwargs), None if weight is None else float(weight)


def build_reward(spec: str | dict[str, Any] | list[str | dict[str, Any]]) -> CheckedReward:
    """Build a validated reward from a name, dotted path, dict spec, or list (weighted sum)."""
    if isinstance(spec, CheckedReward):
        return spec
    if isinstance(spec, (list, tuple)):
        if not spec:
            raise ValueError("reward spec list is empty")
        components: list[tuple[str, CheckedReward, float]] = []
        seen: dict[str, int] = {}
        for item in spec:
            name, kwargs, weight = _parse(item)
            seen[name] = seen.get(name, 0) + 1
            label = name if seen[name] == 1 else f"{name}#{seen[name]}"
            components.append((label, _build_one(name, kwargs), 1.0 if weight is None else weight))
        return WeightedReward(components)
    name, kwargs, weight = _parse(spec)
    reward = _build_one(name, kwargs)
    return reward if weight is None else WeightedReward([(name, reward, weight)])


def _judge_specs(specs: list) -> list[tuple[str, str, dict[str, Any], float | None]]:
    """(label, name, kwargs, max_drop) per ``eval_rewards`` item; repeated names get labels ``#2``, ``#3``."""
    if isinstance(specs, (str, dict)):
        specs = [specs]
    out, labels = [], set()
    for spec in specs:
        max_drop = None
        if isinstance(spec, dict) and "max_drop" in spec:
            spec = dict(spec)
            max_drop = spec.pop("max_drop")
            if isinstance(max_drop, bool) or not isinstance(max_drop, (int, float)) or max_drop < 0:
                raise ValueError(f"eval_rewards item {spec.get('name')!r}: max_drop must be a number >= 0 (how far "
                                 f"the judge's monitor mean may fall below round 0's), got {max_drop!r}")
        name, kwargs, weight = _parse(spec)
        if weight is not None:
            raise ValueError(f"eval_rewards item {spec!r}: judges are reported one by one and take no 'weight'")
        label, n = name, 1
        while label in labels:
            n += 1
            label = f"{name}#{n}"
        labels.add(label)
        out.append((label, name, kwargs, None if max_drop is None else float(max_drop)))
    return out


def build_judges(specs: list) -> dict[str, CheckedReward]:
    """Label -> reward for evaluation-only rewards (``eval_rewards``); repeated names get ``#2``, ``#3``."""
    return {label: _build_one(name, kwargs) for label, name, kwargs, _ in _judge_specs(specs)}


def judge_labels(specs: list) -> list[str]:
    """The labels ``eval_rewards`` items are logged under (``eval/LABEL/...``): names, ``#2`` for repeats."""
    return [label for label, *_ in _judge_specs(specs)]


def judge_tolerances(specs: list) -> dict[str, float]:
    """Label -> ``max_drop`` of the ``eval_rewards`` items that carry one (the judge guard's constraints)."""
    return {label: drop for label, _, _, drop in _judge_specs(specs) if drop is not None}
