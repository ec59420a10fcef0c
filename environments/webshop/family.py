"""WebShop as an environment family: its defaults and data status."""

from __future__ import annotations

from pathlib import Path

from opid_gym.data import DatasetStatus, files_status
from opid_gym.family import EnvFamily

DATA_DIR = "webshop"
DOWNLOAD_HELP = (
    "WebShop: run WebShop's own setup (github.com/princeton-nlp/WebShop, `setup.sh -d small` for the "
    "1000-product catalogue or `-d all` for 1.18M products) and copy its data/ and "
    "search_engine/resources*/ folders under <data root>/webshop/ (see docs/webshop.md)."
)


def data_status(root: Path) -> list[DatasetStatus]:
    """One row: how many catalogue index files (``documents.jsonl``) ``<root>/webshop`` holds."""
    return [files_status(root, DATA_DIR, ["documents.jsonl"], "catalogue index file(s)")]


WEBSHOP = EnvFamily(
    "webshop",
    loss_defaults={"adv_norm": "mean_norm"},  # algorithms spec §1/§2 table
    max_step_skills=5,
    metric_keys=("score",),
    data_dir=DATA_DIR, data_status=data_status, download_help=DOWNLOAD_HELP,
)
