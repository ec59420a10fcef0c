"""``opid-bench check-env``: Gymnasium's env checker plus the text-environment contract.

The contract every opid-gym environment must keep:

1. ``reset`` returns a ``str`` observation inside the observation space and an info
   dict with every key of :data:`opid_gym.env.INFO_KEYS`; ``options={"task_index": i}``
   selects task i and the same (seed, task) resets to the same observation.
2. ``step`` accepts any string — admissible, garbage, empty, unicode, very long —
   without raising, and returns the five-tuple with the info keys.
3. The step limit ends an episode with ``truncated=True`` and ``terminated=False``.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import gymnasium as gym

from opid_gym.env import INFO_KEYS


@dataclass
class CheckResult:
    name: str
    ok: bool
    detail: str = ""


PROJECT_PACKAGES = ("opid_gym", "environments", "agents", "learners", "benchmarks")
"""The project's top-level packages: a warning raised from code under one of them is ours."""


def project_dirs() -> list[Path]:
    """The folders of the project's packages as installed here (importable ones only)."""
    import importlib.util

    dirs = []
    for name in PROJECT_PACKAGES:
        spec = importlib.util.find_spec(name)
        for location in (spec.submodule_search_locations or []) if spec else []:
            dirs.append(Path(location).resolve())
    return dirs


def is_own_file(filename: str, own_dirs: Sequence[Path]) -> bool:
    """Whether ``filename`` (a warning's source file) lies under one of ``own_dirs``.

    Decided by folders, never by names in the path: a checkout in ``~/opid-gym`` holds
    its virtual environment (``~/opid-gym/.venv/.../textworld``), whose warnings are not ours.
    """
    try:
        path = Path(filename).resolve()
    except (OSError, ValueError):
        return False
    return any(path == d or d in path.parents for d in own_dirs)


@dataclass
class CheckTarget:
    """What every check looks at: the id, its constructor kwargs and the env built once."""

    env_id: str
    kwargs: dict[str, Any]
    env: gym.Env

    @property
    def base(self) -> Any:
        return self.env.unwrapped


def check_gymnasium(target: CheckTarget) -> str:
    """Gymnasium's own checker; a warning raised from the project's (or the env's own)
    code fails, warnings from upstream packages are counted."""
    from gymnasium.utils.env_checker import check_env as gym_check_env

    base = target.base
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gym_check_env(base, skip_render_check=True, skip_close_check=True)
    own = project_dirs() + [Path(inspect.getfile(type(base))).resolve().parent]  # and the env's own package
    ours = [str(w.message) for w in caught if is_own_file(str(w.filename), own)]
    if ours:
        raise AssertionError("; ".join(ours))
    return f"{len(caught)} warning(s) from upstream code" if caught else ""


def _require_info_keys(info: dict[str, Any]) -> None:
    missing = [k for k in INFO_KEYS if k not in info]
    assert not missing, f"info lacks {missing}"


def check_reset(target: CheckTarget) -> str:
    """Contract 1: a non-empty ``str`` observation in the space, every info key, and the
    same (seed, task) gives the same observation."""
    env = target.env
    obs, info = env.reset(seed=7, options={"task_index": 0})
    assert isinstance(obs, str) and obs, "observation must be a non-empty str"
    assert target.base.observation_space.contains(obs), "observation outside the observation space"
    _require_info_keys(info)
    obs2, _ = env.reset(seed=7, options={"task_index": 0})
    assert obs == obs2, "same seed and task gave different observations"
    return f"task {info['task_id']!r} ({info['task_type']})"


GARBAGE_ACTIONS = ("", "   ", "@@ not a command @@", "héllo wörld ✓", "x" * 5000, "click[", "search[]")
"""Actions no environment may raise on (after one admissible action, where it lists them)."""


def check_step(target: CheckTarget) -> str:
    """Contract 2: ``step`` takes any string and returns the typed five-tuple with every info key."""
    env = target.env
    _, info = env.reset(seed=7, options={"task_index": 0})
    admissible = info.get("admissible_actions") or []
    actions = [*admissible[:1], *GARBAGE_ACTIONS]
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        assert isinstance(obs, str) and isinstance(reward, float)
        assert isinstance(terminated, bool) and isinstance(truncated, bool)
        _require_info_keys(info)
        if terminated or truncated:
            env.reset(seed=7, options={"task_index": 0})
    return f"{len(actions)} actions including garbage"


def check_truncation(target: CheckTarget) -> str:
    """Contract 3: the step limit gives ``truncated=True, terminated=False`` (on a fresh
    env with ``max_steps=2``), and not a step before."""
    from opid_gym.registry import make

    short = make(target.env_id, **{**target.kwargs, "max_steps": 2})
    try:
        short.reset(seed=1, options={"task_index": 0})
        _, _, _, trunc1, _ = short.step("@@ not a command @@")
        assert not trunc1, "truncated before the step limit"
        _, _, term2, trunc2, _ = short.step("@@ not a command @@")
        assert trunc2 and not term2, "the step limit must give truncated=True, terminated=False"
    finally:
        short.close()
    return "limit 2 → truncated"


CHECKS: tuple[tuple[str, Callable[[CheckTarget], str]], ...] = (
    ("gymnasium env checker", check_gymnasium),
    ("reset contract", check_reset),
    ("step accepts any string", check_step),
    ("step limit is truncation", check_truncation),
)
"""Every check after ``make``, in the order they run (each gets the same env)."""


def _run(name: str, fn: Callable[[], str | None]) -> CheckResult:
    try:
        return CheckResult(name, True, fn() or "")
    except Exception as exc:  # the verdict reports, it does not crash
        return CheckResult(name, False, f"{type(exc).__name__}: {exc}")


def check_env(env_id: str, **kwargs: Any) -> list[CheckResult]:
    """Run every check on ``env_id`` (``kwargs`` go to the constructor, e.g. ``data_root``).

    ``make`` comes first; when it fails, nothing else runs.
    """
    from opid_gym.registry import make

    built: list[gym.Env] = []

    def build() -> str:
        built.append(make(env_id, **kwargs))
        return f"{built[0].unwrapped.num_tasks} tasks"

    results = [_run("make", build)]
    if not built:
        return results
    target = CheckTarget(env_id, dict(kwargs), built[0])
    try:
        results += [_run(name, functools.partial(fn, target)) for name, fn in CHECKS]
    finally:
        target.env.close()
    return results
