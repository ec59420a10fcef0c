"""A tiny in-test environment and benchmark for the training-loop tests (no data, instant).

Task i asks for a letter; an episode is won when the agent's action contains that
letter. A random-init model therefore wins some episodes and loses others, which gives
GRPO groups with mixed outcomes. ``delay`` slows each step down (kill-and-resume tests
need time to land a signal mid-run); it never changes a result.
"""

from __future__ import annotations

import time

import numpy as np

from opid_gym.env import TaskState, TextEnv, Transition
from opid_gym.family import EnvFamily
from opid_gym.history import PromptTemplate

LETTERS = ("e", "a", "o", "t", "i", "n")

TOY_PROMPT = PromptTemplate(
    intro="A letter game.",
    task_line="Your task is to: {task}",
    history_header="Your last {k} move(s):",
    turn="[{observation}] -> {action}",
    current="Now at move {step}: {observation}",
    first_current="Move {step}: {observation}",
    admissible="Letters: [{actions}]",
    instruction="Think in <think> </think>, then answer in <action> </action>.",
)


class ToyEnv(TextEnv):
    family = EnvFamily("toy")
    action_format = "think_action"
    prompt = TOY_PROMPT

    def __init__(self, split: str = "train", *, max_steps: int = 2,
                 delay: float = 0.0, render_mode: str | None = None) -> None:
        super().__init__(max_steps=max_steps, render_mode=render_mode)
        self.split = split
        self.delay = float(delay)
        self._target = ""

    def _num_tasks(self) -> int:
        return len(LETTERS) if self.split == "train" else 3

    def task_ids(self) -> list[str]:
        return [f"{self.split}-{i}" for i in range(self._num_tasks())]

    def _load_task(self, index: int, rng: np.random.Generator) -> TaskState:
        self._target = LETTERS[index]
        return TaskState(observation="You see letters.", task=f"write a word with the letter {self._target}",
                         task_id=f"{self.split}-{index}", task_type=f"letter-{self._target}",
                         admissible_actions=list(LETTERS))

    def _act(self, action: str) -> Transition:
        if self.delay:
            time.sleep(self.delay)
        won = self._target in action
        return Transition(observation="Correct." if won else "Try again.", reward=10.0 if won else 0.0,
                          done=won, won=won, admissible_actions=list(LETTERS))


def register(delay: float = 0.0) -> None:
    """Register ``letters-train`` / ``letters-eval`` and the ``letters`` benchmark (idempotent)."""
    import opid_gym
    from opid_gym.benchmark import Benchmark
    from opid_gym.registry import full_env_id, register_env

    import gymnasium

    for name, split in (("letters-train", "train"), ("letters-eval", "eval")):
        if full_env_id(name) not in gymnasium.registry:
            register_env(name, "tests.support.letters:ToyEnv", kwargs={"split": split}, description=f"letter game {split}")
    bench = Benchmark("letters", "opid/letters-eval", "opid/letters-train", max_steps=2, history_length=1,
                      invalid_penalty=0.1, max_prompt_tokens=256, max_new_tokens=8,
                      train_env_kwargs={"delay": delay} if delay else {},
                      description="toy letter game (tests)")
    opid_gym.BENCHMARKS.register("letters", bench, bench.description, replace=True)
