"""Small in-test environments (importable by worker processes as ``tests.support.envs``)."""

from __future__ import annotations

import os
import time

import numpy as np

from opid_gym import TaskState, TextEnv, Transition
from opid_gym.family import EnvFamily
from opid_gym.history import PromptTemplate

PROMPT = PromptTemplate(
    intro="A counting game.",
    task_line="Your task is to: {task}",
    history_header="{k} of your {n} past steps:",
    turn="[Observation {i}: {observation}] [Action {i}: {action}]",
    current="Step {step}: {observation}",
    first_current="Step {step}: {observation}",
    admissible="Admissible actions: [{actions}]",
    instruction="Think inside <think> </think>, then act inside <action> </action>.",
)


class CountingEnv(TextEnv):
    """Reach ``target`` by saying "up"; task i has target i + 2.

    The first observation carries a number drawn from the reset seed, so tests can see
    which episodes shared a seed. ``hang`` sleeps forever and ``crash`` kills the process
    (to test worker recovery).
    """

    family = EnvFamily("counting")
    action_format = "think_action_lower"
    prompt = PROMPT

    def __init__(self, *, tasks: int = 4, max_steps: int = 10, render_mode: str | None = None) -> None:
        super().__init__(max_steps=max_steps, render_mode=render_mode)
        self.tasks = tasks

    def _num_tasks(self) -> int:
        return self.tasks

    def task_ids(self) -> list[str]:
        return [f"count-{i}" for i in range(self.tasks)]

    def _load_task(self, index: int, rng: np.random.Generator) -> TaskState:
        self.target, self.value = index + 2, 0
        return TaskState(
            observation=f"value 0, lucky number {int(rng.integers(1_000_000))}",
            task=f"count up to {self.target}.", task_id=f"count-{index}",
            task_type="even" if index % 2 == 0 else "odd", admissible_actions=["up", "down"],
        )

    def _act(self, action: str) -> Transition:
        if action == "hang":
            time.sleep(3600)
        if action == "crash":
            os._exit(3)
        if action == "up":
            self.value += 1
        elif action == "down":
            self.value -= 1
        else:
            return Transition("Nothing happens.", 0.0, False, False)
        won = self.value == self.target
        return Transition(f"value {self.value}", 10.0 if won else 0.0, won, won)

    def expert_action(self) -> str | None:
        return "up"
