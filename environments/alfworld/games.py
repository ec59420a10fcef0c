"""Finding ALFWorld games on disk, the way the upstream loader does.

The layout is the one ``alfworld-download`` creates under ``$ALFWORLD_DATA``::

    json_2.1.1/<split>/<task folder>/<trial>/game.tw-pddl   (+ traj_data.json)

Like upstream, games whose file lacks ``"solvable": true`` and the ``movable`` /
``Sliced`` variants are skipped. The task type comes from ``traj_data.json`` when it
exists and from the task folder's name otherwise (the training games here ship
without it). Games are sorted by path, so a split's order never depends on the file
system.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from opid_gym.data import DataNotFoundError, missing_data_message, resolve_data_root

SPLITS = ("train", "valid_seen", "valid_unseen", "valid_train")

TASK_TYPES: dict[str, str] = {
    "pick_and_place_simple": "pick",
    "look_at_obj_in_light": "look",
    "pick_clean_then_place_in_recep": "clean",
    "pick_heat_then_place_in_recep": "heat",
    "pick_cool_then_place_in_recep": "cool",
    "pick_two_obj_and_place": "pick2",
}
"""Upstream task-type name → the short name used in metrics (the paper's six columns)."""

DOWNLOAD_HINT = "opid-bench data download alfworld   (runs the upstream `alfworld-download`)"


@dataclass(frozen=True)
class Game:
    path: Path
    task_id: str
    task_type: str
    task_type_full: str
    plan_length: int = 0
    """Number of actions of the game's expert walkthrough."""


def alfworld_root(data_root: str | Path | None) -> Path:
    """``<data root>/alfworld`` (or the root itself when it already holds ``json_2.1.1``)."""
    root = resolve_data_root(data_root)
    if (root / "json_2.1.1").is_dir():
        return root
    return root / "alfworld"


def game_files(split_dir: Path) -> list[Path]:
    """Every ``game.tw-pddl`` of one split folder, sorted by path (before any filtering)."""
    return sorted(split_dir.glob("*/*/game.tw-pddl")) if split_dir.is_dir() else []


def list_games(split: str, data_root: str | Path | None = None) -> list[Game]:
    """The solvable games of ``split``; ``"train+valid_train"`` joins splits (each in its own
    sorted order, in the order named; task ids keep their split as prefix)."""
    parts = split.split("+")
    if len(parts) > 1:
        if len(set(parts)) != len(parts):
            raise ValueError(f"ALFWorld split {split!r} names a split twice")
        return [g for part in parts for g in list_games(part, data_root)]
    if split not in SPLITS:
        raise ValueError(f"unknown ALFWorld split {split!r}; known: {', '.join(SPLITS)} (or joined with '+')")
    split_dir = alfworld_root(data_root) / "json_2.1.1" / split
    if not split_dir.is_dir():
        raise DataNotFoundError(missing_data_message(f"ALFWorld ({split})", split_dir, DOWNLOAD_HINT))
    games = []
    for game_file in game_files(split_dir):
        trial_dir = game_file.parent
        if "movable" in str(trial_dir) or "Sliced" in str(trial_dir):
            continue
        with open(game_file, encoding="utf-8") as f:
            game_json = json.load(f)
        if not game_json.get("solvable", False):
            continue
        traj = trial_dir / "traj_data.json"
        if traj.exists():
            with open(traj, encoding="utf-8") as f:
                full = json.load(f)["task_type"]
        else:
            full = trial_dir.parent.name.split("-", 1)[0]
        if full not in TASK_TYPES:
            continue
        task_id = f"{split}/{trial_dir.parent.name}/{trial_dir.name}"
        games.append(Game(game_file, task_id, TASK_TYPES[full], full, len(game_json.get("walkthrough") or [])))
    if not games:
        raise DataNotFoundError(missing_data_message(f"ALFWorld ({split})", split_dir, DOWNLOAD_HINT))
    return games
