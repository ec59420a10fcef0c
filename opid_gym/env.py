"""The text-environment contract: a Gymnasium ``Env`` whose observations and actions are str.

Subclasses describe one environment family (ALFWorld, WebShop, search QA). The base
class owns what every family shares, so no family re-implements it:

* the step counter and the step limit: hitting it sets ``truncated`` (never
  ``terminated``), as Gymnasium defines the two;
* task selection: ``reset(options={"task_index": i})`` picks task i of the split;
  without it, the task is drawn from the env's seeded generator;
* the info keys every family exposes (see :data:`INFO_KEYS`).

A subclass implements :meth:`_num_tasks`, :meth:`_load_task` and :meth:`_act`, and sets
the class attributes ``family`` (its :class:`~opid_gym.family.EnvFamily`: defaults, metric
keys, data status), ``prompt`` (its :class:`~opid_gym.history.PromptTemplate`)
and ``action_format`` (the parser, see :mod:`opid_gym.parsing`).
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from opid_gym.family import TEXT_FAMILY, EnvFamily

INFO_KEYS = ("task", "task_id", "task_type", "task_index", "admissible_actions", "won", "step")
"""Keys present in the info dict of every ``reset`` and ``step`` of every environment."""


class TextSpace(gym.spaces.Text):
    """A Gymnasium ``Text`` space that accepts any Python string up to ``max_length``.

    Gymnasium's ``Text`` only admits characters of a fixed charset; real ALFWorld and
    WebShop text has punctuation, brackets and non-ASCII product names. ``sample`` still
    draws from printable ASCII.
    """

    def __init__(self, max_length: int = 1_000_000, *, seed: int | None = None) -> None:
        charset = string.ascii_letters + string.digits + " .,:;!?'-[]()"
        super().__init__(max_length, min_length=0, charset=charset, seed=seed)

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and len(x) <= self.max_length

    def __repr__(self) -> str:
        return f"TextSpace(max_length={self.max_length})"


@dataclass
class TaskState:
    """What a family's :meth:`TextEnv._load_task` returns at reset."""

    observation: str
    task: str
    task_id: str
    task_type: str
    admissible_actions: list[str] | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Transition:
    """What a family's :meth:`TextEnv._act` returns for one action.

    ``done`` means the task is over by the environment's own rules (solved, bought,
    answered); the base class turns the step limit into ``truncated`` separately.
    """

    observation: str
    reward: float
    done: bool
    won: bool
    admissible_actions: list[str] | None = None
    info: dict[str, Any] = field(default_factory=dict)


class TextEnv(gym.Env[str, str]):
    """Base class of every opid-gym environment.

    Args:
        max_steps: the step limit; reaching it ends the episode with ``truncated=True``.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"]}
    family: ClassVar[EnvFamily] = TEXT_FAMILY
    """The environment family: its run and loss defaults, metric keys, data status."""
    action_format: ClassVar[str] = "think_action"
    """Name of the response parser in :mod:`opid_gym.parsing` for this family."""
    prompt: ClassVar[Any] = None
    """The family's :class:`~opid_gym.history.PromptTemplate`."""
    score_packages: ClassVar[tuple[str, ...]] = ()
    """Distributions whose versions can change this family's scores (e.g. the game
    engine); their installed versions enter the benchmark protocol hash."""

    def __init__(self, *, max_steps: int = 30, render_mode: str | None = None) -> None:
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        self.max_steps = int(max_steps)
        self.render_mode = render_mode
        self.observation_space = TextSpace()
        self.action_space = TextSpace()
        self._state: TaskState | None = None
        self._steps = 0
        self._won = False
        self._done = False
        self._last_observation = ""
        self._current_admissible: list[str] | None = None

    # ----------------------------------------------------------------- family API
    def _num_tasks(self) -> int:
        raise NotImplementedError

    def _load_task(self, index: int, rng: np.random.Generator) -> TaskState:
        raise NotImplementedError

    def _act(self, action: str) -> Transition:
        raise NotImplementedError

    def task_ids(self) -> list[str]:
        """Stable ids of the split's tasks, index-aligned with ``task_index``."""
        raise NotImplementedError

    def task_types(self) -> list[str] | None:
        """The task type of every task, index-aligned with ``task_index`` (None: the
        family does not group its tasks by type)."""
        return None

    def expert_action(self) -> str | None:
        """The next action of the environment's expert, where the family has one."""
        return None

    def expert_plan(self) -> list[str] | None:
        """The expert's remaining plan, next action first (None: the family has none)."""
        return None

    def data_files(self) -> dict[str, Path]:
        """The data files this split's scores depend on: stable name -> path.

        Names must not depend on where the data root lives (use paths relative to it),
        so the same data gives the same benchmark protocol hash on every machine.
        ``benchmarks/protocols.py`` hashes the files' contents. Default: none.
        """
        return {}

    def close_task(self) -> None:
        """Release what the current task holds (engine processes, files)."""

    # ------------------------------------------------------------ gymnasium API
    @property
    def num_tasks(self) -> int:
        return self._num_tasks()

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        options = options or {}
        n = self._num_tasks()
        if n == 0:
            raise RuntimeError(f"{type(self).__name__} has no tasks in this split")
        if "task_index" in options:
            index = int(options["task_index"])
            if not 0 <= index < n:
                raise IndexError(f"task_index {index} out of range for {n} tasks")
        else:
            index = int(self.np_random.integers(n))
        self.close_task()
        self._state = self._load_task(index, self.np_random)
        self._task_index = index
        self._steps = 0
        self._won = False
        self._done = False
        self._last_observation = self._state.observation
        self._current_admissible = self._state.admissible_actions
        return self._state.observation, self._info(self._state.info)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        if self._done:
            raise RuntimeError("episode is over; call reset()")
        if not isinstance(action, str):
            action = str(action)
        tr = self._act(action)
        self._steps += 1
        self._won = bool(tr.won)
        self._last_observation = tr.observation
        if tr.admissible_actions is not None:
            self._current_admissible = tr.admissible_actions
        terminated = bool(tr.done)
        truncated = (not terminated) and self._steps >= self.max_steps
        self._done = terminated or truncated
        return tr.observation, float(tr.reward), terminated, truncated, self._info(tr.info)

    def render(self) -> str | None:
        if self.render_mode == "ansi":
            return self._last_observation
        return None

    def close(self) -> None:
        self.close_task()
        super().close()

    # ------------------------------------------------------------------ helpers
    def _info(self, extra: dict[str, Any]) -> dict[str, Any]:
        assert self._state is not None
        info = dict(extra)
        info.update(
            task=self._state.task,
            task_id=self._state.task_id,
            task_type=self._state.task_type,
            task_index=self._task_index,
            admissible_actions=list(self._current_admissible) if self._current_admissible is not None else None,
            won=self._won,
            step=self._steps,
        )
        return info
