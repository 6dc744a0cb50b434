"""Training configuration: typed sections, YAML loading, ``--set key=value`` overrides, and
validation whose errors name the bad key or value and the valid choices.

Defaults follow METHOD.md: "paper" where the paper states it, "ours" where it is silent.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A config key or value is wrong; the message names it and what is allowed."""


@dataclass
class ModelConfig:
    pretrained: str = "demo:shapes"  # hub id, local folder, demo:shapes, tiny:sdxl, tiny:sd, random:sdxl-turbo
    unet: str | None = None  # optional separate UNet (e.g. latent-consistency/lcm-sdxl)
    variant: str | None = None  # e.g. "fp16" for hub weights
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    scheduler: Literal["auto", "euler_ancestral", "lcm"] = "auto"
    resolution: int = 0  # 0: the UNet's native size
    guidance_scale: float = 0.0  # SDXL-Turbo: 0; LCM UNets with a guidance embedding: e.g. 8
    timesteps: list[int] = field(default_factory=lambda: [999, 499])  # ours: [999, 499]
    tiny: dict = field(default_factory=dict)  # TinySpec overrides for tiny:* models
    gradient_checkpointing: bool = False


@dataclass
class LoraConfig:
    rank: int = 16
    alpha: float = 16.0
    targets: list[str] = field(default_factory=lambda: ["to_q", "to_k", "to_v", "to_out.0"])


@dataclass
class SurrogateConfig:
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
    batch_pairs: int = 16
    margin: float = 0.0  # ours: all pairs whose reward gap exceeds this
    # latent: the paper's UNet-encoder surrogate on clean latents; pixel: the ablation, a small CNN on
    # VAE-decoded images (the decode stays in the generator's gradient path)
    space: Literal["latent", "pixel"] = "latent"
    pixel_channels: int = 32  # pixel surrogate: width of its conv layers
    pixel_layers: int = 3  # pixel surrogate: stride-2 conv blocks
    # ours: K independently initialised surrogates, each trained with its own Bradley-Terry loss on the
    # same pairs (pixel members share one decode); pair accuracy reads their mean score
    ensemble: int = 1
    # ours: the generator ascends mean - pessimism * std over the members (needs ensemble >= 2), the std
    # taken over each member's score change from the anchor model's outputs on the same noises, so it
    # is not paid for moves the members disagree on, i.e. where the surrogate's data runs out
    pessimism: float = 0.0


@dataclass
class ExplorationConfig:
    samples_per_prompt: int = 4  # N_s (paper: several noises per prompt; ours: 4)
    prompts_per_round: int = 8  # prompts collected and scored per round (global)
    t1_range: list[int] | None = None  # e.g. [300, 700]: random t1 for collected samples
    perturb_std: float = 0.0  # std of a latent perturbation added to half of the collected samples
    # Decode and score each chunk of collected samples in a worker thread while the next chunk samples
    # (`lasro bench overlap` measures what it saves on your machine and reward).
    overlap_scoring: bool = True


@dataclass
class BufferConfig:
    capacity: int = 4096
    recency_decay: float = 0.9


@dataclass
class AlgorithmConfig:
    method: Literal["lasro", "ppo", "dpo", "gors", "draft"] = "lasro"  # baselines: see lasro/methods/
    rounds: int = 20
    max_reward_queries: int = 0  # stop after the round that reaches this many true-reward queries (0: no budget)
    pretrain_collect_rounds: int = 2  # paper: pre-train the surrogate on the initial generator's samples
    pretrain_surrogate_steps: int = 100
    generator_steps: int = 5  # ours: 5 generator steps : 20 surrogate steps
    surrogate_steps: int = 20
    c1: float = 1.0  # weight of S[R(x1)] (1-step output)
    c2: float = 1.0  # weight of S[R(x2)] (2-step output)
    regularizer: Literal["anchor", "none"] = "anchor"
    reg_weight: float = 1.0  # c
    # ours: what the anchor holds the outputs to. initial: the frozen initial model (bounds the total move);
    # round: the generator as it was when the round's generator steps began, a trust region that moves
    # with the surrogate's freshest data and leaves the total move to the rounds. On the demo, round drifted
    # with the surrogate's errors: 2-step -0.036 against +0.017 (docs/bench/demo-surrogate/, section 7)
    anchor: Literal["initial", "round"] = "initial"
    ema_decay: float = 0.99
    stop_grad_at_t1: bool = False
    max_nonfinite_steps: int = 3  # skipped non-finite steps in a row before the run stops
    # ours: skip a round's generator steps while the surrogate orders fresh same-prompt pairs worse
    # than this (held-out pair accuracy of the latest collection); 0 = never skip (the paper's loop)
    min_pair_accuracy: float = 0.0
    # ...averaged over this many latest collections: one round's estimate (a few hundred pairs) is noisy
    pair_accuracy_window: int = 1
    # ours: rescale each output's surrogate gradient to the batch's mean size, so that every sample pulls
    # the LoRA equally hard (lasro/sample_gradients.py)
    equalize_sample_gradients: bool = False


