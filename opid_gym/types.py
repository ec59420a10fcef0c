"""Records that flow through the gym: one step, one trajectory, one group.

A *step* is what the agent saw (the rendered prompt), what it said (the response, with
token ids and sampler log-probs when a model produced it), what the parser made of it
(the environment action and whether the response was well formed) and what the
environment answered. A *trajectory* is one episode; a *group* is the G trajectories of
one task rolled out with the same seed, which group-relative learners compare.

Everything here is plain data (dataclasses of built-in types) so it pickles across
worker processes and round-trips through JSON (`to_dict` / `from_dict`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

Message = dict[str, str]
"""A chat message: ``{"role": "system"|"user"|"assistant", "content": str}``."""


@dataclass
class Step:
    """One agent decision and the environment's answer to it.

    Attributes:
        index: 0-based step number inside the episode.
        observation: the environment text the agent was answering (before acting).
        prompt: the chat messages given to the agent (the history manager's output).
        response: the agent's raw text.
        action: the environment action that was executed (the parsed action, or the
            family's fallback when the response was malformed).
        valid: whether the response followed the action format (False = invalid step,
            penalised by learners).
        next_observation: what the environment answered.
        reward: the environment reward for this step (learner scale, e.g. 10 on success).
        terminated: the task ended (solved, or the agent ended it, e.g. bought/answered).
        truncated: the step limit cut the episode off.
        info: the environment's info after the step (JSON-able subset).
        expert_action: the environment expert's action for the state this step acted in,
            recorded only when the rollout asked the environments for it (a scripted
            expert agent, a learner whose ``needs_expert`` is True), else None.
        prompt_token_ids / response_token_ids / response_logprobs: set when a model
            produced the response; log-probs are the sampler's, one per response token.
    """

    index: int
    observation: str
    prompt: list[Message]
    response: str
    action: str
    valid: bool
    next_observation: str
    reward: float
    terminated: bool
    truncated: bool
    info: dict[str, Any] = field(default_factory=dict)
    prompt_token_ids: list[int] | None = None
    response_token_ids: list[int] | None = None
    response_logprobs: list[float] | None = None
    parse_error: str | None = None
    expert_action: str | None = None

    @property
    def prompt_text(self) -> str:
        """The content of the last user message: the per-step prompt h_t."""
        for message in reversed(self.prompt):
            if message["role"] == "user":
                return message["content"]
        return ""


@dataclass
class Trajectory:
    """One episode of one task.

    ``won`` is the environment's success flag at the end. ``error`` is set when the
    episode could not finish because its environment failed (a crashed or hung worker
    process); such episodes count as failures-by-error, reported apart from ordinary
    failures, and learners skip them.
    """

    traj_id: str
    env_id: str
    task_index: int
    task_id: str
    task_type: str
    task: str
    seed: int
    group_id: str
    member: int
    steps: list[Step] = field(default_factory=list)
    won: bool = False
    terminated: bool = False
    truncated: bool = False
    error: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    expert_plan: list[str] | None = None

    @property
    def total_reward(self) -> float:
        return float(sum(step.reward for step in self.steps))

    @property
    def length(self) -> int:
        return len(self.steps)

    @property
    def invalid_steps(self) -> int:
        return sum(1 for step in self.steps if not step.valid)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trajectory:
        data = dict(data)
        data["steps"] = [Step(**step) for step in data.get("steps", [])]
        return cls(**data)
