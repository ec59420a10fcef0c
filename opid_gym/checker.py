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

import inspect
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from opid_gym.env import INFO_KEYS


@dataclass
class CheckResult:
    name: str
    ok: bool
    detail: str = ""


def _check(results: list[CheckResult], name: str, fn: Callable[[], str | None]) -> None:
    try:
        detail = fn() or ""
        results.append(CheckResult(name, True, detail))
    except Exception as exc:  # the verdict reports, it does not crash
        results.append(CheckResult(name, False, f"{type(exc).__name__}: {exc}"))


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


def check_env(env_id: str, **kwargs: Any) -> list[CheckResult]:
    """Run every check on ``env_id`` (``kwargs`` go to the constructor, e.g. ``data_root``)."""
    from gymnasium.utils.env_checker import check_env as gym_check_env

    from opid_gym.registry import make

    results: list[CheckResult] = []
    holder: dict[str, Any] = {}

    def build() -> str:
        holder["env"] = make(env_id, **kwargs)
        return f"{holder['env'].unwrapped.num_tasks} tasks"

    _check(results, "make", build)
    if "env" not in holder:
        return results
    env = holder["env"]
    base = env.unwrapped

    def gymnasium_checker() -> str:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            gym_check_env(base, skip_render_check=True, skip_close_check=True)
        own = project_dirs() + [Path(inspect.getfile(type(base))).resolve().parent]  # and the env's own package
        ours = [str(w.message) for w in caught if is_own_file(str(w.filename), own)]
        if ours:
            raise AssertionError("; ".join(ours))
        return f"{len(caught)} warning(s) from upstream code" if caught else ""

    _check(results, "gymnasium env checker", gymnasium_checker)

    def reset_contract() -> str:
        obs, info = env.reset(seed=7, options={"task_index": 0})
        assert isinstance(obs, str) and obs, "observation must be a non-empty str"
        assert base.observation_space.contains(obs), "observation outside the observation space"
        missing = [k for k in INFO_KEYS if k not in info]
        assert not missing, f"info lacks {missing}"
        obs2, _ = env.reset(seed=7, options={"task_index": 0})
        assert obs == obs2, "same seed and task gave different observations"
        return f"task {info['task_id']!r} ({info['task_type']})"

    _check(results, "reset contract", reset_contract)

    def step_contract() -> str:
        obs, info = env.reset(seed=7, options={"task_index": 0})
        admissible = info.get("admissible_actions") or []
        actions = ([admissible[0]] if admissible else []) + [
            "", "   ", "@@ not a command @@", "héllo wörld ✓", "x" * 5000, "click[", "search[]",
        ]
        for action in actions:
            obs, reward, terminated, truncated, info = env.step(action)
            assert isinstance(obs, str) and isinstance(reward, float)
            assert isinstance(terminated, bool) and isinstance(truncated, bool)
            missing = [k for k in INFO_KEYS if k not in info]
            assert not missing, f"info lacks {missing}"
            if terminated or truncated:
                env.reset(seed=7, options={"task_index": 0})
        return f"{len(actions)} actions including garbage"

    _check(results, "step accepts any string", step_contract)

    def truncation() -> str:
        short = make(env_id, **{**kwargs, "max_steps": 2})
        try:
            short.reset(seed=1, options={"task_index": 0})
            _, _, term1, trunc1, _ = short.step("@@ not a command @@")
            assert not trunc1, "truncated before the step limit"
            _, _, term2, trunc2, _ = short.step("@@ not a command @@")
            assert trunc2 and not term2, "the step limit must give truncated=True, terminated=False"
        finally:
            short.close()
        return "limit 2 → truncated"

    _check(results, "step limit is truncation", truncation)
    env.close()
    return results
