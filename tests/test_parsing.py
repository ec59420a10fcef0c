"""Action parsing: a table of valid/invalid responses, and a fuzz test that never raises."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opid_gym.parsing import format_action, get_parser, parse_search_answer, parse_think_action

# Expected values follow the OPID reference projections (agent_system/environments/
# env_package/{alfworld,webshop,search}/projection.py), worked out by hand from their code.
ALFWORLD_CASES = [
    # response, action, valid
    ("<think>go</think><action>go to desk 1</action>", "go to desk 1", True),
    ("<think>a</think>\n<action>  Take Mug 1 from desk 1 </action>", "take mug 1 from desk 1", True),
    ("<think>x</think><action>first</action><action>second</action>", "first", True),
    # action tags are found in the lower-cased response, think tags only exactly
    ("<think>x</think><ACTION>look</ACTION>", "look", True),
    ("<THINK>x</THINK><action>look</action>", "look", False),
    ("<think >x</think><action>look</action>", "look", False),
    ("<action>look</action>", "look", False),  # think missing: executed, invalid
    ("</think><action>look</action><think>", "look", True),  # both think tags, any order
    ("<think>x</think><action></action>", "", True),  # empty action passed on
    ("<think>x</think></action><action>look", "", True),  # close before open: empty slice
    ("<think>x</think><action><b>look</b></action>", "<b>look</b>", True),  # no tag check
    ("<think>x</think><action>go to\ndesk 1</action>", "go to\ndesk 1", True),  # inner text kept
    ("<think>想</think><action>look</action>", "look", False),  # CJK ideograph
    ("<think>x</think><action>look</action>。", "look", True),  # CJK punctuation is not U+4E00-9FFF
    ("<think>only thinking</think>", "<think>only thinking</think>"[-30:], False),  # fallback: tail 30
    ("<think>x</think><action>look", "<think>x</think><action>look", False),  # unclosed
    ("", "", False),
]


@pytest.mark.parametrize("response,action,valid", ALFWORLD_CASES)
def test_alfworld_projection_table(response: str, action: str, valid: bool) -> None:
    parsed = get_parser("think_action_lower")(response)
    assert (parsed.action, parsed.valid) == (action, valid)
    assert (parsed.error is None) is valid


def test_fallback_is_the_lower_cased_tail() -> None:
    response = "I will now go to the Desk " * 20
    alf = get_parser("think_action_lower")(response)
    shop = get_parser("think_action_webshop")(response)
    assert not alf.valid and alf.action == response.lower()[-30:] and len(alf.action) == 30
    assert not shop.valid and shop.action == response.lower()[-20:] and len(shop.action) == 20


def test_webshop_lowercases_like_alfworld() -> None:
    parsed = get_parser("think_action_webshop")("<think>t</think><action>Click[Buy Now]</action>")
    assert (parsed.action, parsed.valid) == ("click[buy now]", True)


def test_generic_think_action_keeps_case() -> None:
    parsed = parse_think_action("<think>t</think><action> Guess 7 </action>")
    assert (parsed.action, parsed.valid, parsed.think) == ("Guess 7", True, "t")


SEARCH_CASES = [
    ("<think>hm</think><search>capital of France</search>", "search[capital of France]", True),
    ("<answer>Paris</answer>", "answer[Paris]", True),
    ("<answer> the  Eiffel\nTower </answer>", "answer[the  Eiffel\nTower]", True),
    # both tags: invalid, the search block is executed (searched first, whatever the order)
    ("<search>a</search><answer>b</answer>", "search[a]", False),
    ("<answer>b</answer><search>a</search>", "search[a]", False),
    # repeated: invalid, the first block is executed
    ("<search>a</search><search>b</search>", "search[a]", False),
    ("<answer>a</answer><answer>b</answer>", "answer[a]", False),
    ("no tags at all", "", False),
    ("<search>   </search>", "search[]", True),  # empty query accepted
    ("<search></search>", "search[]", True),
    # tags in any case are extracted and counted (re.IGNORECASE in the reference)
    ("<SEARCH>q</SEARCH>", "search[q]", True),
    ("<Answer>x</Answer>", "answer[x]", True),
    ("<search>a<answer>b</answer>", "answer[b]", False),  # unclosed search, answer block
    ("<search>a", "", False),
]


@pytest.mark.parametrize("response,action,valid", SEARCH_CASES)
def test_search_answer_table(response: str, action: str, valid: bool) -> None:
    parsed = parse_search_answer(response)
    assert (parsed.action, parsed.valid) == (action, valid)


@pytest.mark.parametrize("fmt", ["think_action", "think_action_lower", "think_action_webshop", "search_answer"])
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
    for name in ("think_action", "think_action_lower", "think_action_webshop", "search_answer"):
        parsed = get_parser(name)(text)
        assert isinstance(parsed.action, str) and isinstance(parsed.valid, bool)


def _count_scans(monkeypatch: pytest.MonkeyPatch, text: str) -> int:
    """How many characters the parsers' tag scans read in total on ``text``."""
    import opid_gym.parsing as parsing

    read = 0

    class Counting(str):
        def find(self, sub, start=0, *rest):  # type: ignore[override]
            nonlocal read
            pos = str.find(self, sub, start, *rest)
            read += (pos if pos >= 0 else len(self)) - start
            return pos

        def lower(self):  # type: ignore[override]
            return Counting(str.lower(self))

        def __getitem__(self, key):  # type: ignore[override]
            return Counting(str.__getitem__(self, key))

    monkeypatch.setattr(parsing, "_bounded", lambda r: Counting(r[:parsing.MAX_RESPONSE_CHARS]))
    for name in ("think_action", "think_action_lower", "think_action_webshop", "search_answer"):
        get_parser(name)(text)
    return read


@pytest.mark.parametrize("unit", ["<think>", "<action>", "<search>", "<answer><search>"])
def test_tag_scans_are_linear(monkeypatch: pytest.MonkeyPatch, unit: str) -> None:
    # A quadratic scan (a regex retrying from every opening tag) reads ~n^2/2 characters;
    # the parsers read each character a bounded number of times.
    small, large = unit * 1000, unit * 8000
    assert _count_scans(monkeypatch, large) <= 9 * _count_scans(monkeypatch, small)  # quadratic: ~64x


@pytest.mark.timeout(20)
def test_one_megabyte_of_unclosed_tags_parses_quickly() -> None:
    # issue 17.8: 1 MB of "<think>" took > 120 s with the old regex parser
    for unit in ("<think>", "<action>", "<search>", "<answer>"):
        text = unit * (1_000_000 // len(unit))
        for name in ("think_action", "think_action_lower", "think_action_webshop", "search_answer"):
            assert get_parser(name)(text).valid is False


def test_input_beyond_the_bound_is_not_read() -> None:
    from opid_gym.parsing import MAX_RESPONSE_CHARS

    head = "<think>x</think>" + " " * MAX_RESPONSE_CHARS
    parsed = get_parser("think_action_lower")(head + "<action>look</action>")
    assert not parsed.valid and parsed.action == " " * 30
