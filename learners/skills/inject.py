"""Skill injection: the prompt the policy saw, plus one headed skill block.

Algorithms spec §2 step 4: the skill-augmented prompt h̃_t is built from exactly the
prompt text h_t the policy saw (the last user message of the step's chat messages;
any system message and earlier turns are kept unchanged), with one extra block.

A block has the reference code's structure (``jinyangwu/OPID``, ``opid/prompting.py``)
in the project's own words: a bold heading line, a one-line instruction on how to use
the skill ending in a colon, and the skill in square brackets; it stands apart from
the text around it by one blank line on each side::

    **Episode lesson**
    Keep this lesson from an earlier attempt at this task in mind for every action you choose in this episode:
    [<episode skill>]

Placement (as the reference's):

* an **episode skill** goes after the line that states the task. Where the current
  observation itself restates the task (ALFWorld's first step: the game's opening text
  ends with ``Your task is to: …``), that is the observation's task line; otherwise the
  first task line of the prompt (the family template's ``task_line`` under the intro);
* a **step skill** goes right before the final instruction to act (the template's
  ``instruction``, its last occurrence).

Whitespace next to the insertion point is normalised to exactly one blank line on each
side of the block (the reference strips and re-joins the same way); every other byte
of the prompt is kept. When the anchor is missing (a rewritten prompt, a chat-history
layout whose last message has no task line) the block goes before the instruction
instead (an episode skill), or at the end (either); :class:`Injected` says whether the
anchor was found so callers can count misses. Tokenising (same chat template, left
truncation to the prompt limit) is the caller's business (``StepContext.encode_chat``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from opid_gym.history import PromptTemplate
from opid_gym.types import Message

EPISODE_HEADING = "**Episode lesson**"
EPISODE_USE = "Keep this lesson from an earlier attempt at this task in mind for every action you choose in this episode"
STEP_HEADING = "**Advice for this step**"
STEP_USE = "Apply this advice to the decision you make now, and to this decision only"
BLANK = "\n\n"

Kind = Literal["episode", "step"]


def skill_block(kind: Kind, skill: str) -> str:
    """The headed block of one skill: heading, one-line use instruction, ``[skill]``."""
    heading, use = (EPISODE_HEADING, EPISODE_USE) if kind == "episode" else (STEP_HEADING, STEP_USE)
    return f"{heading}\n{use}:\n[{skill.strip()}]"


@dataclass(frozen=True)
class Injected:
    """An augmented prompt text; ``anchored`` is False when the fallback position was used."""

    text: str
    anchored: bool


def _join(text: str, at: int, block: str) -> str:
    """``block`` inserted at ``at`` with exactly one blank line on each side."""
    prefix, suffix = text[:at].rstrip(), text[at:].lstrip()
    if not prefix:
        return block + BLANK + suffix
    if not suffix:
        return prefix + BLANK + block
    return prefix + BLANK + block + BLANK + suffix


def _task_line_end(text: str, template: PromptTemplate, task: str, observation: str | None) -> int:
    """Where the line that states the task ends (-1: no such line)."""
    line = template.render_task(task) if task else ""
    if not line:
        return -1
    start = 0
    if observation and line in observation:  # the observation restates the task: anchor on its line
        at = text.rfind(observation)
        start = at if at >= 0 else 0
    pos = text.find(line, start)
    if pos < 0:
        pos = text.find(line)
    if pos < 0:
        return -1
    end = text.find("\n", pos + len(line))
    return len(text) if end < 0 else end


def insert_episode_skill(text: str, template: PromptTemplate, task: str, skill: str,
                         observation: str | None = None) -> Injected:
    """``text`` with the episode-skill block after the task line (see module docstring).

    ``observation``: the step's current observation; when it restates the task, the
    block goes after that restatement (ALFWorld's first step).
    """
    block = skill_block("episode", skill)
    end = _task_line_end(text, template, task, observation)
    if end >= 0:
        return Injected(_join(text, end, block), True)
    return Injected(_before_instruction(text, template, block).text, False)


def insert_step_skill(text: str, template: PromptTemplate, skill: str) -> Injected:
    """``text`` with the step-skill block before the final instruction to act."""
    return _before_instruction(text, template, skill_block("step", skill))


def _before_instruction(text: str, template: PromptTemplate, block: str) -> Injected:
    pos = text.rfind(template.instruction) if template.instruction else -1
    if pos >= 0:
        return Injected(_join(text, pos, block), True)
    return Injected(_join(text, len(text), block), False)


def inject_skill(messages: list[Message], template: PromptTemplate, task: str, kind: Kind,
                 skill: str, observation: str | None = None) -> tuple[list[Message], bool]:
    """A copy of ``messages`` whose last user message carries the skill block.

    Returns (messages, anchored). Messages without a user message get one user
    message holding only the block (anchored False).
    """
    out = [dict(m) for m in messages]
    for i in range(len(out) - 1, -1, -1):
        if out[i].get("role") == "user":
            text = out[i]["content"]
            done = (insert_episode_skill(text, template, task, skill, observation) if kind == "episode"
                    else insert_step_skill(text, template, skill))
            out[i]["content"] = done.text
            return out, done.anchored
    return out + [{"role": "user", "content": skill_block(kind, skill)}], False
