"""Action parsing: a table of valid/invalid responses, and a fuzz test that never raises."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opid_gym.parsing import format_action, get_parser, parse_search_answer, parse_think_action

THINK_ACTION_CASES = [
    # response, action, valid
    ("<think>go</think><action>go to desk 1</action>", "go to desk 1", True),
    ("<think>a</think>\n<action>  take  mug 1 from desk 1 </action>", "take mug 1 from desk 1", True),
    ("<think>x</think><action>first</action><action>second</action>", "first", True),
    ("<THINK>x</THINK><ACTION>look</ACTION>", "look", True),
    ("<action>look</action>", "look", False),  # think missing
    ("<think>only thinking</think>", None, False),  # action missing
    ("<think>x</think><action></action>", None, False),  # empty action
    ("<think>x</think><action>look", None, False),  # unclosed
    ("<think>x</think><action><think>look</think></action>", None, False),  # nested tag
    ("", "", False),
    ("look", "look", False),
]


@pytest.mark.parametrize("response,action,valid", THINK_ACTION_CASES)
def test_think_action_table(response: str, action: str | None, valid: bool) -> None:
    parsed = parse_think_action(response)
    assert parsed.valid is valid
    if action is not None:
        assert parsed.action == action
    assert (parsed.error is None) is valid


def test_alfworld_lowercases_action() -> None:
    parsed = get_parser("think_action_lower")("<think>t</think><action>Go To Desk 1</action>")
    assert parsed.action == "go to desk 1" and parsed.valid


def test_invalid_fallback_is_the_response_tail() -> None:
    parsed = parse_think_action("I will now go to the desk " * 20)
    assert not parsed.valid
    assert len(parsed.action) <= 100 and parsed.action.endswith("go to the desk")


SEARCH_CASES = [
    ("<think>hm</think><search>capital of France</search>", "search[capital of France]", True),
    ("<answer>Paris</answer>", "answer[Paris]", True),
    ("<answer> the  Eiffel\nTower </answer>", "answer[the Eiffel Tower]", True),
    ("<search>a</search><answer>b</answer>", "", False),  # both
    ("<search>a</search><search>b</search>", "", False),  # repeated
    ("<answer>a</answer><answer>b</answer>", "", False),  # repeated
    ("no tags at all", "", False),  # neither
    ("<search>   </search>", "", False),  # empty query
]


@pytest.mark.parametrize("response,action,valid", SEARCH_CASES)
def test_search_answer_table(response: str, action: str, valid: bool) -> None:
    parsed = parse_search_answer(response)
    assert (parsed.action, parsed.valid) == (action, valid)


@pytest.mark.parametrize("fmt", ["think_action", "think_action_lower", "search_answer"])
def test_format_then_parse_round_trips(fmt: str) -> None:
    action = "search[who wrote hamlet]" if fmt == "search_answer" else "go to desk 1"
    parsed = get_parser(fmt)(format_action(action, fmt, "reasoning"))
    assert parsed.valid and parsed.action == action


def test_unknown_parser_is_a_clear_error() -> None:
    with pytest.raises(KeyError, match="unknown action format"):
        get_parser("xml")


tags = st.sampled_from(["<think>", "</think>", "<action>", "</action>", "<search>", "</search>",
                        "<answer>", "</answer>", "<", ">", "[", "]"])
fragments = st.lists(st.one_of(st.text(max_size=20), tags), max_size=12).map("".join)


@settings(max_examples=400, deadline=None)
@given(fragments)
def test_parsers_never_raise(text: str) -> None:
    for name in ("think_action", "think_action_lower", "search_answer"):
        parsed = get_parser(name)(text)
        assert isinstance(parsed.action, str) and isinstance(parsed.valid, bool)
        assert "\n" not in parsed.action
