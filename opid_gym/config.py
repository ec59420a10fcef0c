"""Run configuration: typed frozen dataclasses, defaults per (benchmark, learner), presets.

A run is fully determined by one :class:`RunConfig` (seeds included), saved as
``config.json`` in the run folder; ``opid-bench resume`` reads it back unchanged.

How a config is resolved (:func:`resolve_config`), later layers winning:

1. the dataclass defaults below (the published protocol's numbers, spec §1/§2);
2. per environment family (its :attr:`EnvFamily.run_defaults <opid_gym.family.EnvFamily>`,
   e.g. search QA's 128 tasks per step and 10% warm-up) and the learner's own :meth:`Learner.default_config` for the
   benchmark (A_ep normalisation, β_kl, β_ent, c_inv, ...);
3. fields taken from the benchmark protocol when left unset (step limit, history
   length, prompt limit);
4. a preset (:data:`PRESETS`: ``smoke``, ``cpu-demo``, ``paper``);
5. a JSON config file (``--config``), then ``--set section.key=value`` overrides
   (``--set key=value`` for a field of the learner's own config, e.g. ``analyzer``).

Every value is type-checked and range-checked before any work starts; an unknown
key fails with a "did you mean".
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from opid_gym.family import EnvFamily
from opid_gym.learner import ConfigError, LearnerConfig
from opid_gym.registry import suggest

__all__ = [
    "CheckpointConfig", "ConfigError", "EnvConfig", "EvalConfig", "LogConfig", "ModelConfig", "OptimConfig",
    "PRESETS", "RolloutConfig", "RunConfig", "apply_overrides", "config_from_dict", "config_to_dict",
    "parse_set_items", "resolve_config",
]


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


# ----------------------------------------------------------------------- sections
@dataclass(frozen=True)
class ModelConfig:
    """The policy being trained.

    Attributes:
        name: ``tiny``, ``smollm2-135m`` (the embedded default), a local folder or a
            Hugging Face id.
        backend: the model backend (``hf``: transformers; see ``agents/``).
        dtype: parameter dtype (``float32``, ``bfloat16``).
        device: ``auto`` (a GPU when there is one), ``cpu``, ``cuda``, ``cuda:1``.
        autocast: run forwards under autocast with this dtype (``bfloat16``), or unset.
        gradient_checkpointing: trade compute for activation memory.
        train_top_layers: train only the top N decoder blocks and the final norm; the
            embeddings (and a head tied to them) and the blocks below stay frozen, and the
            backward stops at the lowest trained block (unset: every weight trains).
        cpu_threads: torch's CPU threads (unset: torch's default, one per core). Part of
            the config because the thread count can change float summation order; one
            thread is much faster than two on a busy shared machine.
        rollout_engine: ``trainer`` samples with the trained model itself; another
            engine (e.g. ``vllm``) receives the weights after every update.
        engine_memory: share of the GPU's memory a colocated rollout engine (vLLM) may
            take for its weights and KV cache (the rest is the trainer's).
        engine_max_len: the engine's longest prompt + response in tokens (unset: the
            run's prompt limit + response limit, at least 2048).
        engine_options: a JSON object of further engine settings (for vLLM:
            ``VLLMConfig`` fields such as ``{"enforce_eager": true, "sleep_level": 2}``;
            other keys go to ``vllm.LLM``), or unset.
        fsdp_reshard_after_forward: with several processes (FSDP): free gathered
            parameters after each block's forward (least memory) or keep them until the
            backward (one all-gather less per block, more memory). See docs/scale.md.
        fsdp_cpu_offload: with several processes (FSDP): parameter shards, gradients
            and optimiser states in CPU memory; the optimiser step runs on the CPU.
    """

    name: str = "smollm2-135m"
    backend: str = "hf"
    dtype: str = "float32"
    device: str = "auto"
    autocast: str | None = None
    gradient_checkpointing: bool = False
    train_top_layers: int | None = None
    cpu_threads: int | None = None
    rollout_engine: str = "trainer"
    engine_memory: float = 0.4
    engine_max_len: int | None = None
    engine_options: str | None = None
    fsdp_reshard_after_forward: bool = True
    fsdp_cpu_offload: bool = False

    def __post_init__(self) -> None:
        _check(bool(self.name), "model.name must not be empty")
        _check(0 < self.engine_memory < 1, f"model.engine_memory must be in (0, 1), got {self.engine_memory}")
        _check(self.engine_max_len is None or self.engine_max_len >= 64, "model.engine_max_len must be >= 64")
        if self.engine_options is not None:
            try:
                options = json.loads(self.engine_options)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"model.engine_options is not valid JSON: {exc}") from None
            _check(isinstance(options, dict), "model.engine_options must be a JSON object")
        _check(self.dtype in ("float32", "bfloat16", "float16"),
               f"model.dtype must be float32|bfloat16|float16, got {self.dtype!r}")
        _check(self.autocast in (None, "bfloat16", "float16"),
               f"model.autocast must be bfloat16|float16|null, got {self.autocast!r}")
        _check(self.cpu_threads is None or self.cpu_threads >= 1, "model.cpu_threads must be >= 1 or null")
        _check(self.train_top_layers is None or self.train_top_layers >= 1,
               "model.train_top_layers must be >= 1 or null")
        _check(re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device) is not None,
               f"model.device must be auto, cpu, mps, cuda or cuda:N, got {self.device!r}")


@dataclass(frozen=True)
class EnvConfig:
    """The benchmark and how its environments run.

    Attributes:
        benchmark: benchmark id (``opid-bench list benchmarks``); training uses its
            training split, evaluation its evaluation split.
        data_root: the benchmark data folder (unset: ``$OPID_GYM_DATA`` or the default).
        max_steps: episode step limit (unset: the benchmark's).
        history_length: past turns in the prompt (unset: the benchmark's).
        workers: environment worker processes (0: in the trainer's process).
        max_concurrent: episodes running at once in a rollout (unset: all).
        pool: where training workers run: ``process`` (local processes) or ``ray``
            (Ray actors, possibly on other machines; needs ``env.workers >= 1``), or
            ``auto``: local processes unless the environment's steps are cheaper than a
            message to a worker (then in the trainer's process; ``opid_gym.workers.make_pool``).
        ray_address: the Ray cluster to join (``auto``, ``HOST:PORT``); unset: a local
            Ray instance (or the one already initialised).
        train_fraction: train on this share of the training tasks (1.0: all): a seeded
            subset, the same for every learner at a given (fraction, seed), nested across
            fractions (:func:`opid_gym.train.training_subset`). The evaluation is unchanged.
        remote_urls: environments served by ``opid-bench serve-env`` on other machines
            (``http://host:port`` each): training and evaluation episodes run there, slot
            ``s`` on ``remote_urls[s % n]`` (``workers``/``pool`` are then unused). The
            servers' token, if any, is read from ``$OPID_GYM_ENV_TOKEN`` (docs/scale.md).
        remote_timeout: seconds one request to a server may take; a server that is down
            or slower fails that episode by error, as a dead worker process does.
    """

    benchmark: str = "alfworld-unseen"
    data_root: str | None = None
    max_steps: int | None = None
    history_length: int | None = None
    workers: int = 0
    max_concurrent: int | None = None
    pool: Literal["process", "ray", "auto"] = "process"
    ray_address: str | None = None
    train_fraction: float = 1.0
    remote_urls: tuple[str, ...] = ()
    remote_timeout: float = 300.0

    def __post_init__(self) -> None:
        for url in self.remote_urls:
            _check(url.startswith("http://"), f"env.remote_urls: expected http://host:port, got {url!r}")
        _check(self.remote_timeout > 0, f"env.remote_timeout must be > 0, got {self.remote_timeout}")
        _check(0 < self.train_fraction <= 1, f"env.train_fraction must be in (0, 1], got {self.train_fraction}")
        _check(self.max_steps is None or self.max_steps >= 1, f"env.max_steps must be >= 1, got {self.max_steps}")
        _check(self.history_length is None or self.history_length >= 0, "env.history_length must be >= 0")
        _check(self.workers >= 0, f"env.workers must be >= 0, got {self.workers}")
        _check(self.max_concurrent is None or self.max_concurrent >= 1, "env.max_concurrent must be >= 1")
        _check(self.pool != "ray" or self.workers >= 1, "env.pool=ray needs env.workers >= 1 (the actors)")


@dataclass(frozen=True)
class RolloutConfig:
    """Training rollouts: B tasks × G group members per step.

    Attributes:
        tasks_per_step: B. group_size: G.
        temperature / top_p: rollout sampling (1.0 / 1.0 in the reference scripts).
        max_new_tokens: response limit. max_prompt_tokens: prompt limit (unset: the
            benchmark's); longer prompts are left-truncated.
        old_logp: ``recompute`` (π_old log-probs from a trainer forward pass, as the
            reference code does) or ``sampler`` (the rollout engine's own log-probs).
        filter_groups: DAPO-style dynamic sampling (reference ``algorithm.filter_groups``,
            off by default): drop groups whose episodes all got the same reward and refill
            the step with new rollouts of the same tasks (new seeds) until B groups are
            kept or ``max_gen_batches`` rollouts were made; the last one is kept unfiltered
            (:func:`opid_gym.train.select_groups`).
        max_gen_batches: the most rollouts of B×G episodes one step may make (10).
    """

    tasks_per_step: int = 16
    group_size: int = 8
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 512
    max_prompt_tokens: int | None = None
    old_logp: Literal["recompute", "sampler"] = "recompute"
    filter_groups: bool = False
    max_gen_batches: int = 10

    def __post_init__(self) -> None:
        _check(self.tasks_per_step >= 1, f"rollout.tasks_per_step must be >= 1, got {self.tasks_per_step}")
        _check(self.group_size >= 1, f"rollout.group_size must be >= 1, got {self.group_size}")
        _check(self.temperature > 0, f"rollout.temperature must be > 0, got {self.temperature}")
        _check(0 < self.top_p <= 1, f"rollout.top_p must be in (0, 1], got {self.top_p}")
        _check(self.max_new_tokens >= 1, f"rollout.max_new_tokens must be >= 1, got {self.max_new_tokens}")
        _check(self.max_prompt_tokens is None or self.max_prompt_tokens >= 16, "rollout.max_prompt_tokens must be >= 16")
        _check(self.max_gen_batches >= 1, f"rollout.max_gen_batches must be >= 1, got {self.max_gen_batches}")


@dataclass(frozen=True)
class OptimConfig:
    """The optimiser and how the batch is cut for the update.

    Attributes:
        lr, weight_decay, beta1, beta2, eps: AdamW.
        warmup_ratio: linear warm-up over this fraction of the steps, then constant.
        grad_clip: clip the global gradient norm to this (0: no clipping).
        epochs: passes over the step's batch (PPO epochs).
        mini_batch_size: step samples per optimiser step (the batch is cut into
            ceil(N / mini_batch_size) nearly equal mini-batches, in a seeded order).
        micro_batch_size: step samples per forward/backward pass (gradient
            accumulation inside a mini-batch; changes memory, not the result).
    """

    lr: float = 1e-6
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    warmup_ratio: float = 0.0
    grad_clip: float = 1.0
    epochs: int = 1
    mini_batch_size: int = 2048
    micro_batch_size: int = 8

    def __post_init__(self) -> None:
        _check(self.lr > 0, f"optim.lr must be > 0, got {self.lr}")
        _check(self.weight_decay >= 0, "optim.weight_decay must be >= 0")
        _check(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "optim.beta1/beta2 must be in [0, 1)")
        _check(self.eps > 0, "optim.eps must be > 0")
        _check(0 <= self.warmup_ratio <= 1, f"optim.warmup_ratio must be in [0, 1], got {self.warmup_ratio}")
        _check(self.grad_clip >= 0, "optim.grad_clip must be >= 0")
        _check(self.epochs >= 1, f"optim.epochs must be >= 1, got {self.epochs}")
        _check(self.mini_batch_size >= 1, "optim.mini_batch_size must be >= 1")
        _check(self.micro_batch_size >= 1, "optim.micro_batch_size must be >= 1")


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation on the benchmark's evaluation split (the benchmark's sampling protocol).

    Attributes:
        every: evaluate every this many steps (0: only at the end).
        final: evaluate after the last step.
        limit: a fixed seeded subset of this many tasks (unset: all of them).
    """

    every: int = 0
    final: bool = True
    limit: int | None = None

    def __post_init__(self) -> None:
        _check(self.every >= 0, f"eval.every must be >= 0, got {self.every}")
        _check(self.limit is None or self.limit >= 1, f"eval.limit must be >= 1, got {self.limit}")


@dataclass(frozen=True)
class CheckpointConfig:
    """Checkpoints (model, optimiser, step, RNG and data-order state).

    Attributes:
        every: save every this many steps (the last step is always saved).
        keep: keep this many most recent checkpoints (older ones are deleted).
    """

    every: int = 10
    keep: int = 2

    def __post_init__(self) -> None:
        _check(self.every >= 1, f"checkpoint.every must be >= 1, got {self.every}")
        _check(self.keep >= 1, f"checkpoint.keep must be >= 1, got {self.keep}")


@dataclass(frozen=True)
class LogConfig:
    """What the run folder records besides metrics.jsonl.

    Attributes:
        tensorboard: write TensorBoard events (needs ``opid-gym[train]``).
        rollouts_every: save the step's trajectories every this many steps (0: never).
    """

    tensorboard: bool = True
    rollouts_every: int = 1

    def __post_init__(self) -> None:
        _check(self.rollouts_every >= 0, "log.rollouts_every must be >= 0")


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a training run.

    Attributes:
        learner_name: the learner (``opid-bench list learners``).
        seed: the run seed (task order, rollout sampling, model init of ``tiny``).
        steps: training steps.
        learner: the learner's own config (its ``Config`` class; ``--set learner.x=...``).
        experiment: the experiment cell this run belongs to (``<experiment>/<cell>``, set
            by ``opid-bench experiment run``); a label only, it changes nothing measured.
    """

    learner_name: str = "grpo"
    seed: int = 0
    steps: int = 150
    experiment: str | None = None
    model: ModelConfig = field(default_factory=ModelConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)

    def __post_init__(self) -> None:
        _check(self.steps >= 1, f"steps must be >= 1, got {self.steps}")
        _check(self.seed >= 0, f"seed must be >= 0, got {self.seed}")


SECTIONS = ("model", "env", "rollout", "optim", "eval", "checkpoint", "log", "learner")

# ------------------------------------------------------- defaults and presets
PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {
        # seconds on a CPU: the random-init tiny model, 2 steps, 2 tasks x 2 members, 3 env steps
        "model.name": "tiny", "model.cpu_threads": 1, "steps": 2, "env.max_steps": 3,
        "rollout.tasks_per_step": 2, "rollout.group_size": 2, "rollout.max_new_tokens": 16,
        "rollout.max_prompt_tokens": 512, "optim.lr": 1e-4, "optim.mini_batch_size": 64,
        "optim.micro_batch_size": 16, "eval.limit": 2, "checkpoint.every": 1,
    },
    "cpu-demo": {
        # minutes on a CPU: the embedded SmolLM2-135M-Instruct, two small steps; the
        # sampler's log-probs serve as π_old (same model, saves a forward pass)
        "model.name": "smollm2-135m", "model.cpu_threads": 1, "steps": 2, "env.max_steps": 3,
        "env.history_length": 1,
        "rollout.tasks_per_step": 2, "rollout.group_size": 2, "rollout.max_new_tokens": 32,
        "rollout.max_prompt_tokens": 768, "rollout.old_logp": "sampler", "optim.lr": 1e-5,
        "optim.mini_batch_size": 64, "optim.micro_batch_size": 4, "eval.limit": 2, "checkpoint.every": 1,
    },
    "paper": {
        # the published protocol (GPU): Qwen2.5-3B-Instruct, bf16 autocast, spec defaults otherwise
        "model.name": "Qwen/Qwen2.5-3B-Instruct", "model.autocast": "bfloat16",
        "eval.every": 10, "checkpoint.every": 10,
    },
}
"""Named override sets applied on top of the (benchmark, learner) defaults."""


# ------------------------------------------------------------ typed conversion
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_optional(tp: Any) -> tuple[bool, Any]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) < len(typing.get_args(tp)):
            return True, args[0] if len(args) == 1 else typing.Union[tuple(args)]
    return False, tp


def _type_name(tp: Any) -> str:
    optional, inner = _is_optional(tp)
    if typing.get_origin(inner) is Literal:
        name = " | ".join(repr(a) for a in typing.get_args(inner))
    else:
        name = getattr(inner, "__name__", str(inner))
    return f"{name} or null" if optional else name


def coerce(value: Any, tp: Any, key: str, *, from_text: bool) -> Any:
    """Convert ``value`` (a CLI string when ``from_text``, else a JSON value) to ``tp``."""
    optional, inner = _is_optional(tp)
    if from_text and isinstance(value, str) and value.strip().lower() in ("null", "none") and optional:
        return None
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{key} cannot be null (expected {_type_name(tp)})")
    if typing.get_origin(inner) is Literal:
        choices = typing.get_args(inner)
        if value not in choices:
            raise ConfigError(f"{key} must be one of {', '.join(map(repr, choices))}, got {value!r}."
                              + (suggest(str(value), [str(c) for c in choices]) if isinstance(value, str) else ""))
        return value
    if typing.get_origin(inner) is tuple:
        args = typing.get_args(inner)
        item_type = args[0] if args else str
        if from_text and isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    value = json.loads(text)
                except json.JSONDecodeError:
                    raise ConfigError(f"{key} expects a JSON list or comma-separated values, got {value!r}") from None
            else:
                value = [v.strip() for v in text.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} expects a list, got {value!r}")
        return tuple(coerce(v, item_type, f"{key}[{i}]", from_text=from_text) for i, v in enumerate(value))
    try:
        if inner is bool:
            if isinstance(value, bool):
                return value
            if from_text and isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "on"):
                return True
            if from_text and isinstance(value, str) and value.strip().lower() in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if inner is int:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, int):
                return value
            if from_text and isinstance(value, str):
                return int(value.strip())
            raise ValueError
        if inner is float:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, (int, float)):
                number = float(value)
            elif from_text and isinstance(value, str):
                number = float(value.strip())
            else:
                raise ValueError
            if math.isfinite(number):
                return number
            raise _NonFinite
        if inner is str:
            if isinstance(value, str):
                return value
            raise ValueError
    except _NonFinite:  # inf / nan would train to NaN weights
        raise ConfigError(f"{key} must be a finite number, got {value!r}") from None
    except ValueError:
        raise ConfigError(f"{key} expects {_type_name(tp)}, got {value!r}") from None
    raise ConfigError(f"{key}: unsupported field type {tp!r}")


class _NonFinite(Exception):
    """A float setting that is infinite or NaN (raised and caught inside :func:`coerce`)."""


def _section_fields(cfg: RunConfig) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name in SECTIONS:
        section = getattr(cfg, name)
        out[name] = _hints(type(section))
    return out


def known_keys(cfg: RunConfig) -> list[str]:
    """Every settable dotted key of ``cfg`` (``steps``, ``optim.lr``, ``learner.kl_coef``...)."""
    top = [f.name for f in dataclasses.fields(cfg) if f.name not in SECTIONS]
    return top + [f"{s}.{k}" for s, fields in _section_fields(cfg).items() for k in fields]


def apply_overrides(cfg: RunConfig, overrides: Mapping[str, Any], *, from_text: bool = False) -> RunConfig:
    """Return ``cfg`` with dotted-key overrides applied (typed, validated).

    ``from_text=True`` parses string values (``--set``); otherwise values must already
    have the right JSON type (presets, config files). A key without a section that
    names a field of the learner's own config means ``learner.<key>`` (so
    ``--set analyzer=openai`` sets ``learner.analyzer``). Raises :class:`ConfigError`.
    """
    top_hints = _hints(RunConfig)
    section_hints = _section_fields(cfg)
    top_changes: dict[str, Any] = {}
    changes: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        if "." not in key and key not in top_hints and key in section_hints["learner"]:
            key = f"learner.{key}"  # a bare field of the learner's config: --set analyzer=openai
        section, dot, name = key.partition(".")
        if not dot and key in top_hints and key not in SECTIONS:
            if key == "learner_name":
                raise ConfigError("the learner is chosen with --learner (it decides the learner section's fields)")
            top_changes[key] = coerce(value, top_hints[key], key, from_text=from_text)
        elif dot and section in section_hints and name in section_hints[section]:
            changes.setdefault(section, {})[name] = coerce(value, section_hints[section][name], key,
                                                           from_text=from_text)
        else:
            raise ConfigError(f"unknown config key {key!r}." + suggest(key, known_keys(cfg)))
    try:
        sections = {s: dataclasses.replace(getattr(cfg, s), **c) for s, c in changes.items()}
        return dataclasses.replace(cfg, **top_changes, **sections)
    except TypeError as exc:  # pragma: no cover - guarded by the key check above
        raise ConfigError(str(exc)) from None


def parse_set_items(items: Sequence[str]) -> dict[str, str]:
    """``["optim.lr=1e-5", ...]`` → ``{"optim.lr": "1e-5"}`` (values parsed later, typed)."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE (e.g. optim.lr=1e-5), got {item!r}")
        out[key] = value
    return out


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"optim": {"lr": 1}}`` → ``{"optim.lr": 1}`` (one level of sections)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping) and not prefix:
            out.update(flatten(value, f"{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


# ----------------------------------------------------------- (de)serialisation
def config_to_dict(cfg: RunConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def learner_class(name: str) -> Any:
    """The registered learner class (a missing optional module is a clear error)."""
    import opid_gym

    try:
        return opid_gym.LEARNERS.get(name)
    except ImportError as exc:
        raise ConfigError(f"learner {name!r} is registered but cannot be imported here: {exc}") from None


def config_from_dict(data: Mapping[str, Any]) -> RunConfig:
    """Rebuild a :class:`RunConfig` from :func:`config_to_dict`'s output (validated)."""
    if not isinstance(data, Mapping):
        raise ConfigError("a config must be a JSON object")
    name = data.get("learner_name", "grpo")
    if not isinstance(name, str):
        raise ConfigError(f"learner_name must be a string, got {name!r}")
    cls = learner_class(name)
    base = RunConfig(learner_name=name, learner=cls.Config())
    rest = {k: v for k, v in data.items() if k != "learner_name"}
    return apply_overrides(base, flatten(rest))


def read_json_file(path: str | Path, what: str = "config file") -> Any:
    """A JSON file's value; a missing, unreadable, binary or malformed file is a :class:`ConfigError`."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{what} {str(path)!r} not found") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {str(path)!r} is not text (binary or damaged)") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{what} {str(path)!r} is not valid JSON: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{what} {str(path)!r} cannot be read: {exc.strerror or exc}") from None


# ------------------------------------------------------------------ resolution
def benchmark_family(benchmark: Any) -> EnvFamily:
    """The environment family (``TextEnv.family``) of a benchmark's training env."""
    from opid_gym.family import family_of

    env_id = benchmark.train_env_id or benchmark.env_id
    try:
        return family_of(env_id)
    except ImportError as exc:
        raise ConfigError(f"the environment {env_id!r} of benchmark {benchmark.name!r} cannot be imported "
                          f"here: {exc}") from None


def resolve_config(
    learner: str,
    benchmark: str,
    *,
    model: str | None = None,
    preset: str | None = None,
    file_overrides: Mapping[str, Any] | None = None,
    set_items: Sequence[str] = (),
) -> RunConfig:
    """Build the full config of a run (see the module docstring for the layers)."""
    import opid_gym

    bench = opid_gym.BENCHMARKS.get(benchmark)
    if bench.train_env_id is None:
        raise ConfigError(f"benchmark {benchmark!r} has no training split")
    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}." + suggest(preset, list(PRESETS)))
    sets = parse_set_items(set_items)  # malformed items fail before anything is loaded
    cls = learner_class(learner)
    family = benchmark_family(bench)
    cfg = RunConfig(learner_name=learner, learner=cls.default_config(bench, family), env=EnvConfig(benchmark=benchmark))
    cfg = apply_overrides(cfg, dict(family.run_defaults))
    cfg = apply_overrides(cfg, getattr(cls, "run_defaults", {}))  # e.g. sft: one episode per task
    cfg = apply_overrides(cfg, {
        "env.max_steps": bench.max_steps, "env.history_length": bench.history_length,
        "rollout.max_prompt_tokens": bench.max_prompt_tokens,
    })
    if preset is not None:
        cfg = apply_overrides(cfg, PRESETS[preset])
    if model is not None:
        cfg = apply_overrides(cfg, {"model.name": model})
    if file_overrides:
        data = dict(file_overrides)
        for key in ("learner_name",):
            if key in data and data.pop(key) != learner:
                raise ConfigError("the config file names another learner than --learner")
        if "env" in data and isinstance(data["env"], Mapping) and data["env"].get("benchmark", benchmark) != benchmark:
            raise ConfigError("the config file names another benchmark than --env")
        cfg = apply_overrides(cfg, flatten(data))
    cfg = apply_overrides(cfg, sets, from_text=True)
    if cfg.env.benchmark != benchmark:
        raise ConfigError("choose the benchmark with --env, not env.benchmark")
    return cfg
