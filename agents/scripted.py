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


class ExpertAgent:
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
            replies.append(AgentReply(format_action(action, req.action_format, "following the expert plan")))
        return replies