@dataclass
class PPOConfig:
    """DDPO/RLCM-style PPO (lasro/methods/ppo.py)."""

    output_std: float = 0.1  # std of the Gaussian output policy x ~ N(x_theta, output_std^2), latent units
    clip_range: float = 0.2
    adv_clip: float = 5.0  # advantages clipped to +-adv_clip after per-prompt normalisation
    epochs: int = 2  # passes over each round's samples, minibatches of optim.batch_size


@dataclass
class DPOConfig:
    """Online Diffusion-DPO / PSO-style preference loss (lasro/methods/dpo.py)."""

    beta: float = 500.0
    timesteps: Literal["sampler", "uniform"] = "sampler"  # sampler: a k-step output is noised to t_(k-1)


@dataclass
class GORSConfig:
    """GORS-style reward-weighted fine-tuning on the generator's own best samples (lasro/methods/gors.py)."""

    top_fraction: float = 0.25  # share of each round's samples (per step count) kept
    temperature: float = 1.0  # weights: softmax(normalised reward / temperature) over the kept samples
    timesteps: Literal["sampler", "uniform"] = "sampler"
    # which samplers' outputs it regresses on ([2]: skip 1-step outputs, whose loss sits at t=999); on the
    # demo both choices collapse (docs/bench/demo-compare/, "GORS")
    step_counts: list[int] = field(default_factory=lambda: [1, 2])


@dataclass
class OptimConfig:
    lr: float = 1e-4
    weight_decay: float = 1e-2
    batch_size: int = 4  # per process, per micro-batch
    gradient_accumulation_steps: int = 1
    max_grad_norm: float = 1.0


@dataclass
class PromptsConfig:
    train: list[str] | str = "shapes:train"  # a list, a text file, or a built-in set (shapes:train)
    eval: list[str] | str = "shapes:test:32"
    eval_seeds: int = 2  # fixed seeds per eval prompt
    # After the last round: score the tuned model and the initial one (LoRA off) on the same noises for
    # these prompts x final_eval_seeds and write final_eval.json with the paired gain and its 95% interval.
    # A larger set than the per-round monitor's, whose few hundred samples swing by a few hundredths.
    final_eval: list[str] | str | None = None
    final_eval_seeds: int = 4


@dataclass
class LoggingConfig:
    output_dir: str = "runs/lasro"
    eval_every: int = 1
    eval_every_queries: int = 0  # when > 0: evaluate each time reward_queries crosses a multiple (not every N rounds)
    checkpoint_every: int = 5
    checkpoints_total_limit: int = 3
    tensorboard: bool = True
    wandb: bool = False
    progress: bool = True


