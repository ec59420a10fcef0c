"""Registries: environments (through Gymnasium's own), agents, learners, benchmarks.

Environments are Gymnasium environments registered in Gymnasium's registry under the
``opid/`` namespace, with lazy ``"module:Class"`` entry points, so::

    import opid_gym, gymnasium
    env = gymnasium.make("opid/alfworld-unseen")
    env = opid_gym.make("alfworld-unseen")          # same thing; the namespace is optional

Third-party packages add environments through the ``opid_gym.envs`` entry-point
group: each entry point names a zero-argument function that calls
:func:`register_env`. They are loaded the first time an id is looked up.

Everything else (agents, learners, benchmarks) lives in a :class:`Registry`: names map
to objects or lazy ``"module:attr"`` strings; duplicates are refused; unknown names fail
with a "did you mean".
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Callable, Generic, Iterator, TypeVar

import gymnasium as gym

NAMESPACE = "opid"
PLUGIN_GROUP = "opid_gym.envs"

T = TypeVar("T")


class UnknownNameError(KeyError):
    """An unknown registry name; the message carries the suggestions."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def suggest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    if close:
        return " Did you mean: " + ", ".join(f"`{c}`" for c in close) + "?"
    return f" Known: {', '.join(sorted(known)) or '(none)'}."


def load_object(path: str) -> Any:
    """Import ``"package.module:attr"``."""
    module, _, attr = path.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split(".") if attr else []:
        obj = getattr(obj, part)
    return obj


@dataclass
class Registry(Generic[T]):
    """Name → object registry with lazy ``"module:attr"`` values and "did you mean"."""

    kind: str
    loader: Callable[[], None] | None = None
    """Called before every lookup (loads third-party plugins on first use)."""
    _entries: dict[str, Any] = field(default_factory=dict)
    _descriptions: dict[str, str] = field(default_factory=dict)

    def _load(self) -> None:
        if self.loader is not None:
            self.loader()

    def register(self, name: str, value: T | str, description: str = "", *, replace: bool = False) -> None:
        if name in self._entries and not replace:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = value
        self._descriptions[name] = description

    def get(self, name: str) -> T:
        self._load()
        if name not in self._entries:
            raise UnknownNameError(f"unknown {self.kind} {name!r}." + suggest(name, list(self._entries)))
        value = self._entries[name]
        if isinstance(value, str):
            value = load_object(value)
            self._entries[name] = value
        return value

    def names(self) -> list[str]:
        self._load()
        return list(self._entries)

    def description(self, name: str) -> str:
        return self._descriptions.get(name, "")

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        self._load()
        return iter(list(self._entries))


# ---------------------------------------------------------------- environments
_ENV_DESCRIPTIONS: dict[str, str] = {}
_plugins_loaded = False


def full_env_id(env_id: str) -> str:
    """``alfworld-unseen`` → ``opid/alfworld-unseen`` (ids with a namespace pass through)."""
    return env_id if "/" in env_id else f"{NAMESPACE}/{env_id}"


def register_env(
    env_id: str, entry_point: str, *, kwargs: dict[str, Any] | None = None, description: str = ""
) -> None:
    """Register an environment in Gymnasium's registry under ``opid/<name>``.

    Args:
        env_id: ``"name"`` or ``"namespace/name"``; plain names go to the ``opid/`` namespace.
        entry_point: lazy ``"module:Class"`` of a :class:`~opid_gym.env.TextEnv` subclass.
        kwargs: constructor arguments fixed by this id (``make`` kwargs override them).
        description: one line for ``opid-bench list envs``.
    """
    fid = full_env_id(env_id)
    if fid in gym.registry:
        raise ValueError(f"environment {fid!r} is already registered")
    # The step limit is the env's own (``max_steps``) so that truncation is reported by
    # the env itself; Gymnasium's TimeLimit is therefore not used.
    gym.register(id=fid, entry_point=entry_point, kwargs=dict(kwargs or {}), disable_env_checker=True)
    _ENV_DESCRIPTIONS[fid] = description


def load_plugins() -> None:
    """Call every ``opid_gym.envs`` entry point once (third-party environments)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in entry_points(group=PLUGIN_GROUP):
        ep.load()()


def env_ids() -> list[str]:
    """Every registered opid-gym environment id (built-in and plugins)."""
    load_plugins()
    return [eid for eid in gym.registry if eid in _ENV_DESCRIPTIONS]


def env_description(env_id: str) -> str:
    return _ENV_DESCRIPTIONS.get(full_env_id(env_id), "")


def env_spec(env_id: str) -> gym.envs.registration.EnvSpec:
    load_plugins()
    fid = full_env_id(env_id)
    if fid not in gym.registry:
        raise UnknownNameError(f"unknown environment {env_id!r}." + suggest(fid, env_ids()))
    return gym.spec(fid)


def make(env_id: str, **kwargs: Any) -> gym.Env:
    """Make a registered environment (``gymnasium.make`` with a friendlier lookup)."""
    spec = env_spec(env_id)
    return gym.make(spec.id, **kwargs)


def env_class(env_id: str) -> type:
    """The environment class behind an id (for its prompt template and action format)."""
    entry = env_spec(env_id).entry_point
    return load_object(entry) if isinstance(entry, str) else entry


def accepts(env_id: str, parameter: str) -> bool:
    """Whether the environment's constructor takes ``parameter`` (e.g. ``data_root``)."""
    import inspect

    params = inspect.signature(env_class(env_id).__init__).parameters
    return parameter in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
