"""Answer checking for search QA: normalisation, exact match, token F1, answer-in-passage.

The normalisation is exactly Search-R1's ``qa_em.normalize_answer`` (after SQuAD), the
exact-match reward of the reference setup, in this order: lower-case (``str.lower``),
remove ASCII punctuation, replace the articles *a*, *an*, *the* as whole words by a
space, collapse whitespace (``str.split``, so every Unicode whitespace character counts).

Accents are kept ("Estádio" ≠ "Estadio"), non-ASCII punctuation (curly quotes, dashes)
is kept, and the composed and decomposed spellings of one character ("é" as one code
point or as "e" + combining accent) differ, as in the reference.

``nfc=True`` is an opt-in variant that first puts text in Unicode NFC form, so the two
spellings compare equal; it is the ``searchqa-nfc`` benchmark (its own protocol), not
comparable with published numbers.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from typing import Iterable

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str, *, nfc: bool = False) -> str:
    """The exact-match normal form of ``text`` (see the module docstring)."""
    text = str(text)
    if nfc:
        text = unicodedata.normalize("NFC", text)
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _as_list(golds: str | Iterable[str]) -> list[str]:
    return [golds] if isinstance(golds, str) else [str(g) for g in golds]


def exact_match(prediction: str, golds: str | Iterable[str], *, nfc: bool = False) -> float:
    """1.0 when the normalised prediction equals any normalised gold answer, else 0.0."""
    pred = normalize_answer(prediction, nfc=nfc)
    return float(any(pred == normalize_answer(g, nfc=nfc) for g in _as_list(golds)))


def token_f1(prediction: str, golds: str | Iterable[str], *, nfc: bool = False) -> float:
    """The best bag-of-tokens F1 between the prediction and any gold answer (a metric only)."""
    pred = normalize_answer(prediction, nfc=nfc).split()
    best = 0.0
    for gold in _as_list(golds):
        ref = normalize_answer(gold, nfc=nfc).split()
        common = sum((Counter(pred) & Counter(ref)).values())
        if not pred or not ref:
            score = float(pred == ref)
        elif common == 0:
            score = 0.0
        else:
            precision, recall = common / len(pred), common / len(ref)
            score = 2 * precision * recall / (precision + recall)
        best = max(best, score)
    return best


def answer_in_text(text: str, golds: str | Iterable[str]) -> bool:
    """Whether some non-empty normalised gold answer occurs, on word boundaries, in ``text``."""
    hay = f" {normalize_answer(text)} "
    return any(g and f" {g} " in hay for g in (normalize_answer(x) for x in _as_list(golds)))
