"""Turning a model's response into an environment action.

The rules are those of the OPID reference code's projections
(``agent_system/environments/env_package/{alfworld,webshop,search}/projection.py``);
the format is chosen per environment family by ``TextEnv.action_format``:

* ``think_action_lower`` (ALFWorld) and ``think_action_webshop`` (WebShop): the whole
  response is lower-cased; the action is the text between the first ``<action>`` and
  the first ``</action>`` (tags found in the lower-cased text), stripped of surrounding
  whitespace, and passed on even when empty. Without both tags the action is the
  *fallback*, the last 30 (ALFWorld) or 20 (WebShop) characters of the lower-cased
  response, and the step is invalid. A step is also invalid when the original
  response lacks ``<think>`` or ``</think>`` (exact, lower-case) or contains a CJK
  ideograph (U+4E00–U+9FFF); its action is still executed.
* ``think_action``: the same rules without lower-casing (for families whose actions
  are case-sensitive, e.g. the toy environments of the tests).
* ``search_answer`` (search QA): the response is cut after its first ``</search>``
  (else its first ``</answer>``; exact, lower-case); in what is left, the first
  ``<search>…</search>`` block (tags in any case) gives ``search[query]``, else the
  first ``<answer>…</answer>`` block gives ``answer[text]``, else the action is ``""``
  (invalid). An empty ``<search></search>`` is a search for ``""``. The step is
  invalid, while its block is still executed, when the whole response holds both a
  ``<search>`` and an ``<answer>`` tag or one of them twice (tags in any case).

An invalid response still yields an action and ``valid=False`` so learners can apply
the invalid-action penalty. No function here raises on any input string, and each
runs in time linear in its input: tags are located with ``str.find`` (and a linear
regex scan for case-insensitive tags), never with a backtracking pattern, and only
the first :data:`MAX_RESPONSE_CHARS` characters of a response are read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

MAX_RESPONSE_CHARS = 262_144
"""Longest response prefix the parsers read (far above any generation budget: 256 Ki
characters is ~64k tokens); a longer response is parsed as if cut there."""
ALFWORLD_FALLBACK_CHARS = 30
WEBSHOP_FALLBACK_CHARS = 20
_CJK = re.compile("[\u4e00-\u9fff]")
_SEARCH_OPEN = re.compile(r"<search>", re.IGNORECASE)
_SEARCH_CLOSE = re.compile(r"</search>", re.IGNORECASE)
_ANSWER_OPEN = re.compile(r"<answer>", re.IGNORECASE)
_ANSWER_CLOSE = re.compile(r"</answer>", re.IGNORECASE)


@dataclass(frozen=True)
class ParsedAction:
    """The parser's verdict on one response.

    Attributes:
        action: the action to execute (the fallback when no action block was found).
        valid: whether the response followed the format.
        error: why it was invalid (None when valid).
        think: the reasoning text, when present.
    """

    action: str
    valid: bool
    error: str | None = None
    think: str | None = None


def _bounded(response: object) -> str:
    text = response if isinstance(response, str) else str(response)
    return text[:MAX_RESPONSE_CHARS]


def _think_text(text: str) -> str | None:
    """The text between the first ``<think>`` and the first ``</think>`` after it."""
    start = text.find("<think>")
    if start < 0:
        return None
    end = text.find("</think>", start + len("<think>"))
    return text[start + len("<think>"):end].strip() if end >= 0 else None


def parse_think_action(
    response: str, *, lowercase: bool = False, fallback_chars: int = ALFWORLD_FALLBACK_CHARS
) -> ParsedAction:
    """Parse the ``<think>…</think><action>…</action>`` format (see the module docstring)."""
    original = _bounded(response)
    text = original.lower() if lowercase else original
    think = _think_text(original)
    start, end = text.find("<action>"), text.find("</action>")
    if start < 0 or end < 0:
        tail = text[-fallback_chars:] if fallback_chars > 0 else ""
        return ParsedAction(tail, False, "missing <action> or </action>", think)
    # the reference slices between the first of each tag: a "</action>" before the
    # first "<action>" gives an empty action
    action = text[start + len("<action>"):end].strip()
    if original.find("<think>") < 0 or original.find("</think>") < 0:
        return ParsedAction(action, False, "missing <think> or </think>", think)
    if _CJK.search(original):
        return ParsedAction(action, False, "CJK characters in the response", think)
    return ParsedAction(action, True, None, think)


def _block(text: str, open_tag: re.Pattern[str], close_tag: re.Pattern[str]) -> str | None:
    """The content of the first ``<tag>…</tag>`` block (tags in any case), else None.

    The leftmost opening tag that has a closing tag after it is the first opening tag
    when that one has any closing tag after it, so one forward scan finds it.
    """
    m = open_tag.search(text)
    if m is None:
        return None
    c = close_tag.search(text, m.end())
    return text[m.end():c.start()] if c is not None else None


def parse_search_answer(response: str) -> ParsedAction:
    """Parse the ``<search>…</search>`` / ``<answer>…</answer>`` format (see the module docstring)."""
    original = _bounded(response)
    cut = original.find("</search>")
    if cut >= 0:
        trimmed = original[:cut + len("</search>")]
    else:
        cut = original.find("</answer>")
        trimmed = original[:cut + len("</answer>")] if cut >= 0 else original
    think = _think_text(original)
    query = _block(trimmed, _SEARCH_OPEN, _SEARCH_CLOSE)
    if query is not None:
        action = f"search[{query.strip()}]"
    else:
        answer = _block(trimmed, _ANSWER_OPEN, _ANSWER_CLOSE)
        if answer is None:
            return ParsedAction("", False, "neither <search>…</search> nor <answer>…</answer>", think)
        action = f"answer[{answer.strip()}]"
    n_search = sum(1 for _ in _SEARCH_OPEN.finditer(original))
    n_answer = sum(1 for _ in _ANSWER_OPEN.finditer(original))
    if n_search and n_answer:
        return ParsedAction(action, False, "both <search> and <answer>", think)
    if n_search > 1 or n_answer > 1:
        return ParsedAction(action, False, "repeated tag", think)
    return ParsedAction(action, True, None, think)


PARSERS: dict[str, Callable[[str], ParsedAction]] = {
    "think_action": parse_think_action,
    "think_action_lower": lambda r: parse_think_action(r, lowercase=True, fallback_chars=ALFWORLD_FALLBACK_CHARS),
    "think_action_webshop": lambda r: parse_think_action(r, lowercase=True, fallback_chars=WEBSHOP_FALLBACK_CHARS),
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
