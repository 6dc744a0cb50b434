"""Training configuration: typed sections (pydantic models), YAML loading, ``--set key=value`` overrides,
and validation whose errors name the bad key or value and the valid choices.

Defaults follow docs/method.md: "paper" where the paper states it, "ours" where it is silent.

The shared sections are fields of ``TrainConfig``; a method's own keys live in its method section, a
``Section`` registered at run time (``config_from_dict(data, {"lasro": LaSROConfig})``) and read as
``cfg.lasro``.
"""
from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Mapping
from typing import Any, Annotated, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ConfigError(ValueError):
    """A config key or value is wrong; the message names it and what is allowed."""


_SCIENTIFIC = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


class Section(BaseModel):
    """One config section. Strict: no str -> number or bool -> int coercion (an int is still a float)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True)

    def __setattr__(self, name, value):
        try:
            super().__setattr__(name, value)
        except ValidationError as e:
            raise _config_error(e, type(self), (type(self).__name__,)) from None

    @field_validator("*", mode="before")
    @classmethod
    def _yaml_float(cls, value, info):
        """YAML 1.1 reads 1e-5 (no dot) as a string: accept it for a float field."""
        if (isinstance(value, str) and _SCIENTIFIC.match(value.strip())
                and cls.model_fields[info.field_name].annotation is float):
            return float(value)
        return value


def must(ok, text: str) -> AfterValidator:
    """A field check: ``ok(value)`` or the error "<key> <text>; got <value>"."""
    def check(value):
        if not ok(value):
            raise ValueError(f"{text}; got {value}")
        return value
    return AfterValidator(check)


class ModelConfig(Section):
    pretrained: str = "demo:shapes"  # hub id, local folder, demo:shapes, tiny:sdxl, tiny:sd, random:sdxl-turbo
    unet: str | None = None  # optional separate UNet (e.g. latent-consistency/lcm-sdxl)
    variant: str | None = None  # e.g. "fp16" for hub weights
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    scheduler: Literal["auto", "euler_ancestral", "lcm"] = "auto"
    resolution: int = 0  # 0: the UNet's native size
    guidance_scale: float = 0.0  # SDXL-Turbo: 0; LCM UNets with a guidance embedding: e.g. 8
    timesteps: list[int] = [999, 499]  # ours: [999, 499]
    tiny: dict = {}  # TinySpec overrides for tiny:* models
    gradient_checkpointing: bool = False

    @field_validator("timesteps")
    @classmethod
    def _timesteps(cls, ts):
        if not 1 <= len(ts) <= 2 or any(not 0 <= t < 1000 for t in ts):
            raise ValueError(f"must hold 1 or 2 timesteps in [0, 999], e.g. [999, 499]; got {ts}")
        if len(ts) == 2 and ts[1] >= ts[0]:
            raise ValueError(f"must decrease (e.g. [999, 499]); got {ts}")
        return ts


class LoraConfig(Section):
    rank: int = Field(16, ge=1)
    alpha: float = 16.0
    targets: list[str] = ["to_q", "to_k", "to_v", "to_out.0"]


class SurrogateConfig(Section):
    backbone: Literal["lora", "frozen", "full"] = "lora"  # ours: LoRA on the copied UNet encoder
    lora_rank: int = 8
    lora_alpha: float = 8.0
    head_channels: int = 0  # 0: min(last UNet width, 256)
    head_layers: int = 2
    timestep: int = 0  # ours: fixed small timestep
    step_embedding: bool = True
    lr_head: float = 1e-4
    lr_backbone: float = 1e-5
    weight_decay: float = 0.0
    batch_pairs: int = Field(16, ge=1)
    margin: float = 0.0  # ours: all pairs whose reward gap exceeds this
    # latent: the paper's UNet-encoder surrogate on clean latents; pixel: the ablation, a small CNN on
    # VAE-decoded images (the decode stays in the generator's gradient path)
    space: Literal["latent", "pixel"] = "latent"
    pixel_channels: int = Field(32, ge=1)  # pixel surrogate: width of its conv layers
    # ours: two coordinate channels into the head (latent) or the input (pixel), so that a score can depend
    # on where things are; both heads end in a global average pool. On the demo with a reward that depends
    # only on layout, held-out pair accuracy: pixel CNN 0.65 without, 0.95 with; the latent surrogate 0.93
    # either way (its UNet encoder already encodes position); the detector 0.64 / 0.65 (docs/results/probes/)
    coordinates: bool = True
    pixel_layers: int = Field(3, ge=1)  # pixel surrogate: stride-2 conv blocks
    # latent surrogate, ours (the paper's ablation space): the first N down blocks of the UNet encoder only (no
    # mid block when N is fewer than all); None: all of them and the mid block, as the paper. At SDXL size 2 of
    # 3 blocks save 0.30 of a bare step, but on the demo held-out pair accuracy fell from 0.57 to 0.50
    # (detector) and from 0.81 to 0.77 (saturation) (docs/results/step-cost/)
    encoder_blocks: int | None = Field(None, ge=1)
    # latent surrogate: recompute each encoder block's activations in the backward pass (less memory, one
    # more forward pass through the encoder per generator step)
    gradient_checkpointing: bool = False
    # ours: K independently initialised surrogates, each trained with its own Bradley-Terry loss on the
    # same pairs (pixel members share one decode); pair accuracy reads their mean score
    ensemble: int = Field(1, ge=1)
    # ours: the generator ascends mean - pessimism * std over the members (needs ensemble >= 2), the std
    # taken over each member's score change from the anchor model's outputs on the same noises, so it
    # is not paid for moves the members disagree on, i.e. where the surrogate's data runs out
    pessimism: float = 0.0

    @field_validator("pessimism")
    @classmethod
    def _pessimism(cls, v, info):
        if v < 0:
            raise ValueError(f"must be >= 0 (0: ascend the members' mean); got {v}")
        ensemble = info.data.get("ensemble", 2)  # absent: ensemble itself failed and is reported
        if v > 0 and ensemble < 2:
            raise ValueError(f"{v} needs the members' spread: set surrogate.ensemble to 2 or more "
                             f"(it is {ensemble}), or pessimism to 0")
        return v


class ExplorationConfig(Section):
    samples_per_prompt: int = Field(4, ge=1)  # N_s (paper: several noises per prompt; ours: 4)
    prompts_per_round: int = Field(8, ge=1)  # prompts collected and scored per round (global)
    # e.g. [300, 700]: random t1 for collected samples
    t1_range: Annotated[list[int] | None, must(lambda r: r is None or (len(r) == 2 and 0 <= r[0] <= r[1] < 1000),
                                                "must be [low, high] with 0 <= low <= high < 1000")] = None
    perturb_std: float = 0.0  # std of a latent perturbation added to half of the collected samples
    # Decode and score each chunk of collected samples in a worker thread while the next chunk samples
    # (`lasro bench overlap` measures what it saves on your machine and reward).
    overlap_scoring: bool = True


class BufferConfig(Section):
    capacity: int = 4096
    recency_decay: float = 0.9


class AlgorithmConfig(Section):
    """What every method shares; a method's own keys are in its method section (e.g. ``lasro``)."""

    # a registered method name or a dotted path package.module:Class (checked by the method registry)
    method: str = "lasro"
    rounds: int = 20
    max_reward_queries: int = 0  # stop after the round that reaches this many true-reward queries (0: no budget)
    generator_steps: int = 5  # ours: 5 generator steps : 20 surrogate steps
    c1: float = 1.0  # weight of S[R(x1)] (1-step output)
    c2: float = 1.0  # weight of S[R(x2)] (2-step output)
    stop_grad_at_t1: bool = False
    max_nonfinite_steps: int = 3  # skipped non-finite steps in a row before the run stops


