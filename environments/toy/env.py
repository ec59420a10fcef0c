"""``keypad``: four cupboards and a keypad that reads only the first letter typed.

A toy environment for learning benchmarks (``benchmarks/learning.py``): small enough
that the in-process random-init ``tiny`` model learns it on a CPU in minutes, and
built so that learning it means reading the prompt.

* Four cupboards hold a ``book``, a ``lamp``, a ``plate`` and a ``towel``. Each task
  asks for one of them, with a reason; tasks cycle through the four, so each is the
  target of a quarter of each split.
* The keypad reads the **first letter** (a–z, any case) of the executed action and
  opens the cupboard of that letter's range: a–f book, g–m lamp, n–s plate, t–z towel.
  An action without a letter does nothing. Opening the asked-for cupboard wins
  (reward 10, the episode ends); another one answers "The <item> cupboard opens, but
  you need the <target>." and the agent may try again until the step limit.
* Admissible actions: the four item words (each starts in its own cupboard's range);
  the environment's expert types the target's word.

Why it cannot be won by one fixed string: a string's first letter opens one cupboard,
so it wins exactly the quarter of the tasks that ask for that one (a fixed sequence of
k different tries, k of the step limit's quarters). A random policy wins about that
too; only a policy that reads which item the task asks for does better. The items are
one token each in the ``tiny`` model's vocabulary.
Responses need not follow the ``<think>…<action>`` format to act (an unreadable
response is executed as its raw text, the parser's fallback), so a random-init model
acts from the first step; the invalid-format penalty still applies.
"""

from __future__ import annotations

import numpy as np

from opid_gym.env import TaskState, TextEnv, Transition
from opid_gym.family import EnvFamily
from opid_gym.history import PromptTemplate

ITEMS = ("book", "lamp", "plate", "towel")
RANGES = (("a", "f"), ("g", "m"), ("n", "s"), ("t", "z"))
"""First-letter ranges of the cupboards, in :data:`ITEMS` order (inclusive)."""
REASONS = ("for the guest", "for the kitchen", "for the desk", "for the bath", "for the shelf", "for the bed")
CUE_REPEATS = 16
"""How often the first observation repeats the asked-for item: a loud cue, so that a
2-layer random-init model (whose attention starts near uniform) can pick it up."""
SPLITS = {"train": (0, 96), "eval": (1000, 120)}
"""split -> (first task number, task count): disjoint numbers, eval has 120 tasks."""

KEYPAD_PROMPT = PromptTemplate(
    intro="Four cupboards; the keypad reads only the first letter you type.",
    task_line="Your task is to: get the {task}",
    history_header="Your last {k} of {n} tries:",
    turn="[{observation}] -> {action}",
    current="Now: {observation}",
    first_current="Now: {observation}",
    admissible="Admissible actions: [{actions}]",
    instruction="Think in <think> </think>, then type in <action> </action>.",
)


def opened(action: str) -> str | None:
    """The cupboard the keypad opens for ``action``: the range of its first letter (None: no letter)."""
    for ch in action.lower():
        if "a" <= ch <= "z":
            return next(d for d, (lo, hi) in zip(ITEMS, RANGES) if lo <= ch <= hi)
    return None


def task_item(number: int) -> str:
    """The item task ``number`` asks for (tasks cycle through the items)."""
    return ITEMS[number % len(ITEMS)]


class KeypadEnv(TextEnv):
    """See the module docstring. ``split``: ``train`` (96 tasks) or ``eval`` (120 tasks)."""

    family = EnvFamily("toy", metric_keys=("score",))
    action_format = "think_action"
    prompt = KEYPAD_PROMPT

    def __init__(self, split: str = "train", *, max_steps: int = 4, render_mode: str | None = None) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown keypad split {split!r}; known: {sorted(SPLITS)}")
        super().__init__(max_steps=max_steps, render_mode=render_mode)
        self.split = split
        self.first, self.count = SPLITS[split]
        self._target = ""
        self._tries = 0

    def _num_tasks(self) -> int:
        return self.count

    def task_ids(self) -> list[str]:
        return [f"keypad-{self.first + i}" for i in range(self.count)]

    def admissible(self) -> list[str]:
        return list(ITEMS)

    def _load_task(self, index: int, rng: np.random.Generator) -> TaskState:
        number = self.first + index
        self._target = task_item(number)
        self._tries = 0
        reason = REASONS[(number // len(ITEMS)) % len(REASONS)]
        task = f"{self._target} {reason}."
        obs = f"You need the {self._target}: " + " ".join([self._target] * CUE_REPEATS) + "."
        return TaskState(obs, task, f"keypad-{number}", self._target, self.admissible(),
                         info={"expert_plan": [self._target]})

    def _act(self, action: str) -> Transition:
        self._tries += 1
        item = opened(action)
        won = item == self._target
        if item is None:
            obs = "Nothing happens."
        elif won:
            obs = f"The {item} cupboard opens: you have the {item}."
        else:
            obs = f"The {item} cupboard opens, but you need the {self._target}."
        return Transition(obs, 10.0 if won else 0.0, won, won, self.admissible(),
                          info={"score": 1.0 / self._tries if won else 0.0})

    def expert_action(self) -> str | None:
        return self._target or None
