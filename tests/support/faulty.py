"""A toy benchmark whose environment can kill its own worker (fault tests, not shipped).

``FaultyEnv`` is the door-guessing game of ``tests.toyenv`` with an expert (it knows
the door). With ``crash_dir`` set, resetting a task listed in ``crash_tasks`` kills the
process (SIGKILL, as ``kill -9`` of a worker would): once per task when ``crash_once``
(a marker file in ``crash_dir`` remembers it), else every time. ``slow`` sleeps that
many seconds per step (so a test can interrupt an evaluation half-way).

``python -m tests.support.faulty ARGS`` is ``opid-bench ARGS`` with the benchmark
``faulty-doors`` registered.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import opid_gym
from opid_gym.benchmark import Benchmark
from opid_gym.env import TaskState, Transition
from opid_gym.registry import full_env_id, register_env
from tests.toyenv import GuessEnv

ENV_ID = "faulty-doors"
BENCH = "faulty-doors"


class FaultyEnv(GuessEnv):
    def __init__(self, *, num_tasks: int = 6, max_steps: int = 3, crash_dir: str | None = None,
                 crash_tasks: tuple[int, ...] | list[int] = (), crash_once: bool = True, slow: float = 0.0,
                 data_root: str | None = None, render_mode: str | None = None) -> None:
        super().__init__(num_tasks=num_tasks, max_steps=max_steps, data_root=data_root, render_mode=render_mode)
        self.crash_dir = Path(crash_dir) if crash_dir else None
        self.crash_tasks = {int(t) for t in crash_tasks}
        self.crash_once = crash_once
        self.slow = float(slow)

    def _load_task(self, index: int, rng: np.random.Generator) -> TaskState:
        if self.crash_dir is not None and index in self.crash_tasks:
            marker = self.crash_dir / f"crashed-{index}"
            first = not marker.exists()
            marker.write_text(str(int(marker.read_text() or 0) + 1) if marker.exists() else "1")
            if first or not self.crash_once:
                os.kill(os.getpid(), signal.SIGKILL)
        return super()._load_task(index, rng)

    def _act(self, action: str) -> Transition:
        if self.slow:
            time.sleep(self.slow)
        return super()._act(action)

    def task_types(self) -> list[str]:
        return ["even" if i % 2 == 0 else "odd" for i in range(self.n)]

    def expert_action(self) -> str | None:
        return self._target


def register(**env_kwargs: Any) -> Benchmark:
    """Register the env and the benchmark (idempotent); ``env_kwargs`` become its eval kwargs."""
    if full_env_id(ENV_ID) not in opid_gym.env_ids():
        register_env(ENV_ID, "tests.support.faulty:FaultyEnv", description="test-only env that kills its worker")
    bench = Benchmark(BENCH, full_env_id(ENV_ID), None, max_steps=3, history_length=2,
                      env_kwargs=dict(env_kwargs), description="test-only benchmark")
    opid_gym.BENCHMARKS.register(BENCH, bench, bench.description, replace=True)  # with these kwargs
    return opid_gym.BENCHMARKS.get(BENCH)


if __name__ == "__main__":
    import json

    from opid_gym.cli import main

    register(**json.loads(os.environ.get("FAULTY_ENV_KWARGS", "{}")))
    sys.exit(main(sys.argv[1:]))