class OptimConfig(Section):
    lr: float = 1e-4
    weight_decay: float = 1e-2
    batch_size: int = Field(4, ge=1)  # per process, per micro-batch
    gradient_accumulation_steps: int = Field(1, ge=1)
    max_grad_norm: float = 1.0


class PromptsConfig(Section):
    train: list[str] | str = "shapes:train"  # a list, a text file, or a built-in set (shapes:train)
    eval: list[str] | str = "shapes:test:32"
    eval_seeds: int = Field(2, ge=1)  # fixed seeds per eval prompt
    # After the last round: score the tuned model and the initial one (LoRA off) on the same noises for
    # these prompts x final_eval_seeds and write final_eval.json with the paired gain and its 95% interval.
    # A larger set than the per-round monitor's, whose few hundred samples swing by a few hundredths.
    final_eval: list[str] | str | None = None
    final_eval_seeds: int = Field(4, ge=1)


class LoggingConfig(Section):
    output_dir: str = "runs/lasro"
    eval_every: int = Field(1, ge=1)
    eval_every_queries: int = 0  # when > 0: evaluate each time reward_queries crosses a multiple (not every N rounds)
    checkpoint_every: int = Field(5, ge=1)
    checkpoints_total_limit: int = 3  # complete checkpoints kept (0: all)
    # before the first checkpoint: warn or stop when the disk cannot hold checkpoints_total_limit of them
    disk_check: Literal["warn", "stop", "off"] = "warn"
    tensorboard: bool = True
    wandb: bool = False
    progress: bool = True


