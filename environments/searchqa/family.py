"""Search QA as an environment family: its defaults and data status.

The family is ``searchqa``; its data lives in ``<data root>/search_qa`` (the folder
name the data set is known by in ``opid-bench data``).
"""

from __future__ import annotations

from pathlib import Path

from opid_gym.data import DatasetStatus, files_status
from opid_gym.family import EnvFamily

DATA_DIR = "search_qa"
DOWNLOAD_HELP = (
    "Search QA: the FlashRAG data sets (huggingface.co/datasets/RUC-NLPIR/FlashRAG_datasets) and the "
    "Wikipedia-2018 corpus with its E5 index (Search-R1's `scripts/download.py`) go under "
    "<data root>/search_qa/ (see docs/searchqa.md)."
)


def data_status(root: Path) -> list[DatasetStatus]:
    """One row: how many question / corpus files ``<root>/search_qa`` holds."""
    return [files_status(root, DATA_DIR, ["*.jsonl", "*_questions_and_answers.json"], "question/corpus file(s)")]


SEARCHQA = EnvFamily(
    "searchqa",
    # algorithms spec §1/§2 table (released Search-R1 scripts)
    run_defaults={"rollout.tasks_per_step": 128, "optim.warmup_ratio": 0.1},
    loss_defaults={"kl_coef": 0.001, "entropy_coef": 0.0},
    max_step_skills=2,
    metric_keys=("em", "f1", "searches"),
    data_dir=DATA_DIR, data_status=data_status, download_help=DOWNLOAD_HELP,
)
