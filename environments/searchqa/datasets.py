"""Question lists for search QA: which questions each benchmark id evaluates and trains on.

Seven data sets, as Search-R1-style papers evaluate them: NQ, TriviaQA, PopQA
(single-hop) and HotpotQA, 2WikiMultiHopQA, MuSiQue, Bamboogle (multi-hop). For each
one the loader takes the first source that exists under ``<data root>/search_qa/``:

1. an explicit file (the env's ``question_files={"nq": "path", ...}``);
2. the FlashRAG layout (``huggingface-cli download RUC-NLPIR/FlashRAG_datasets``):
   ``FlashRAG_datasets/<name>/<split>.jsonl`` or ``<name>/<split>.jsonl``;
3. the Search-R1 layout (``PeterJinGo/nq_hotpotqa_train``): ``nq_hotpotqa_train/
   {train,test}.parquet`` (or ``search_r1/``), rows picked by ``data_source``;
4. the offline copies in ``../shared/data/search_qa`` (see :data:`OFFLINE_EVAL`).

Evaluation lists: the evaluation split Search-R1 uses (``test`` for NQ, TriviaQA,
PopQA and Bamboogle, ``dev`` for the other three). A split longer than
``max_questions`` (1000 by default, ``None`` for all) is cut to a fixed subset: the
first ``max_questions`` indices of a permutation drawn with :data:`SUBSET_SEED`,
kept in file order. So the offline lists are NQ, TriviaQA and PopQA 1000 each (the
published FlashRAG 1000-question subsamples, taken whole), Bamboogle 125 (all),
HotpotQA 1000 of 7405, 2Wiki 1000 of 12576, MuSiQue 1000 of 2417 (seeded subsets of
the full dev sets).

Training list (``searchqa-train``): NQ + HotpotQA train. Where the train files are not
present (offline), NQ falls back to the NQ-open test questions that are *not* in the
NQ evaluation list (2610 offline) and HotpotQA to the 500 HotpotQA train-split
questions of ``Ning-Guo__hotpotqa-agent/data/grpo_val.jsonl`` (whose passages the
offline corpus holds). Put ``nq/train.jsonl`` and ``hotpotqa/train.jsonl`` in the
FlashRAG layout, or Search-R1's ``train.parquet``, to train on the real train sets.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from opid_gym.data import DataNotFoundError, missing_data_message, resolve_data_root

DATASETS = ("nq", "triviaqa", "popqa", "hotpotqa", "2wiki", "musique", "bamboogle")
SINGLE_HOP = frozenset({"nq", "triviaqa", "popqa"})
TRAIN_DATASETS = ("nq", "hotpotqa")

FLASHRAG_NAMES = {
    "nq": "nq", "triviaqa": "triviaqa", "popqa": "popqa", "hotpotqa": "hotpotqa",
    "2wiki": "2wikimultihopqa", "musique": "musique", "bamboogle": "bamboogle",
}
"""Our short names → FlashRAG's folder names (also Search-R1's ``data_source`` values)."""

EVAL_SPLITS = {
    "nq": "test", "triviaqa": "test", "popqa": "test", "bamboogle": "test",
    "hotpotqa": "dev", "2wiki": "dev", "musique": "dev",
}

SUBSET_SEED = 20260601
"""Seed of the fixed subsets of long evaluation splits (part of the protocol)."""

DEFAULT_MAX_QUESTIONS = 1000

_OFF_A = "GaurisankarJ__reason_over_search/data_subsample"
_OFF_B = "chenyiqun__Agentic-RAG/data"
OFFLINE_EVAL = {
    "nq": f"{_OFF_A}/nq/test.jsonl",
    "triviaqa": f"{_OFF_A}/triviaqa/test.jsonl",
    "popqa": f"{_OFF_A}/popqa/test.jsonl",
    "bamboogle": f"{_OFF_A}/bamboogle/test.jsonl",
    "hotpotqa": f"{_OFF_B}/hotpot_qa/hotpotqa_test_questions_and_answers.json",
    "2wiki": f"{_OFF_B}/2wikimultihop_qa/2wikimultihop_test_questions_and_answers.json",
    "musique": f"{_OFF_B}/musique/musique_test_questions_and_answers.json",
}
"""Offline evaluation files, relative to ``<data root>/search_qa``."""

OFFLINE_TRAIN = {
    "nq": f"{_OFF_B}/nq/nq_test_questions_and_answers.json",
    "hotpotqa": "Ning-Guo__hotpotqa-agent/data/grpo_val.jsonl",
}
"""Offline training fallbacks (NQ minus its evaluation questions; HotpotQA train-split questions)."""

SEARCH_R1_DIRS = ("nq_hotpotqa_train", "search_r1", "search-r1")
DOWNLOAD_HINT = (
    "huggingface-cli download RUC-NLPIR/FlashRAG_datasets --repo-type dataset "
    "--local-dir <data root>/search_qa/FlashRAG_datasets   (see docs/searchqa.md)"
)


@dataclass(frozen=True)
class Question:
    """One question with its gold answers."""

    qid: str
    question: str
    answers: tuple[str, ...]
    dataset: str

    @property
    def question_type(self) -> str:
        return "single-hop" if self.dataset in SINGLE_HOP else "multi-hop"

    @property
    def task_id(self) -> str:
        return f"{self.dataset}/{self.qid}"


@dataclass(frozen=True)
class QuestionList:
    """The questions of one data set and where they came from."""

    dataset: str
    source: str
    questions: tuple[Question, ...]
    source_size: int


def search_qa_root(data_root: str | Path | None) -> Path:
    root = resolve_data_root(data_root)
    return root if root.name == "search_qa" else root / "search_qa"


# ----------------------------------------------------------------- file readers
def _answers(rec: Mapping[str, Any]) -> list[str]:
    for key in ("golden_answers", "answers", "answer"):
        value = rec.get(key)
        if value is not None and not (isinstance(value, float) and np.isnan(value)):
            break
    else:
        value = None
        if "answers_objects" in rec:  # IRCoT format
            value = [s for obj in rec["answers_objects"] for s in obj.get("spans", [])]
        elif isinstance(rec.get("reward_model"), Mapping):  # Search-R1 parquet
            value = (rec["reward_model"].get("ground_truth") or {}).get("target")
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    return [str(v) for v in list(value) if str(v).strip()]


def _question_text(text: str) -> str:
    # As Search-R1 prepares its test data: strip, and end every question with "?".
    text = " ".join(str(text).split())
    return text if text.endswith("?") else text + "?"


def _records(path: Path, dataset: str) -> list[dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    if suffix == ".json":
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if isinstance(data, Mapping):  # {"data": [...]} wrappers
            data = next((v for v in data.values() if isinstance(v, list)), [])
        return list(data)
    if suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ImportError("reading Search-R1 parquet files needs pyarrow: pip install pyarrow") from exc
        table = pq.read_table(path)
        wanted = ("id", "question", "golden_answers", "data_source", "reward_model")
        keep = [c for c in wanted if c in table.column_names]
        rows = table.select(keep).to_pylist()
        if "data_source" in keep:
            rows = [r for r in rows if str(r["data_source"]).removeprefix("searchR1_") == FLASHRAG_NAMES[dataset]]
        return rows
    raise ValueError(f"unsupported question file {path} (expected .jsonl, .json or .parquet)")


def read_questions(path: str | Path, dataset: str, *, id_prefix: str = "") -> list[Question]:
    """Questions of ``dataset`` in ``path`` (FlashRAG jsonl, JSON list, HotpotQA, IRCoT or
    Search-R1 parquet), in file order. Records without a question or an answer are skipped."""
    path = Path(path)
    out = []
    for i, rec in enumerate(_records(path, dataset)):
        question = rec.get("question") or rec.get("question_text")
        answers = _answers(rec)
        if not question or not answers:
            continue
        qid = rec.get("id") or rec.get("_id") or rec.get("question_id") or f"{id_prefix}{i}"
        out.append(Question(str(qid), _question_text(question), tuple(answers), dataset))
    return out


# ------------------------------------------------------------------ resolution
def _layout_candidates(base: Path, dataset: str, split: str) -> list[tuple[Path, str]]:
    name = FLASHRAG_NAMES[dataset]
    cands = [(base / "FlashRAG_datasets" / name / f"{split}.jsonl", "flashrag"),
             (base / name / f"{split}.jsonl", "flashrag")]
    parquet = "train.parquet" if split == "train" else "test.parquet"
    cands += [(base / d / parquet, "search-r1") for d in SEARCH_R1_DIRS]
    return cands


def subset_indices(n: int, k: int | None) -> list[int]:
    """All of ``range(n)``, or ``k`` of them: a fixed seeded subset, in file order."""
    if k is None or k >= n:
        return list(range(n))
    return sorted(int(i) for i in np.random.default_rng(SUBSET_SEED).permutation(n)[:k])


def _check_dataset(dataset: str) -> None:
    if dataset not in DATASETS:
        raise ValueError(f"unknown search-QA data set {dataset!r}; known: {', '.join(DATASETS)}")


def _resolve(
    dataset: str, split: str, base: Path, files: Mapping[str, str] | None, offline: str | None
) -> tuple[Path, list[Question]]:
    if files and dataset in files:
        path = Path(files[dataset]).expanduser()
        if not path.is_file():
            raise DataNotFoundError(f"question file for {dataset} not found: {path}")
        return path, read_questions(path, dataset, id_prefix=f"{split}_")
    for path, _kind in _layout_candidates(base, dataset, split):
        if path.is_file():
            questions = read_questions(path, dataset, id_prefix=f"{split}_")
            if questions:
                return path, questions
    if offline is not None and (base / offline).is_file():
        path = base / offline
        return path, read_questions(path, dataset, id_prefix=f"{EVAL_SPLITS[dataset]}_")
    expected = base / "FlashRAG_datasets" / FLASHRAG_NAMES[dataset] / f"{split}.jsonl"
    raise DataNotFoundError(missing_data_message(f"search QA ({dataset} {split})", expected, DOWNLOAD_HINT))


@functools.lru_cache(maxsize=64)
def _eval_cached(dataset: str, base: str, max_questions: int | None, files: tuple) -> QuestionList:
    path, questions = _resolve(dataset, EVAL_SPLITS[dataset], Path(base), dict(files), OFFLINE_EVAL.get(dataset))
    chosen = tuple(questions[i] for i in subset_indices(len(questions), max_questions))
    return QuestionList(dataset, str(path), chosen, len(questions))


def eval_questions(
    dataset: str, data_root: str | Path | None = None, *, max_questions: int | None = DEFAULT_MAX_QUESTIONS,
    files: Mapping[str, str] | None = None,
) -> QuestionList:
    """The fixed evaluation list of ``dataset`` (see the module docstring)."""
    _check_dataset(dataset)
    return _eval_cached(dataset, str(search_qa_root(data_root)), max_questions, tuple(sorted((files or {}).items())))


@functools.lru_cache(maxsize=16)
def _train_cached(dataset: str, base: str, files: tuple) -> QuestionList:
    basep = Path(base)
    fdict = dict(files)
    try:
        path, questions = _resolve(dataset, "train", basep, fdict, None)
        return QuestionList(dataset, str(path), tuple(questions), len(questions))
    except DataNotFoundError:
        if dataset not in OFFLINE_TRAIN or not (basep / OFFLINE_TRAIN[dataset]).is_file():
            raise
    path = basep / OFFLINE_TRAIN[dataset]
    questions = read_questions(path, dataset, id_prefix="train_" if dataset != "nq" else "test_")
    if dataset in EVAL_SPLITS:  # never train on a question of the evaluation list
        held_out = {q.question.lower() for q in _eval_cached(dataset, base, DEFAULT_MAX_QUESTIONS, ()).questions}
        questions = [q for q in questions if q.question.lower() not in held_out]
    return QuestionList(dataset, str(path), tuple(questions), len(questions))


def train_questions(
    datasets: Iterable[str] = TRAIN_DATASETS, data_root: str | Path | None = None, *,
    files: Mapping[str, str] | None = None,
) -> list[QuestionList]:
    """The training lists of ``datasets`` (NQ + HotpotQA by default)."""
    out = []
    for d in datasets:
        _check_dataset(d)
        out.append(_train_cached(d, str(search_qa_root(data_root)), tuple(sorted((files or {}).items()))))
    return out
