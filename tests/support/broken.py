"""Environments that break one part of the text contract each (``tests/test_checker.py``)."""

from __future__ import annotations

import numpy as np

from opid_gym.env import TaskState, Transition
from tests.toyenv import GuessEnv


class RaisesOnEmpty(GuessEnv):
    def _act(self, action: str) -> Transition:
        if not action.strip():
            raise ValueError("empty action")
        return super()._act(action)


class EndsAtTheLimit(GuessEnv):
    """Reports the step limit as the task ending (the fault truncation exists to avoid)."""

    def _act(self, action: str) -> Transition:
        tr = super()._act(action)
        tr.done = tr.done or self._steps + 1 >= self.max_steps
        return tr


class UnseededReset(GuessEnv):
    """The first observation ignores the seed."""

    _resets = 0

    def _load_task(self, index: int, rng: np.random.Generator) -> TaskState:
        state = super()._load_task(index, rng)
        UnseededReset._resets += 1
        state.observation = f"You see four doors ({UnseededReset._resets})."
        return state
