"""A tiny, fast text environment for protocol and results tests (not shipped).

``GuessEnv``: each task hides one of four doors, chosen by the reset seed; the agent
wins by opening it. Tasks alternate between two task types. The env names one data
file (``<data_root>/doors.txt`` when it exists), so protocol tests can change data
without ALFWorld.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

import opid_gym
from opid_gym.benchmark import Benchmark
from opid_gym.env import TaskState, TextEnv, Transition
from opid_gym.family import EnvFamily
from opid_gym.history import PromptTemplate
from opid_gym.registry import full_env_id, register_env

DOORS = ["open red door", "open blue door", "open green door", "open black door"]

TOY_PROMPT = PromptTemplate(
    intro="You are in a hall with four doors.", task_line="Your task is to: {task}",
    history_header="Your last {k} of {n} actions:", turn="[{i}] {observation} -> {action}",
    current="Step {step}: {observation}", first_current="Step {step}: {observation}",
    admissible="Admissible actions: {actions}", instruction="Think in <think></think>, act in <action></action>.",
)


class GuessEnv(TextEnv):
    family = EnvFamily("toy", metric_keys=("score",))
    action_format = "think_action"
    prompt = TOY_PROMPT
    score_packages = ("numpy",)

    def __init__(self, *, num_tasks: int = 8, max_steps: int = 3, data_root: str | None = None,
                 render_mode: str | None = None) -> None:
        super().__init__(max_steps=max_steps, render_mode=render_mode)
        self.n = num_tasks
        self.data_file = Path(data_root) / "doors.txt" if data_root else None
        self._target = ""
        self._opened = 0

    def _num_tasks(self) -> int:
        return self.n

    def task_ids(self) -> list[str]:
        return [f"door-{i}" for i in range(self.n)]

    def data_files(self) -> dict[str, Path]:
        return {"doors.txt": self.data_file} if self.data_file and self.data_file.exists() else {}

    def _load_task(self, index: int, rng: np.random.Generator) -> TaskState:
        self._target = DOORS[int(rng.integers(len(DOORS)))]
        self._opened = 0
        return TaskState("You see four doors.", "find the treasure", f"door-{index}",
                         "even" if index % 2 == 0 else "odd", list(DOORS))

    def _act(self, action: str) -> Transition:
        self._opened += 1
        won = action == self._target
        return Transition("Treasure!" if won else "Nothing there.", 10.0 if won else 0.0, won, won, list(DOORS),
                          info={"score": 1.0 / self._opened if won else 0.0})


TOY_ENV = "toy-guess"
TOY_BENCH = "toy-guess"


def register_toy() -> Benchmark:
    """Register the env id and a benchmark on it (idempotent)."""
    if full_env_id(TOY_ENV) not in opid_gym.env_ids():
        register_env(TOY_ENV, "tests.toyenv:GuessEnv", description="test-only guessing game")
    bench = Benchmark(TOY_BENCH, full_env_id(TOY_ENV), None, max_steps=3, history_length=2,
                      description="test-only benchmark")
    if TOY_BENCH not in opid_gym.BENCHMARKS:
        opid_gym.BENCHMARKS.register(TOY_BENCH, bench, bench.description)
    return opid_gym.BENCHMARKS.get(TOY_BENCH)


def toy_kwargs(data_file: Path | None = None, **extra: Any) -> dict[str, Any]:
    """Env kwargs whose data root is the folder of ``data_file`` (a ``doors.txt``)."""
    return {**({"data_root": str(data_file.parent)} if data_file else {}), **extra}
