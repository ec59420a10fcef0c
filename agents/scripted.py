"""Scripted agents that check environments. They are not baselines.

* ``random``: a uniformly random admissible action (seeded per episode step).
* ``expert``: the environment's expert plan (ALFWorld's walkthrough, WebShop's
  goal-product path, search QA's gold answer).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from opid_gym.agent import AgentReply, AgentRequest
from opid_gym.parsing import format_action


class RandomAgent:
    name = "random"
    needs_expert = False

    def __init__(self, **_: object) -> None:
        pass

    def act(self, requests: Sequence[AgentRequest]) -> list[AgentReply]:
        replies = []
        for req in requests:
            rng = np.random.default_rng(req.seed)
            actions = req.admissible_actions or ["look"]
            action = actions[int(rng.integers(len(actions)))]
            replies.append(AgentReply(format_action(action, req.action_format, "random choice")))
        return replies


def expert_reasoning(action: str, plan: Sequence[str] | None) -> str:
    """The reasoning of an expert step: the sub-goal its plan pursues, nothing else.

    It states only what the plan says (the next action and, when that action only moves
    there, the action it moves there for; whether it finishes the plan) and never
    describes what the agent has observed, so a model trained on it learns no made-up
    observations. ``plan``: the expert's remaining plan, ``action`` first (None: unknown).
    """
    rest = list(plan or [])
    if not rest or rest[0] != action:
        return f"The expert plan's next step: {action}."
    following = rest[1] if len(rest) > 1 else None
    if action.startswith("go to ") and following is not None and not following.startswith("go to "):
        text = f"Sub-goal: {following}. First {action}."
    else:
        text = f"Sub-goal: {action}."
    if len(rest) == 1:
        text += " It completes the plan."
    return text


class ExpertAgent:
    """Follows the environment's expert plan; the reasoning states the sub-goal it pursues
    (:func:`expert_reasoning`)."""

    name = "expert"
    needs_expert = True

    def __init__(self, **_: object) -> None:
        pass

    def act(self, requests: Sequence[AgentRequest]) -> list[AgentReply]:
        replies = []
        for req in requests:
            action = req.expert_action
            if action is None:  # the plan no longer applies: fall back to a harmless action
                actions = req.admissible_actions or ["look"]
                action = "look" if "look" in actions else actions[0]
                think = "The expert plan no longer applies; I look around."
            else:
                think = expert_reasoning(action, req.info.get("expert_plan_rest"))
            replies.append(AgentReply(format_action(action, req.action_format, think)))
        return replies
