"""Guess the number: a complete, minimal opid-gym environment from a third-party package."""

from __future__ import annotations

import numpy as np

import opid_gym
from opid_gym import Benchmark, EnvFamily, TaskState, TextEnv, Transition, register_env
from opid_gym.history import PromptTemplate

PROMPT = PromptTemplate(
    intro="You are playing a number guessing game.",
    task_line="Your task is to: {task}",
    history_header="Your last {k} of {n} guesses and the answers:",
    turn="[Answer {i}: {observation}] [Guess {i}: {action}]",
    current="Now, at step {step}: {observation}",
    first_current="At step {step}: {observation}",
    admissible="Admissible actions: [{actions}]",
    instruction="Think inside <think> </think>, then give one action inside <action> </action>.",
)


class GuessEnv(TextEnv):
    """Find a secret number in 1..high. Task i has secret number i + 1."""

    family = EnvFamily("guess")
    action_format = "think_action_lower"
    prompt = PROMPT

    def __init__(self, *, high: int = 8, max_steps: int = 6, render_mode: str | None = None) -> None:
        super().__init__(max_steps=max_steps, render_mode=render_mode)
        self.high = high

    def _num_tasks(self) -> int:
        return self.high

    def task_ids(self) -> list[str]:
        return [f"secret-{i + 1}" for i in range(self.high)]

    def _actions(self) -> list[str]:
        return [f"guess {k}" for k in range(1, self.high + 1)]

    def _load_task(self, index: int, rng: np.random.Generator) -> TaskState:
        self.secret = index + 1
        self.low_bound, self.high_bound = 1, self.high
        return TaskState(
            observation=f"I picked a number between 1 and {self.high}.",
            task=f"guess the number between 1 and {self.high}.",
            task_id=f"secret-{self.secret}",
            task_type="guess",
            admissible_actions=self._actions(),
        )

    def _act(self, action: str) -> Transition:
        parts = action.split()
        if len(parts) != 2 or parts[0] != "guess" or not parts[1].isdigit():
            return Transition("Nothing happens.", 0.0, False, False)
        k = int(parts[1])
        if k == self.secret:
            return Transition("Correct!", 10.0, True, True)
        return Transition("Higher." if k < self.secret else "Lower.", 0.0, False, False)

    def expert_action(self) -> str | None:
        return f"guess {self.secret}"


def register() -> None:
    """Called once by opid-gym through the `opid_gym.envs` entry point."""
    register_env("guess/number-v0", "opid_guess:GuessEnv", kwargs={"high": 8},
                 description="Guess the number (third-party example)")
    # Optional: a benchmark, so `opid-bench eval --env guess` works too.
    opid_gym.BENCHMARKS.register(
        "guess", Benchmark("guess", "guess/number-v0", train_env_id="guess/number-v0", max_steps=6,
                           description="guess the number, all 8 secrets once"))
