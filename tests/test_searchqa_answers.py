"""Exact-match normalisation, token F1 and answer-in-passage, on hand-computed tables."""

from __future__ import annotations

import pytest

from environments.searchqa.answers import answer_in_text, exact_match, normalize_answer, token_f1

NORMALISED = [
    # (raw, normal form)            what it checks
    ("Paris", "paris"),                                  # case
    ("The Eiffel Tower", "eiffel tower"),                # leading article
    ("  An   apple. ", "apple"),                         # article, punctuation, whitespace
    ("a theory of a thing", "theory of thing"),          # articles anywhere, as words
    ("Theatre Anthem", "theatre anthem"),                # 'the'/'an' inside words stay
    ("U.S.A.", "usa"),                                   # punctuation removed, not spaced
    ("Hello,World!", "helloworld"),
    ("rock 'n' roll", "rock n roll"),
    ("New\u00a0York\tCity\n", "new york city"),          # unicode whitespace collapsed
    ("ÉCOLE", "école"),                                  # unicode lower-case
    ("e\u0301cole", "e\u0301cole"),                       # decomposed accent kept (no NFC)
    ("Estádio", "estádio"),                              # accents are kept
    ("don\u2019t", "don\u2019t"),                        # non-ASCII punctuation is kept
    ("The", ""),
    ("", ""),
]


@pytest.mark.parametrize("raw,expected", NORMALISED)
def test_normalize_answer_table(raw: str, expected: str) -> None:
    assert normalize_answer(raw) == expected


def test_normalization_is_search_r1_qa_em() -> None:
    # Search-R1's verl/utils/reward_score/qa_em.normalize_answer, step by step by hand:
    # lower -> drop string.punctuation -> articles to " " -> " ".join(split())
    raw = "  The  U.S.-Open, an E\u0301vent\u00a0of A Kind! "
    by_hand = "  the  us-open, an e\u0301vent\u00a0of a kind! "  # lower
    by_hand = "  the  usopen an e\u0301vent\u00a0of a kind "     # punctuation
    by_hand = "     usopen   e\u0301vent\u00a0of   kind "        # articles
    assert normalize_answer(raw) == " ".join(by_hand.split()) == "usopen e\u0301vent of kind"


def test_nfc_is_an_opt_in_variant() -> None:
    assert normalize_answer("e\u0301cole", nfc=True) == "école"
    assert exact_match("e\u0301cole", "École", nfc=True) == 1.0
    assert exact_match("e\u0301cole", "École") == 0.0


EM_CASES = [
    ("the Beatles", ["Rolling Stones", "Beatles"], 1.0),   # any of several gold answers
    ("Rolling  stones!", ["Rolling Stones", "Beatles"], 1.0),
    ("Stones", ["Rolling Stones"], 0.0),                   # exact, not partial
    ("Estadio do Maracana", ["Estádio do Maracanã"], 0.0),  # accents matter
    ("école", "École", 1.0),                               # a single gold string
    ("e\u0301cole", "École", 0.0),                         # decomposed ≠ composed, as in Search-R1
    ("", ["Paris"], 0.0),
    ("1999", ["1999"], 1.0),
    ("1,999", ["1999"], 1.0),                              # punctuation inside numbers goes too
]


@pytest.mark.parametrize("pred,golds,expected", EM_CASES)
def test_exact_match_table(pred: str, golds: list[str] | str, expected: float) -> None:
    assert exact_match(pred, golds) == expected


def test_token_f1_hand_computed() -> None:
    # "new york city" vs "new york": precision 2/3, recall 1 → F1 = 2·(2/3)/(5/3) = 0.8
    assert token_f1("New York City", ["New York"]) == pytest.approx(0.8)
    assert token_f1("Boston", ["New York", "Boston"]) == 1.0
    assert token_f1("Chicago", ["New York"]) == 0.0


def test_answer_in_text_respects_word_boundaries() -> None:
    assert answer_in_text("Paris is the capital of France.", ["paris"])
    assert not answer_in_text("Parisian cafes", ["Paris"])
    assert answer_in_text("He was born in the U.S.A. in 1950", ["USA"])
    assert not answer_in_text("anything", ["the"])  # an answer that normalises to nothing never matches
