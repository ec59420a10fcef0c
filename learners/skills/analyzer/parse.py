"""An analysis of one trajectory, and tolerant parsing of an analyzer model's answer.

The analyzer is asked for one JSON object (algorithms spec §2, step 2)::

    {"episode_summary": "...", "episode_skill": "...", "step_skills": {"3": "...", "7": "..."}}

Models wrap it in code fences, add prose before or after, leave trailing commas, use
int or string keys, write ``"step 3"``, give a list of ``{"step": 3, "skill": ...}``
objects, or get cut off by the token limit. :func:`parse_analysis` accepts all of
that; it keeps only step keys that are valid 0-based step indices of the trajectory,
keeps the first ``max_step_skills`` of them in the order given, and raises
:class:`AnalysisParseError` (with a reason the retry prompt can quote) when no usable
episode skill is found. It never raises anything else, whatever the text.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from typing import Any

MAX_SKILL_CHARS = 1200
"""Longer skills are cut (at a word boundary) before they go into a prompt."""

MAX_TEXT_CHARS = 200_000
"""Only this much of an answer is searched for the JSON object."""

_SUMMARY_KEYS = ("episode_summary", "summary", "episode_analysis")
_EPISODE_KEYS = ("episode_skill", "episode_level_skill", "episode_lesson", "skill", "lesson")
_STEP_KEYS = ("step_skills", "step_level_skills", "critical_steps", "step_advice", "steps")
_STEP_FIELDS = ("step", "step_index", "index", "t")
_ADVICE_FIELDS = ("skill", "advice", "step_skill", "text", "tip")
_STEP_KEY = re.compile(r"^\s*(?:(?:step|t)\s*[_#\-:]?\s*)?(\d{1,6})\s*$", re.IGNORECASE)
_FENCE = re.compile(r"```[a-zA-Z0-9_-]*[ \t]*\n?(.*?)(?:```|$)", re.DOTALL)
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")


class AnalysisParseError(ValueError):
    """The answer holds no usable analysis (the message says why)."""


@dataclass(frozen=True)
class Analysis:
    """The hindsight analysis of one trajectory.

    Attributes:
        episode_summary: a short account of what happened ("" when the analyzer gave none).
        episode_skill: the episode-level skill (never empty).
        step_skills: 0-based step index → one short piece of advice for that step; the
            keys are the trajectory's critical steps C_τ (at most K of them).
    """

    episode_summary: str
    episode_skill: str
    step_skills: dict[int, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"episode_summary": self.episode_summary, "episode_skill": self.episode_skill,
                "step_skills": {str(k): v for k, v in self.step_skills.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Analysis:
        return cls(str(data.get("episode_summary", "")), str(data["episode_skill"]),
                   {int(k): str(v) for k, v in dict(data.get("step_skills", {})).items()})


def clip_text(text: str, limit: int = MAX_SKILL_CHARS) -> str:
    """``text`` with runs of whitespace collapsed, cut to ``limit`` characters at a word."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0] or text[:limit]
    return cut + " …"


# ---------------------------------------------------------------- JSON search
def _balanced(text: str, start: int) -> str:
    """The JSON-ish object starting at ``text[start] == "{"``, closed if it was cut off."""
    stack: list[str] = []
    in_string = escaped = False
    for i in range(start, len(text)):
        ch = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]":
            if not stack or stack[-1] != ch:
                return text[start:i]  # mismatched: give up on this candidate (fails to load)
            stack.pop()
            if not stack:
                return text[start:i + 1]
    # the answer ended inside the object (token limit): close what is open
    tail = text[start:]
    if in_string:
        tail += '"'
    tail = tail.rstrip().rstrip(",").rstrip(":")
    return tail + "".join(reversed(stack))


def _candidates(text: str) -> list[str]:
    out = [m.group(1) for m in _FENCE.finditer(text)]
    out.append(text)
    starts = [m.start() for m in re.finditer(r"\{", text)][:32]
    out.extend(_balanced(text, s) for s in starts)
    seen: set[str] = set()
    return [c for c in out if c.strip() and not (c in seen or seen.add(c))]


