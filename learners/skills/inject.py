"""Skill injection: the prompt the policy saw, plus one section with a skill.

Algorithms spec §2 step 4: the skill-augmented prompt h̃_t is built from exactly the
prompt text h_t the policy saw (the last user message of the step's chat messages;
any system message and earlier turns are kept unchanged), with one extra section:

* an **episode skill** goes right after the task line (the family template's
  ``task_line`` rendered with the task: its first occurrence, which in every family
  layout is the line under the intro, before observations that may repeat it);
* a **step skill** goes right before the final instruction to act (the template's
  ``instruction``, its last occurrence).

Sections are joined with the template's separator, so the rest of the text keeps its
bytes. When the anchor is missing (a rewritten prompt, a chat-history layout whose
last message has no task line) the section goes before the instruction instead (an
episode skill), or at the end (either); :class:`Injected` says whether the anchor was
found so callers can count misses. Tokenising (same chat template, left truncation
to the prompt limit) is the caller's business (``StepContext.encode_chat``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from opid_gym.history import PromptTemplate
from opid_gym.types import Message

EPISODE_SECTION = "Lesson from a finished attempt at this task: {skill}"
STEP_SECTION = "Advice for this step: {skill}"

Kind = Literal["episode", "step"]


@dataclass(frozen=True)
class Injected:
    """An augmented prompt text; ``anchored`` is False when the fallback position was used."""

    text: str
    anchored: bool


def insert_episode_skill(text: str, template: PromptTemplate, task: str, skill: str) -> Injected:
    """``text`` with the episode-skill section after the task line (see module docstring)."""
    section = EPISODE_SECTION.format(skill=skill)
    sep = template.separator
    line = template.render_task(task)
    pos = text.find(line) if line else -1
    if pos >= 0:
        end = pos + len(line)
        return Injected(text[:end] + sep + section + text[end:], True)
    return Injected(_before_instruction(text, template, section).text, False)


def insert_step_skill(text: str, template: PromptTemplate, skill: str) -> Injected:
    """``text`` with the step-skill section before the final instruction to act."""
    return _before_instruction(text, template, STEP_SECTION.format(skill=skill))


def _before_instruction(text: str, template: PromptTemplate, section: str) -> Injected:
    sep = template.separator
    pos = text.rfind(template.instruction) if template.instruction else -1
    if pos >= 0:
        return Injected(text[:pos] + section + sep + text[pos:], True)
    return Injected(text + sep + section, False)


def inject_skill(messages: list[Message], template: PromptTemplate, task: str, kind: Kind,
                 skill: str) -> tuple[list[Message], bool]:
    """A copy of ``messages`` whose last user message carries the skill section.

    Returns (messages, anchored). Messages without a user message get one user
    message holding only the section (anchored False).
    """
    out = [dict(m) for m in messages]
    for i in range(len(out) - 1, -1, -1):
        if out[i].get("role") == "user":
            text = out[i]["content"]
            done = (insert_episode_skill(text, template, task, skill) if kind == "episode"
                    else insert_step_skill(text, template, skill))
            out[i]["content"] = done.text
            return out, done.anchored
    section = (EPISODE_SECTION if kind == "episode" else STEP_SECTION).format(skill=skill)
    return out + [{"role": "user", "content": section}], False
