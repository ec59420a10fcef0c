"""ALFWorld as an environment family: its defaults, data status and download."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from environments.alfworld.games import SPLITS, game_files
from opid_gym.data import DatasetStatus
from opid_gym.family import EnvFamily

DATA_DIR = "alfworld"
DOWNLOAD_HELP = (
    "ALFWorld: `alfworld-download` (from `pip install alfworld`) writes json_2.1.1/ and logic/ "
    "into $ALFWORLD_DATA; opid-gym runs it with ALFWORLD_DATA=<data root>/alfworld."
)


def data_status(root: Path) -> list[DatasetStatus]:
    """One row per split: how many game files ``<root>/alfworld/json_2.1.1/<split>`` holds."""
    out = []
    for split in SPLITS:
        d = root / DATA_DIR / "json_2.1.1" / split
        n = len(game_files(d))
        out.append(DatasetStatus(f"{DATA_DIR}/{split}", d, n > 0, f"{n} games"))
    return out


def download(root: Path) -> int:
    """Run the upstream ``alfworld-download`` into ``<root>/alfworld`` (exit code)."""
    tool = shutil.which("alfworld-download") or str(Path(sys.executable).with_name("alfworld-download"))
    if not Path(tool).exists():
        print("alfworld-download not found: pip install 'opid-gym[alfworld]'", file=sys.stderr)
        return 1
    target = root / DATA_DIR
    target.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "ALFWORLD_DATA": str(target)}
    try:
        proc = subprocess.run([tool], env=env, timeout=3600)
    except subprocess.TimeoutExpired:
        print("alfworld-download timed out after an hour", file=sys.stderr)
        return 1
    if proc.returncode != 0:
        print(
            f"alfworld-download failed (exit {proc.returncode}). It needs internet access to GitHub "
            "release assets; on an offline machine copy an existing json_2.1.1/ folder to "
            f"{target} instead.", file=sys.stderr,
        )
        return 1
    print(f"ALFWorld data is in {target}")
    return 0


ALFWORLD = EnvFamily(
    "alfworld",
    # algorithms spec §1/§2 table (released scripts): the dataclass defaults throughout
    max_step_skills=5,
    data_dir=DATA_DIR, data_status=data_status, download_help=DOWNLOAD_HELP, download=download,
)
