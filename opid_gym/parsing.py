"""Turning a model's response into an environment action.

Two formats, chosen per environment family by ``TextEnv.action_format``:

* ``think_action`` (ALFWorld, WebShop): the response must contain a
  ``<think>…</think>`` block and an ``<action>…</action>`` block; the first action
  block is the action. ALFWorld lower-cases it.
* ``search_answer`` (search QA): exactly one ``<search>…</search>`` or
  ``<answer>…</answer>``; both present, neither present, or one repeated is invalid.
  The action becomes ``search[query]`` or ``answer[text]``.

An invalid response still yields an action (the *fallback*, which the environment
answers with its usual "nothing happens" text) and ``valid=False`` so learners can
apply the invalid-action penalty. No function here raises on any input string.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL | re.IGNORECASE)
_ACTION = re.compile(r"<action>(.*?)</action>", re.DOTALL | re.IGNORECASE)
_SEARCH = re.compile(r"<search>(.*?)</search>", re.DOTALL | re.IGNORECASE)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_FALLBACK_CHARS = 100
_TAG = re.compile(r"</?\s*[A-Za-z][\w-]*\s*/?>")  # an XML-like tag (not WebShop's "< Prev" / "Next >")


@dataclass(frozen=True)
class ParsedAction:
    """The parser's verdict on one response.

    Attributes:
        action: the action to execute (the fallback when ``valid`` is False).
        valid: whether the response followed the format.
        error: why it was invalid (None when valid).
        think: the reasoning text, when present.
    """

    action: str
    valid: bool
    error: str | None = None
    think: str | None = None


def _fallback(text: str) -> str:
    # The tail of the raw text, on one line: the engine answers it like any other
    # unknown command ("Nothing happens."), as the reference setup does.
    return " ".join(text.split())[-_FALLBACK_CHARS:]


def parse_think_action(response: str, *, lowercase: bool = False) -> ParsedAction:
    """Parse the ``<think>…</think><action>…</action>`` format."""
    text = response if isinstance(response, str) else str(response)
    think = _THINK.search(text)
    action = _ACTION.search(text)
    think_text = think.group(1).strip() if think else None
    if action is None:
        return ParsedAction(_fallback(text), False, "missing <action>…</action>", think_text)
    act = " ".join(action.group(1).split())
    if lowercase:
        act = act.lower()
    if think is None:
        return ParsedAction(act or _fallback(text), False, "missing <think>…</think>", None)
    if not act:
        return ParsedAction(_fallback(text), False, "empty action", think_text)
    if _TAG.search(act):
        return ParsedAction(act, False, "tag inside action", think_text)
    return ParsedAction(act, True, None, think_text)


def parse_search_answer(response: str) -> ParsedAction:
    """Parse the ``<search>…</search>`` / ``<answer>…</answer>`` format."""
    text = response if isinstance(response, str) else str(response)
    searches = _SEARCH.findall(text)
    answers = _ANSWER.findall(text)
    think = _THINK.search(text)
    think_text = think.group(1).strip() if think else None
    if searches and answers:
        return ParsedAction("", False, "both <search> and <answer>", think_text)
    if len(searches) > 1 or len(answers) > 1:
        return ParsedAction("", False, "repeated tag", think_text)
    if searches:
        query = " ".join(searches[0].split())
        if not query:
            return ParsedAction("", False, "empty search", think_text)
        return ParsedAction(f"search[{query}]", True, None, think_text)
    if answers:
        answer = " ".join(answers[0].split())
        return ParsedAction(f"answer[{answer}]", True, None, think_text)
    return ParsedAction("", False, "neither <search> nor <answer>", think_text)


PARSERS: dict[str, Callable[[str], ParsedAction]] = {
    "think_action": parse_think_action,
    "think_action_lower": lambda r: parse_think_action(r, lowercase=True),
    "search_answer": parse_search_answer,
}


def get_parser(name: str) -> Callable[[str], ParsedAction]:
    try:
        return PARSERS[name]
    except KeyError:
        raise KeyError(f"unknown action format {name!r}; known: {sorted(PARSERS)}") from None


def action_tag(action: str, action_format: str) -> str:
    """The action as the model writes it, without reasoning (``<search>q</search>``...)."""
    if action_format == "search_answer":
        m = re.fullmatch(r"(search|answer)\[(.*)\]", action, re.DOTALL)
        return f"<{m.group(1)}>{m.group(2)}</{m.group(1)}>" if m else action
    return f"<action>{action}</action>"


def format_action(action: str, action_format: str, think: str = "") -> str:
    """Wrap an environment action in the response format (used by scripted agents)."""
    if action_format == "search_answer":
        m = re.fullmatch(r"(search|answer)\[(.*)\]", action, re.DOTALL)
        if m is None:
            return f"<answer>{action}</answer>"
        return f"<think>{think}</think><{m.group(1)}>{m.group(2)}</{m.group(1)}>"
    return f"<think>{think}</think><action>{action}</action>"
