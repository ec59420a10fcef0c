"""``opid-bench data download``: fetch the full data sets with the upstream tools.

Each data set is downloaded by its own project's tool into the data root, in the
layout opid-gym reads. Machines without internet get a clear message instead of a
hang (every network step has a timeout).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

INSTRUCTIONS = {
    "alfworld": (
        "ALFWorld: `alfworld-download` (from `pip install alfworld`) writes json_2.1.1/ and logic/ "
        "into $ALFWORLD_DATA; opid-gym runs it with ALFWORLD_DATA=<data root>/alfworld."
    ),
    "webshop": (
        "WebShop: run WebShop's own setup (github.com/princeton-nlp/WebShop, `setup.sh -d small` for the "
        "1000-product catalogue or `-d all` for 1.18M products) and copy its data/ and "
        "search_engine/resources*/ folders under <data root>/webshop/ (see docs/webshop.md)."
    ),
    "search_qa": (
        "Search QA: the FlashRAG data sets (huggingface.co/datasets/RUC-NLPIR/FlashRAG_datasets) and the "
        "Wikipedia-2018 corpus with its E5 index (Search-R1's `scripts/download.py`) go under "
        "<data root>/search_qa/ (see docs/searchqa.md)."
    ),
}


def download(dataset: str, root: Path) -> int:
    print(INSTRUCTIONS[dataset])
    if dataset != "alfworld":
        print("This data set has no single upstream download command; follow the steps above.")
        return 1
    tool = shutil.which("alfworld-download") or str(Path(sys.executable).with_name("alfworld-download"))
    if not Path(tool).exists():
        print("alfworld-download not found: pip install 'opid-gym[alfworld]'", file=sys.stderr)
        return 1
    target = root / "alfworld"
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
