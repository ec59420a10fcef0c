"""The oracle-retrieval report: how often the first search can find the answer at all.

For questions whose passages are in the offline HotpotQA corpus, search the question
text once (what the ``expert`` agent does first) and count a hit when a gold answer
occurs, after exact-match normalisation and on word boundaries, in the title or text of
one of the top-k passages (recall@k). It bounds what a one-search agent can reach with
that retriever; ``benchmarks/retrieval.py`` prints it per retriever.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from environments.searchqa.answers import answer_in_text
from environments.searchqa.corpus import OFFLINE_CORPUS_SOURCES
from environments.searchqa.datasets import read_questions, search_qa_root
from environments.searchqa.retrievers import Retriever


@dataclass(frozen=True)
class OracleQuestion:
    question: str
    answers: tuple[str, ...]
    split: str


def covered_questions(data_root: str | Path | None = None) -> list[OracleQuestion]:
    """The 1000 HotpotQA questions whose passages the offline corpus holds.

    500 train-split questions (``grpo_val.jsonl``, split ``train``) and the 500 dev
    questions of ``dev_subsampled.jsonl`` (split ``dev``).
    """
    base = search_qa_root(data_root)
    train = read_questions(base / "Ning-Guo__hotpotqa-agent/data/grpo_val.jsonl", "hotpotqa")
    out = [OracleQuestion(q.question, q.answers, "train") for q in train]
    with open(base / OFFLINE_CORPUS_SOURCES[1], encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rec = json.loads(line)
                answers = tuple(s for obj in rec["answers_objects"] for s in obj.get("spans", []) if s.strip())
                out.append(OracleQuestion(rec["question_text"], answers, "dev"))
    return out


def recall_at_k(retriever: Retriever, questions: Sequence[OracleQuestion], k: int = 3) -> list[bool]:
    """For each question: does a gold answer occur in the top-k passages of one search?"""
    hits = retriever.search_batch([q.question for q in questions], k)
    return [any(answer_in_text(f"{h.passage.title} {h.passage.text}", q.answers) for h in hs)
            for q, hs in zip(questions, hits)]