class TrainConfig(Section):
    """The shared sections as fields; the method sections given to ``config_from_dict`` as extras
    (``cfg.lasro``, ``cfg.ppo``; stored in ``cfg.__pydantic_extra__``, dumped by ``config_to_dict``)."""

    model_config = ConfigDict(extra="allow")

    seed: int = 0
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    reward: Any = "shapes_detector"  # name, dotted path, {name, kwargs} or a weighted list
    # Held-out judges: other rewards scored on the evaluation samples only (never trained on), so
    # over-optimisation of `reward` shows. Each item: a name, dotted path or {name, kwargs}; with max_drop
    # ({name: shapes_detector, max_drop: 0.03}) the judge is a constraint: once its monitor mean falls more than
    # that below round 0's, the run stops and keeps the LoRA of the last evaluation where it held
    eval_rewards: list[Any] = []
    model: ModelConfig = Field(default_factory=ModelConfig)
    lora: LoraConfig = Field(default_factory=LoraConfig)
    surrogate: SurrogateConfig = Field(default_factory=SurrogateConfig)
    exploration: ExplorationConfig = Field(default_factory=ExplorationConfig)
    buffer: BufferConfig = Field(default_factory=BufferConfig)
    algorithm: AlgorithmConfig = Field(default_factory=AlgorithmConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    prompts: PromptsConfig = Field(default_factory=PromptsConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)

    @model_validator(mode="after")
    def _extras_are_sections(self):
        for name, value in (self.__pydantic_extra__ or {}).items():
            if not isinstance(value, Section):
                raise ValueError(f"unknown config key '{name}' (method sections are registered through "
                                 f"config_from_dict(data, method_sections))")
        return self


def _shared_sections() -> dict[str, type[Section]]:
    return {name: f.annotation for name, f in TrainConfig.model_fields.items()
            if isinstance(f.annotation, type) and issubclass(f.annotation, Section)}


# ----------------------------------------------------------------- errors
_EXPECTED = {"int_type": "an integer", "float_type": "a number", "bool_type": "true or false",
             "string_type": "a string", "list_type": "a list", "dict_type": "a mapping of keys",
             "model_type": "a mapping of keys"}


def _unknown_key(key, section: str, valid: list[str], sections: Mapping[str, type[Section]]) -> str:
    full = f"{section}.{key}" if section else str(key)
    elsewhere = [f"'{name}.{key}'" for name, cls in sections.items() if name != section and key in cls.model_fields]
    if elsewhere:
        hint = f" It is in {'another' if section else 'a'} section: did you mean {' or '.join(elsewhere)}?"
    else:
        close = difflib.get_close_matches(str(key), valid, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
    return f"unknown config key '{full}'.{hint} Valid keys{' in ' + section if section else ''}: {', '.join(valid)}"


def _config_error(e: ValidationError, cls: type[BaseModel], prefix: tuple = (),
                  sections: Mapping[str, type[Section]] | None = None) -> ConfigError:
    """The first error of ``e`` (from validating ``cls`` at key ``prefix``) as one ConfigError."""
    def key_of(loc):  # str parts after the field name are union branches ('list[str]'), ints are indices
        return ".".join(map(str, prefix + loc[:1])) + "".join(f"[{p}]" for p in loc[1:] if isinstance(p, int))

    errors = e.errors()
    err, loc = errors[0], errors[0]["loc"]
    key, kind, value, ctx = key_of(loc) or "config", err["type"], err.get("input"), err.get("ctx", {})
    if kind in ("extra_forbidden", "no_such_attribute"):
        return ConfigError(_unknown_key(loc[0], ".".join(prefix), list(cls.model_fields),
                                        sections or _shared_sections()))
    if kind == "literal_error":
        choices = ctx["expected"].replace("' or '", "', '")
        return ConfigError(f"{key}: {value!r} is not a valid choice; valid choices: {choices}")
    if kind == "greater_than_equal":
        return ConfigError(f"{key} must be at least {ctx['ge']}, got {value!r}")
    if kind == "greater_than":
        bound = "positive" if ctx["gt"] == 0 else f"greater than {ctx['gt']}"
        return ConfigError(f"{key} must be {bound}; got {value!r}")
    if kind in ("value_error", "assertion_error"):  # our checks: "must ...; got ..."
        return ConfigError(f"{key}{'' if loc else ':'} {ctx['error']}")
    if kind in _EXPECTED:  # a union reports one error per branch: expected a list or a string
        expected = dict.fromkeys(_EXPECTED[x["type"]] for x in errors
                                 if x["type"] in _EXPECTED and key_of(x["loc"]) == key)
        return ConfigError(f"{key}: expected {' or '.join(expected)}, got {type(value).__name__} {value!r}")
    return ConfigError(f"{key}: {err['msg']}; got {value!r}")


# ----------------------------------------------------------------- building
def _validate(cls: type[Section], data, prefix: tuple, sections: Mapping[str, type[Section]]):
    try:
        return cls.model_validate({} if data is None else data)  # an empty YAML section reads as None
    except ValidationError as e:
        raise _config_error(e, cls, prefix, sections) from None


def config_from_dict(data: dict, method_sections: Mapping[str, type[Section]] | None = None) -> TrainConfig:
    """Validate a config mapping. Each ``method_sections`` name (e.g. {"lasro": LaSROConfig}) becomes a
    section, read from ``data[name]`` or built from its defaults, and an attribute: ``cfg.lasro``."""
    methods = dict(method_sections or {})
    for name, cls in methods.items():
        if name in TrainConfig.model_fields or not (isinstance(cls, type) and issubclass(cls, Section)):
            raise ValueError(f"method section {name!r}: need a new name and a Section subclass, got {cls!r}")
    sections = {**_shared_sections(), **methods}
    if not isinstance(data, dict):
        raise ConfigError(f"config: expected a mapping of keys, got {type(data).__name__} {data!r}")
    valid = [*TrainConfig.model_fields, *methods]
    for key in data:
        if key not in valid:
            raise ConfigError(_unknown_key(key, "", valid, sections))
    values = {k: v for k, v in data.items() if k not in sections}
    values.update({name: _validate(cls, data.get(name), (name,), sections) for name, cls in sections.items()})
    return _validate(TrainConfig, values, (), sections)


def apply_override(data: dict, assignment: str) -> None:
    """Apply one ``a.b.c=value`` (value parsed as YAML) to a nested dict."""
    if "=" not in assignment:
        raise ConfigError(f"--set expects key=value, got {assignment!r} (e.g. --set optim.lr=3e-5)")
    key, raw = assignment.split("=", 1)
    value = yaml.safe_load(raw) if raw.strip() else ""
    node = data
    parts = key.strip().split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: '{p}' is not a section")
    node[parts[-1]] = value


def set_assignments(dotted: dict | None) -> list[str]:
    """``{"a.b": value}`` as ``--set a.b=value`` strings; values as JSON, which YAML reads back unchanged
    (lists of mappings included)."""
    return [f"{k}={json.dumps(v)}" for k, v in (dotted or {}).items()]


DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "demo.yaml")


def read_yaml_mapping(path: str, name: str, hint: str = "") -> dict:
    """A YAML file that must hold a mapping (a config, a tuning grid, a suite), with errors that name it."""
    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise ConfigError(f"{name} {path!r} not found{hint}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{name} {path!r} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{name} {path!r}: expected a mapping of keys, got {type(data).__name__}")
    return data


def read_config_data(path: str | None = None, overrides: list[str] | None = None) -> dict:
    """The raw mapping of a YAML config (none given: the embedded demo job) with ``--set`` overrides applied."""
    data = read_yaml_mapping(path or DEFAULT_CONFIG, "config file")
    for o in overrides or []:
        apply_override(data, o)
    return data


def config_to_dict(cfg: TrainConfig) -> dict:
    """Every key, method sections included, as plain dicts and lists (written into checkpoints' state.json)."""
    return cfg.model_dump()
