"""The search-QA environment: answer a question, searching a passage corpus on the way.

Each turn the agent's response is parsed by the ``search_answer`` parser into one
action (see :mod:`opid_gym.parsing`; its rules are the OPID reference projection's):

* ``search[query]``: the retriever's top-3 passages come back in the reference's
  block: ``<information>``, a JSON object whose ``result`` holds one ``Doc i: <title
  and text>`` line per passage, ``</information>`` (:func:`information_block`); an
  empty query is searched too;
* ``answer[text]``: the episode ends (``terminated``) with reward 1.0 when the answer
  matches a gold answer exactly after normalisation (:mod:`.answers`), else 0.0;
* anything else (the parser's ``""`` when the response has no complete search or
  answer block) uses the turn up and returns an empty observation, as the reference
  does. A response the parser flags invalid but that holds a block (both tags, a
  repeated tag) executes its first block; the flag only reaches the learner.

The step limit (4 turns in the benchmarks) ends an unanswered episode with
``truncated=True`` and reward 0. Raw tagged text (``"<search>q</search>"``) is also
accepted as an action, for users who step the env by hand.

``task_type`` is the data set name, so a benchmark's per-type table is the per-data-set
table and ``overall="types"`` gives the average over data sets; ``info["question_type"]``
says single-hop or multi-hop.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from environments.searchqa.answers import exact_match, token_f1
from environments.searchqa.datasets import (
    DATASETS, DEFAULT_MAX_QUESTIONS, TRAIN_DATASETS, Question, eval_questions, train_questions,
)
from environments.searchqa.prompt import SEARCHQA_PROMPT
from environments.searchqa.retrievers import Hit, Retriever, RetrieverConfig, get_retriever
from environments.searchqa.family import SEARCHQA
from opid_gym.env import TaskState, TextEnv, Transition
from opid_gym.parsing import parse_search_answer

INVALID_OBSERVATION = ""
"""The observation after a turn without a search or answer block (empty, as in the reference)."""
NO_RESULTS = "No search results found."
ANSWER_NORMALIZATIONS = ("search-r1", "nfc")
_ACTION = re.compile(r"\s*(search|answer)\[(.*)\]\s*", re.DOTALL | re.IGNORECASE)


def information_block(hits: list[Hit]) -> str:
    """The retrieved documents as the OPID reference's search tool returns them.

    ``Doc i: <contents>`` lines (contents = title line and text, stripped), each ending
    in a newline, as the ``result`` of a JSON object (``json.dumps`` defaults, so
    newlines, quotes and non-ASCII characters are escaped), inside
    ``<information>…</information>``.
    """
    docs = "".join(f"Doc {i}: {h.passage.contents.strip()}\n" for i, h in enumerate(hits, 1))
    return f"<information>{json.dumps({'result': docs if hits else NO_RESULTS})}</information>"


def parse_env_action(action: str) -> tuple[str, str]:
    """``("search", query)``, ``("answer", text)`` or ``("invalid", "")``.

    ``search[...]`` / ``answer[...]`` (as the parser writes them) or a raw response with
    tags (parsed by :func:`~opid_gym.parsing.parse_search_answer`, whose first block is
    executed even when it flags the response invalid).
    """
    text = str(action)
    m = _ACTION.fullmatch(text)
    if m is None and "<" in text:  # a raw response: parse its tags
        m = _ACTION.fullmatch(parse_search_answer(text).action)
    if m is None:
        return "invalid", ""
    return m.group(1).lower(), m.group(2).strip()


class SearchQAEnv(TextEnv):
    """Search-based question answering.

    Args:
        dataset: one of ``nq, triviaqa, popqa, hotpotqa, 2wiki, musique, bamboogle``;
            ``all`` (the seven evaluation lists one after another); ``train``.
        data_root: the data root (see :mod:`opid_gym.data`).
        max_steps: turns per episode (4 in the benchmarks).
        max_questions: evaluation lists longer than this are cut to a fixed seeded subset
            (None: every question).
        question_files: ``{data set: file}`` overriding where evaluation questions come from.
        train_datasets / train_files: the training mix (``dataset="train"``) and file overrides.
        retriever: ``bm25s`` (default), ``pyserini`` or ``dense``.
        corpus: a JSONL passage corpus; None = the offline HotpotQA corpus.
        index_dir: where indexes are built and cached (default ``~/.cache/opid-gym/search_index``).
        encoder: the dense encoder (``minilm`` = the packaged all-MiniLM-L6-v2, ``e5-base-v2``, a path).
        faiss_index: a prebuilt flat FAISS index aligned with ``corpus`` (dense only).
        lucene_index: a prebuilt Lucene index whose docids are ``corpus`` line numbers (pyserini only).
        top_k: passages per search.
        device: the dense encoder's torch device.
        answer_normalization: ``search-r1`` (default: Search-R1's exact match) or ``nfc``
            (Unicode NFC first; the ``searchqa-nfc`` benchmark).
    """

    family = SEARCHQA
    action_format = "search_answer"
    prompt = SEARCHQA_PROMPT

    def __init__(
        self,
        dataset: str = "all",
        *,
        data_root: str | Path | None = None,
        max_steps: int = 4,
        max_questions: int | None = DEFAULT_MAX_QUESTIONS,
        question_files: Mapping[str, str] | None = None,
        train_datasets: Sequence[str] = TRAIN_DATASETS,
        train_files: Mapping[str, str] | None = None,
        retriever: str = "bm25s",
        corpus: str | None = None,
        index_dir: str | None = None,
        encoder: str = "minilm",
        faiss_index: str | None = None,
        lucene_index: str | None = None,
        top_k: int = 3,
        device: str | None = None,
        answer_normalization: str = "search-r1",
        render_mode: str | None = None,
    ) -> None:
        super().__init__(max_steps=max_steps, render_mode=render_mode)
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        if answer_normalization not in ANSWER_NORMALIZATIONS:
            raise ValueError(f"answer_normalization must be one of {', '.join(ANSWER_NORMALIZATIONS)}, "
                             f"got {answer_normalization!r}")
        self.nfc = answer_normalization == "nfc"
        self.dataset = dataset
        if dataset == "train":
            lists = train_questions(train_datasets, data_root, files=train_files)
        elif dataset == "all":
            lists = [eval_questions(d, data_root, max_questions=max_questions, files=question_files) for d in DATASETS]
        elif dataset in DATASETS:
            lists = [eval_questions(dataset, data_root, max_questions=max_questions, files=question_files)]
        else:
            raise ValueError(f"unknown search-QA data set {dataset!r}; known: all, train, {', '.join(DATASETS)}")
        self.sources = {ql.dataset: ql.source for ql in lists}
        self.questions: list[Question] = [q for ql in lists for q in ql.questions]
        self.top_k = int(top_k)
        self.retriever_config = RetrieverConfig(
            kind=retriever, corpus=corpus, data_root=str(data_root) if data_root else None, index_dir=index_dir,
            encoder=encoder, faiss_index=faiss_index, lucene_index=lucene_index, device=device,
        )
        self._retriever: Retriever | None = None
        self._question: Question | None = None
        self._searches = 0

    # --------------------------------------------------------------- family API
    def _num_tasks(self) -> int:
        return len(self.questions)

    def task_ids(self) -> list[str]:
        return [q.task_id for q in self.questions]

    def task_types(self) -> list[str]:
        return [q.dataset for q in self.questions]

    @property
    def retriever(self) -> Retriever:
        """The shared retriever of this env's configuration (built on first use)."""
        if self._retriever is None:
            self._retriever = get_retriever(self.retriever_config)
        return self._retriever

    def _load_task(self, index: int, rng: np.random.Generator) -> TaskState:
        q = self.questions[index]
        self._question = q
        self._searches = 0
        return TaskState(
            observation=q.question,
            task=q.question,
            task_id=q.task_id,
            task_type=q.dataset,
            admissible_actions=None,
            info={"dataset": q.dataset, "question_type": q.question_type},
        )

    def _act(self, action: str) -> Transition:
        q = self._question
        assert q is not None
        kind, arg = parse_env_action(action)
        info: dict[str, Any] = {"dataset": q.dataset, "question_type": q.question_type, "invalid": kind == "invalid"}
        last_turn = self._steps + 1 >= self.max_steps
        if kind == "answer":
            em = exact_match(arg, q.answers, nfc=self.nfc)
            info.update(em=em, f1=token_f1(arg, q.answers, nfc=self.nfc), answer=arg, searches=self._searches,
                        gold_answers=list(q.answers))
            return Transition(observation=f"Your answer: {arg}", reward=em, done=True, won=em == 1.0, info=info)
        if kind == "search":
            self._searches += 1
            hits = self.retriever.search(arg, self.top_k)
            info.update(query=arg, passages=[h.index for h in hits])
            observation = information_block(list(hits))
        else:
            observation = INVALID_OBSERVATION
        if last_turn:  # the base class turns this into truncated=True
            info.update(em=0.0, f1=0.0, searches=self._searches, gold_answers=list(q.answers))
        return Transition(observation=observation, reward=0.0, done=False, won=False, info=info)

    def expert_action(self) -> str | None:
        """Search the question first, then answer with the first gold answer."""
        q = self._question
        if q is None:
            return None
        if self._searches == 0 and self._steps + 1 < self.max_steps:
            return f"search[{q.question}]"
        return f"answer[{q.answers[0]}]"
