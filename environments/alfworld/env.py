"""The ALFWorld environment: real TextWorld games, one per task.

Each task is one ``game.tw-pddl`` file; ``reset`` loads it into a TextWorld engine
(``textworld.start`` with ALFWorld's own demangler wrapper, from the ``alfworld``
package) and asks the engine only for what we use: ``won``, ``admissible_commands``
and the game's expert ``walkthrough``.

Observations are the engine's feedback exactly as the reference passes it to the model:
the first one keeps TextWorld's ``-= Welcome to TextWorld, ALFRED! =-`` banner and ends
with the ``Your task is to: …`` line (the prompt's first step shows the task there,
see :data:`~environments.alfworld.prompt.ALFWORLD_PROMPT`); ``help`` is left out of the
admissible actions, as the reference does.

Rewards follow the reference setup: ``success_reward`` (10) at the step that wins,
0 otherwise. ``terminated`` is set when the game is won; the step limit is
``truncated`` (base class). The TextWorld engine is not thread-safe: run several games
in separate processes (``opid_gym.workers``), never in threads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from environments.alfworld.family import ALFWORLD
from environments.alfworld.games import Game, list_games
from environments.alfworld.prompt import ALFWORLD_PROMPT
from environments.alfworld.reset_cache import cached_engine_setup, resolve_mode
from opid_gym.env import TaskState, TextEnv, Transition

_TASK_MARK = "Your task is to: "
_EXCLUDED_COMMANDS = {"help"}


def _import_engine() -> tuple[Any, Any, Any]:
    try:
        import textworld
        from alfworld.agents.environment.alfred_tw_env import AlfredDemangler, AlfredInfos
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError(
            "ALFWorld needs the `alfworld` and `textworld` packages: pip install 'opid-gym[alfworld]'"
        ) from exc
    return textworld, AlfredDemangler, AlfredInfos


class ALFWorldEnv(TextEnv):
    """ALFWorld text games.

    Args:
        split: ``train``, ``valid_seen``, ``valid_unseen`` or ``valid_train``, or several
            joined with ``+`` (``train+valid_train``: every game of the training scenes).
        data_root: the data root (see :mod:`opid_gym.data`).
        max_steps: step limit (30 in the OPID protocol, 50 in the SDAR/GiGPO one).
        task_types: keep only these short task types (``pick``, ``look``, ...).
        max_plan_length: keep only games whose expert walkthrough has at most this many
            actions (a subset where the expert's plan fits a short step limit).
        success_reward: the reward of the winning step.
        translation_cache: reuse each game's PDDL translation (``True``: on disk and in
            memory, unless ``$OPID_GYM_ALFWORLD_CACHE`` says otherwise; ``"memory"``;
            ``False``: off). See :mod:`environments.alfworld.reset_cache`.
    """

    family = ALFWORLD
    action_format = "think_action_lower"
    prompt = ALFWORLD_PROMPT
    score_packages = ("alfworld", "textworld", "fast-downward-textworld")

    def __init__(
        self,
        split: str = "valid_unseen",
        *,
        data_root: str | Path | None = None,
        max_steps: int = 30,
        task_types: list[str] | None = None,
        max_plan_length: int | None = None,
        success_reward: float = 10.0,
        render_mode: str | None = None,
        translation_cache: bool | str = True,
    ) -> None:
        super().__init__(max_steps=max_steps, render_mode=render_mode)
        self.split = split
        self._cache_mode = resolve_mode(translation_cache)
        games = list_games(split, data_root)
        if task_types:
            games = [g for g in games if g.task_type in set(task_types)]
        if max_plan_length is not None:
            games = [g for g in games if g.plan_length <= int(max_plan_length)]
        self.games: list[Game] = games
        self.success_reward = float(success_reward)
        self._engine = None
        self._walkthrough: list[str] = []
        self._actions: list[str] = []

    # --------------------------------------------------------------- family API
    def _num_tasks(self) -> int:
        return len(self.games)

    def task_ids(self) -> list[str]:
        return [g.task_id for g in self.games]

    def task_types(self) -> list[str]:
        return [g.task_type for g in self.games]

    def data_files(self) -> dict[str, Path]:
        """Each game's ``game.tw-pddl`` (the game itself, with its walkthrough) and its
        ``traj_data.json`` where present (the task type), named by task id."""
        files: dict[str, Path] = {}
        for g in self.games:
            files[f"{g.task_id}/game.tw-pddl"] = g.path
            traj = g.path.parent / "traj_data.json"
            if traj.exists():
                files[f"{g.task_id}/traj_data.json"] = traj
        return files

    def _load_task(self, index: int, rng: np.random.Generator) -> TaskState:
        textworld, demangler, infos_wrapper = _import_engine()
        game = self.games[index]
        request = textworld.EnvInfos(won=True, admissible_commands=True, extras=["walkthrough"])
        with cached_engine_setup(self._cache_mode):
            self._engine = textworld.start(str(game.path), request, wrappers=[demangler(shuffle=False), infos_wrapper])
            state = self._engine.reset()
        observation = state["feedback"]
        start = observation.find(_TASK_MARK)  # the reference's task extraction
        task = observation[start + len(_TASK_MARK):].strip() if start >= 0 else ""
        self._walkthrough = list(state.get("extra.walkthrough") or [])
        self._actions = []
        return TaskState(
            observation=observation,
            task=task,
            task_id=game.task_id,
            task_type=game.task_type,
            admissible_actions=self._admissible(state),
            info={"expert_plan": list(self._walkthrough), "gamefile": str(game.path)},
        )

    def _act(self, action: str) -> Transition:
        assert self._engine is not None
        state, _, done = self._engine.step(action)
        self._actions.append(action)
        won = bool(state["won"])
        return Transition(
            observation=state["feedback"],
            reward=self.success_reward if won else 0.0,
            done=bool(done) or won,
            won=won,
            admissible_actions=self._admissible(state),
        )

    def expert_action(self) -> str | None:
        """The walkthrough's next action while the agent has followed it so far.

        Once the agent leaves the walkthrough, the plan no longer applies and this
        returns None (the step where that happens is what hindsight analysis uses).
        """
        n = len(self._actions)
        if self._actions == self._walkthrough[:n] and n < len(self._walkthrough):
            return self._walkthrough[n]
        return None

    def expert_plan(self) -> list[str] | None:
        """The rest of the walkthrough while the agent has followed it so far (else None)."""
        n = len(self._actions)
        if self._actions == self._walkthrough[:n] and n < len(self._walkthrough):
            return list(self._walkthrough[n:])
        return None

    def close_task(self) -> None:
        if self._engine is not None:
            try:
                self._engine.close()
            finally:
                self._engine = None

    @staticmethod
    def _admissible(state: Any) -> list[str]:
        return [c for c in (state.get("admissible_commands") or []) if c not in _EXCLUDED_COMMANDS]