def _loads(candidate: str) -> Any:
    text = candidate.strip().replace("\u201c", '"').replace("\u201d", '"')
    for attempt in (text, _TRAILING_COMMA.sub(r"\1", text)):
        try:
            return json.loads(attempt)
        except (ValueError, RecursionError):
            pass
    if len(text) < 50_000:
        try:  # Python-style dicts: single quotes, True/None
            return ast.literal_eval(_TRAILING_COMMA.sub(r"\1", text))
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            pass
    return None


def _norm_key(key: Any) -> str:
    return re.sub(r"[\s\-]+", "_", str(key).strip().lower())


def _pick(obj: dict[str, Any], names: tuple[str, ...]) -> Any:
    keys = {_norm_key(k): v for k, v in obj.items()}
    for name in names:
        if name in keys:
            return keys[name]
    return None


# ---------------------------------------------------------------- fields
def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return clip_text(value)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return clip_text(" ".join(value))
    if isinstance(value, dict):
        inner = _pick(value, _ADVICE_FIELDS)
        if isinstance(inner, str):
            return clip_text(inner)
    return ""


def _step_index(key: Any) -> int | None:
    if isinstance(key, bool):
        return None
    if isinstance(key, int):
        return key
    if isinstance(key, float) and key.is_integer():
        return int(key)
    if isinstance(key, str):
        m = _STEP_KEY.match(key)
        return int(m.group(1)) if m else None
    return None


def _step_items(value: Any) -> list[tuple[Any, Any]]:
    if isinstance(value, dict):
        return list(value.items())
    items: list[tuple[Any, Any]] = []
    if isinstance(value, (list, tuple)):
        for entry in value:
            if isinstance(entry, dict):
                items.append((_pick(entry, _STEP_FIELDS), entry))
            elif isinstance(entry, (list, tuple)) and len(entry) == 2:
                items.append((entry[0], entry[1]))
    return items


def analysis_from_object(obj: Any, num_steps: int, max_step_skills: int) -> Analysis:
    """Validate a decoded JSON object (see module docstring). Raises AnalysisParseError."""
    if not isinstance(obj, dict):
        raise AnalysisParseError(f"expected a JSON object, got {type(obj).__name__}")
    episode_skill = _as_text(_pick(obj, _EPISODE_KEYS))
    if not episode_skill:
        raise AnalysisParseError("the JSON object has no non-empty string field 'episode_skill'")
    summary = _as_text(_pick(obj, _SUMMARY_KEYS))
    steps: dict[int, str] = {}
    for key, advice in _step_items(_pick(obj, _STEP_KEYS)):
        if len(steps) >= max_step_skills:
            break
        index = _step_index(key)
        text = _as_text(advice)
        if index is None or not (0 <= index < num_steps) or index in steps or not text:
            continue
        steps[index] = text
    return Analysis(summary, episode_skill, steps)


def parse_analysis(text: Any, num_steps: int, max_step_skills: int) -> Analysis:
    """Parse an analyzer's answer for a trajectory of ``num_steps`` steps.

    Raises:
        AnalysisParseError: no JSON object with a usable episode skill was found.
    """
    if not isinstance(text, str):
        raise AnalysisParseError(f"the answer is not text ({type(text).__name__})")
    text = text[:MAX_TEXT_CHARS].lstrip("\ufeff")
    if not text.strip():
        raise AnalysisParseError("the answer is empty")
    first_error: str | None = None
    for candidate in _candidates(text):
        obj = _loads(candidate)
        if not isinstance(obj, dict):
            continue
        try:
            return analysis_from_object(obj, num_steps, max_step_skills)
        except AnalysisParseError as exc:
            first_error = first_error or str(exc)
    raise AnalysisParseError(first_error or "no JSON object found in the answer")
