"""opid-gym: a gym and benchmark harness for training LLM agents with RL.

Public surface::

    import opid_gym
    env = opid_gym.make("alfworld-unseen")          # a gymnasium.Env (TextEnv inside)
    opid_gym.env_ids(); opid_gym.BENCHMARKS.names()

The core (this package) imports no environment family, model backend or learner
directly: they are reached through the registries filled from :mod:`opid_gym.builtin`.
"""

from __future__ import annotations

from opid_gym import builtin
from opid_gym.benchmark import Benchmark
from opid_gym.env import INFO_KEYS, TaskState, TextEnv, TextSpace, Transition
from opid_gym.family import EnvFamily
from opid_gym.registry import Registry, env_ids, load_plugins, make, register_env
from opid_gym.types import Message, Step, Trajectory

__version__ = "0.1.0"

BENCHMARKS: Registry[Benchmark] = Registry("benchmark", loader=load_plugins)
AGENTS: Registry = Registry("agent", loader=load_plugins)
LEARNERS: Registry = Registry("learner", loader=load_plugins)


def _register_builtins() -> None:
    for env_id, entry_point, kwargs, description in builtin.ENVS:
        register_env(env_id, entry_point, kwargs=kwargs, description=description)
    for bench in builtin.BENCHMARKS:
        BENCHMARKS.register(bench.name, bench, bench.description)
    for name, (path, description) in builtin.AGENTS.items():
        AGENTS.register(name, path, description)
    for name, path in builtin.LEARNERS.items():
        LEARNERS.register(name, path)  # described by the class itself (description, paper)


_register_builtins()

__all__ = [
    "AGENTS", "BENCHMARKS", "Benchmark", "EnvFamily", "INFO_KEYS", "LEARNERS", "Message",
    "Registry", "Step", "TaskState", "TextEnv", "TextSpace", "Trajectory", "Transition",
    "env_ids", "make", "register_env",
]