@dataclass
class TrainConfig:
    seed: int = 0
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    reward: Any = "shapes_detector"  # name, dotted path, {name, kwargs} or a weighted list
    # Held-out judges: other rewards scored on the evaluation samples only (never trained on), so
    # over-optimisation of `reward` shows. Each item: a name, dotted path or {name, kwargs}.
    eval_rewards: list[Any] = field(default_factory=list)
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    surrogate: SurrogateConfig = field(default_factory=SurrogateConfig)
    exploration: ExplorationConfig = field(default_factory=ExplorationConfig)
    buffer: BufferConfig = field(default_factory=BufferConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    dpo: DPOConfig = field(default_factory=DPOConfig)
    gors: GORSConfig = field(default_factory=GORSConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    prompts: PromptsConfig = field(default_factory=PromptsConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)


# ----------------------------------------------------------------- validation
def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


_SCIENTIFIC = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def _coerce(value, tp, key: str):
    """Check ``value`` against the annotation ``tp``; ints are accepted where floats are expected."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"{key}: {value!r} is not a valid choice; valid choices: {', '.join(map(repr, choices))}")
        return value
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            if arg is type(None):
                if value is None:
                    return None
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {' or '.join(_type_name(a) for a in typing.get_args(tp))}, got {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        (item,) = typing.get_args(tp)
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__} {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and _SCIENTIFIC.match(value.strip()):
            return float(value)  # YAML 1.1 reads 1e-5 (no dot) as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {type(value).__name__} {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {type(value).__name__} {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {type(value).__name__} {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    raise ConfigError(f"{key}: unsupported type {tp}")


def _build(cls, data, prefix: str = ""):
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping of keys, got {type(data).__name__} {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if key not in hints:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"unknown config key '{full}'.{hint} Valid keys{' in ' + prefix if prefix else ''}: "
                              f"{', '.join(names)}")
        kwargs[key] = _coerce(value, hints[key], full)
    return cls(**kwargs)


def _check_ranges(cfg: TrainConfig) -> None:
    positive = {
        "exploration.samples_per_prompt": cfg.exploration.samples_per_prompt,
        "exploration.prompts_per_round": cfg.exploration.prompts_per_round,
        "optim.batch_size": cfg.optim.batch_size,
        "optim.gradient_accumulation_steps": cfg.optim.gradient_accumulation_steps,
        "lora.rank": cfg.lora.rank, "surrogate.batch_pairs": cfg.surrogate.batch_pairs,
        "logging.eval_every": cfg.logging.eval_every, "prompts.eval_seeds": cfg.prompts.eval_seeds,
        "prompts.final_eval_seeds": cfg.prompts.final_eval_seeds,
        "surrogate.pixel_channels": cfg.surrogate.pixel_channels, "surrogate.pixel_layers": cfg.surrogate.pixel_layers,
        "ppo.epochs": cfg.ppo.epochs, "algorithm.pair_accuracy_window": cfg.algorithm.pair_accuracy_window,
        "surrogate.ensemble": cfg.surrogate.ensemble,
    }
    for key, v in positive.items():
        if v < 1:
            raise ConfigError(f"{key} must be at least 1, got {v}")
    ts = cfg.model.timesteps
    if not 1 <= len(ts) <= 2 or any(not 0 <= t < 1000 for t in ts):
        raise ConfigError(f"model.timesteps must hold 1 or 2 timesteps in [0, 999], e.g. [999, 499]; got {ts}")
    if len(ts) == 2 and ts[1] >= ts[0]:
        raise ConfigError(f"model.timesteps must decrease (e.g. [999, 499]); got {ts}")
    tr = cfg.exploration.t1_range
    if tr is not None and (len(tr) != 2 or not 0 <= tr[0] <= tr[1] < 1000):
        raise ConfigError(f"exploration.t1_range must be [low, high] with 0 <= low <= high < 1000; got {tr}")
    if not cfg.gors.step_counts or not set(cfg.gors.step_counts) <= {1, 2}:
        raise ConfigError(f"gors.step_counts must be a non-empty subset of [1, 2]; got {cfg.gors.step_counts}")
    if min(cfg.gors.step_counts) > len(ts):
        raise ConfigError(f"gors.step_counts {cfg.gors.step_counts} names no sampler of model.timesteps {ts}: "
                          f"a {len(ts)}-timestep model samples only 1 step; use gors.step_counts: [1]")
    if not 0.0 < cfg.gors.top_fraction <= 1.0:
        raise ConfigError(f"gors.top_fraction must be in (0, 1]; got {cfg.gors.top_fraction}")
    for key, v in {"ppo.output_std": cfg.ppo.output_std, "ppo.clip_range": cfg.ppo.clip_range,
                   "gors.temperature": cfg.gors.temperature, "dpo.beta": cfg.dpo.beta}.items():
        if not v > 0:
            raise ConfigError(f"{key} must be positive; got {v}")
    if cfg.surrogate.pessimism < 0:
        raise ConfigError(f"surrogate.pessimism must be >= 0 (0: ascend the members' mean); "
                          f"got {cfg.surrogate.pessimism}")
    if cfg.surrogate.pessimism > 0 and cfg.surrogate.ensemble < 2:
        raise ConfigError(f"surrogate.pessimism {cfg.surrogate.pessimism} needs the members' spread: set "
                          f"surrogate.ensemble to 2 or more (it is {cfg.surrogate.ensemble}), or pessimism to 0")
    if not 0.0 < cfg.algorithm.ema_decay < 1.0:
        raise ConfigError(f"algorithm.ema_decay must be in (0, 1); got {cfg.algorithm.ema_decay}")


def config_from_dict(data: dict) -> TrainConfig:
    cfg = _build(TrainConfig, data)
    _check_ranges(cfg)
    return cfg


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


DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "demo.yaml")


def read_config_data(path: str | None = None, overrides: list[str] | None = None) -> dict:
    """The raw mapping of a YAML config (none given: the embedded demo job) with ``--set`` overrides applied."""
    data: dict = {}
    path = path or DEFAULT_CONFIG
    if path:
        try:
            with open(path) as f:
                data = yaml.safe_load(f) or {}
        except FileNotFoundError:
            raise ConfigError(f"config file {path!r} not found") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {path!r} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path!r}: expected a mapping of keys, got {type(data).__name__}")
    for o in overrides or []:
        apply_override(data, o)
    return data


def load_config(path: str | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML config (none given: the embedded demo job, lasro/configs/demo.yaml) and apply overrides."""
    return config_from_dict(read_config_data(path, overrides))


def config_to_dict(cfg: TrainConfig) -> dict:
    return dataclasses.asdict(cfg)
