"""History managers: build the per-step prompt from the episode so far.

Every environment family owns a :class:`PromptTemplate` (its wording). A history
manager decides *which* past turns go into the prompt and how they are laid out:

* :class:`WindowHistory` (``"window"``, the default of the reference setup): one user
  message with the task, the last H (observation, action) pairs, the step counter, the
  current observation, the admissible actions and the instruction to think and act.
* :class:`ChatHistory` (``"chat"``): the whole episode as alternating user/assistant
  messages (assistant turns hold only the action, never past reasoning).
* :class:`TokenBudgetHistory` (``"budget"``): like the window, but as many of the most
  recent pairs as fit a token budget.

Past reasoning is never repeated; only actions and observations are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

from opid_gym.types import Message


@dataclass(frozen=True)
class PromptTemplate:
    """The wording of one environment family's prompt.

    Fields are ``str.format`` templates. ``task_line`` must end the block after which an
    episode-level skill is inserted; ``instruction`` is the final instruction to act,
    before which a step-level skill is inserted (see ``learners/skills``).
    """

    intro: str
    task_line: str
    history_header: str
    turn: str
    current: str
    first_current: str
    admissible: str
    instruction: str
    system: str | None = None
    separator: str = "\n"
    admissible_item: str = "'{action}'"
    """How one admissible action is written in the ``admissible`` block."""
    admissible_separator: str = ", "
    """What goes between two admissible actions (``"\\n "``: one per line, ALFWorld's layout)."""
    first_step_task_line: bool = True
    """False when the first observation itself ends with the task (ALFWorld): the first
    step's prompt then has no separate task line, as in the reference."""
    max_prompt_chars: int | None = None
    """When a prompt with history is longer than this (characters), the history-free
    prompt is used instead (the reference's WebShop rule, 20000)."""
    history_actions: str | None = None
    """How past actions are shown: None = the environment action as executed
    (``go to desk 1``); an action-format name (``search_answer``) = as the model writes
    it (``<search>q</search>``), for families whose env actions differ from the tags."""

    def render_task(self, task: str) -> str:
        return self.task_line.format(task=task)

    def show_action(self, action: str) -> str:
        if self.history_actions is None:
            return action
        from opid_gym.parsing import action_tag

        return action_tag(action, self.history_actions)


@dataclass
class EpisodeView:
    """What a history manager may look at when it renders the prompt for a step."""

    task: str
    observation: str
    step: int
    history: Sequence[tuple[str, str]] = field(default_factory=list)
    """Past (observation, action) pairs, oldest first: the observation the agent saw
    at step i and the action it took."""
    admissible_actions: Sequence[str] | None = None


class HistoryManager(Protocol):
    name: str

    def render(self, template: PromptTemplate, view: EpisodeView) -> list[Message]: ...


def _admissible_block(template: PromptTemplate, actions: Sequence[str] | None) -> str | None:
    if not actions:
        return None
    listed = template.admissible_separator.join(template.admissible_item.format(action=a) for a in actions)
    return template.admissible.format(actions=listed)


def _task_line(template: PromptTemplate, view: EpisodeView) -> str | None:
    """The task line, except at the first step of a family whose first observation holds the task."""
    if view.step == 0 and not template.first_step_task_line:
        return None
    return template.render_task(view.task)


def _single_message(
    template: PromptTemplate, view: EpisodeView, pairs: Sequence[tuple[int, str, str]]
) -> list[Message]:
    messages = _single_message_unbounded(template, view, pairs)
    limit = template.max_prompt_chars
    if pairs and limit is not None and len(messages[-1]["content"]) > limit:
        return _single_message_unbounded(template, view, [])
    return messages


def _single_message_unbounded(
    template: PromptTemplate, view: EpisodeView, pairs: Sequence[tuple[int, str, str]]
) -> list[Message]:
    parts = [template.intro, _task_line(template, view)]
    if pairs:
        parts.append(template.history_header.format(n=view.step, k=len(pairs)))
        parts.extend(template.turn.format(i=i + 1, observation=o, action=template.show_action(a)) for i, o, a in pairs)
        parts.append(template.current.format(step=view.step + 1, observation=view.observation))
    else:
        parts.append(template.first_current.format(step=view.step + 1, observation=view.observation))
    adm = _admissible_block(template, view.admissible_actions)
    if adm:
        parts.append(adm)
    parts.append(template.instruction)
    messages: list[Message] = []
    if template.system:
        messages.append({"role": "system", "content": template.system})
    messages.append({"role": "user", "content": template.separator.join(p for p in parts if p)})
    return messages


@dataclass
class WindowHistory:
    """The last ``length`` (observation, action) pairs in one user message."""

    length: int = 2
    name: str = "window"

    def render(self, template: PromptTemplate, view: EpisodeView) -> list[Message]:
        start = max(0, len(view.history) - self.length) if self.length > 0 else len(view.history)
        pairs = [(i, o, a) for i, (o, a) in enumerate(view.history) if i >= start]
        return _single_message(template, view, pairs)


@dataclass
class TokenBudgetHistory:
    """As many of the most recent pairs as fit ``budget`` tokens (``count`` counts them).

    ``count`` defaults to a 4-characters-per-token estimate; pass a tokenizer's length
    function for exact budgets.
    """

    budget: int = 1024
    count: Callable[[str], int] = lambda text: (len(text) + 3) // 4
    name: str = "budget"

    def render(self, template: PromptTemplate, view: EpisodeView) -> list[Message]:
        chosen: list[tuple[int, str, str]] = []
        used = 0
        for i in range(len(view.history) - 1, -1, -1):
            o, a = view.history[i]
            cost = self.count(template.turn.format(i=i + 1, observation=o, action=template.show_action(a)))
            if used + cost > self.budget:
                break
            used += cost
            chosen.append((i, o, a))
        return _single_message(template, view, list(reversed(chosen)))


@dataclass
class ChatHistory:
    """The whole episode as a chat: user turns carry observations, assistant turns actions."""

    name: str = "chat"

    def render(self, template: PromptTemplate, view: EpisodeView) -> list[Message]:
        messages: list[Message] = []
        if template.system:
            messages.append({"role": "system", "content": template.system})
        first_obs = view.history[0][0] if view.history else view.observation
        first = EpisodeView(task=view.task, observation=first_obs, step=0)
        head = [p for p in (template.intro, _task_line(template, first),
                            template.first_current.format(step=1, observation=first_obs)) if p]
        if not view.history:
            adm = _admissible_block(template, view.admissible_actions)
            messages.append({"role": "user", "content": template.separator.join(
                p for p in [*head, adm, template.instruction] if p)})
            return messages
        messages.append({"role": "user", "content": template.separator.join(head)})
        for i, (_, action) in enumerate(view.history):
            shown = template.show_action(action) if template.history_actions else f"<action>{action}</action>"
            messages.append({"role": "assistant", "content": shown})
            obs = view.history[i + 1][0] if i + 1 < len(view.history) else view.observation
            body = [template.current.format(step=i + 2, observation=obs)]
            if i + 1 == len(view.history):
                adm = _admissible_block(template, view.admissible_actions)
                body += [adm, template.instruction]
            messages.append({"role": "user", "content": template.separator.join(p for p in body if p)})
        return messages


def make_history(name: str, **kwargs) -> HistoryManager:
    """Build a history manager by name: ``window`` (``length``), ``budget`` (``budget``), ``chat``."""
    factories = {"window": WindowHistory, "budget": TokenBudgetHistory, "chat": ChatHistory}
    if name not in factories:
        raise KeyError(f"unknown history manager {name!r}; known: {sorted(factories)}")
    return factories[name](**kwargs)
