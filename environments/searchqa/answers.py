"""Answer checking for search QA: normalisation, exact match, token F1, answer-in-passage.

The normalisation is the one the reference setup (Search-R1, after SQuAD) uses for its
exact-match reward, in this order: lower-case, remove ASCII punctuation, drop the
articles *a*, *an*, *the* as whole words, collapse whitespace. Two additions that never
change a verdict on plain ASCII text:

* text is first put in Unicode NFC form, so the composed and decomposed spellings of
  the same character ("é" as one code point or as "e" + combining accent) compare
  equal;
* every Unicode whitespace character (no-break space, tabs, newlines) counts as
  whitespace.

Accents are kept ("Estádio" ≠ "Estadio") and non-ASCII punctuation (curly quotes,
dashes) is kept, as in the reference: loosening either would raise scores above the
published protocol's.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from typing import Iterable

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """The exact-match normal form of ``text`` (see the module docstring)."""
    text = unicodedata.normalize("NFC", str(text)).lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _as_list(golds: str | Iterable[str]) -> list[str]:
    return [golds] if isinstance(golds, str) else [str(g) for g in golds]


def exact_match(prediction: str, golds: str | Iterable[str]) -> float:
    """1.0 when the normalised prediction equals any normalised gold answer, else 0.0."""
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(g) for g in _as_list(golds)))


def token_f1(prediction: str, golds: str | Iterable[str]) -> float:
    """The best bag-of-tokens F1 between the prediction and any gold answer (a metric only)."""
    pred = normalize_answer(prediction).split()
    best = 0.0
    for gold in _as_list(golds):
        ref = normalize_answer(gold).split()
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
