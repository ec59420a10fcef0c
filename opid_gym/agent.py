"""The agent interface the rollout talks to.

An agent answers a batch of requests (one per running episode) with one text response
each. Scripted agents read the environment's info (admissible actions, the expert's
next action); model agents read the chat messages. Both produce a response in the
family's action format, so every agent goes through the same parser.

Reproducibility: each request carries ``seed`` = a hash of (run seed, task, group
member, step). An agent that samples must draw only from that seed, so an episode's
result does not depend on which other episodes share its batch.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

from opid_gym.types import Message


@dataclass
class AgentRequest:
    """One episode's turn.

    Attributes:
        messages: the prompt (history manager output).
        seed: per-(episode, step) seed; see module docstring.
        step: 0-based step index.
        observation: current environment text.
        admissible_actions: the environment's admissible actions, if it has them.
        expert_action: the environment expert's next action (only when the agent asked
            for it with ``needs_expert``), else None.
        action_format: the family's response format (``think_action``, ...).
        info: the environment's last info dict.
    """

    messages: list[Message]
    seed: int
    step: int
    observation: str
    admissible_actions: list[str] | None
    expert_action: str | None
    action_format: str
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class AgentReply:
    """One response. Token ids and log-probs are set by model agents."""

    text: str
    prompt_token_ids: list[int] | None = None
    token_ids: list[int] | None = None
    logprobs: list[float] | None = None
    error: str | None = None
    """Set when the model backend failed for this request (the text is then empty): the
    episode ends as failed-by-error (retried, never scored as the agent's failure)."""


class Agent(Protocol):
    name: str
    needs_expert: bool

    def act(self, requests: Sequence[AgentRequest]) -> list[AgentReply]: ...


def derive_seed(*parts: object) -> int:
    """A stable 63-bit seed from any parts (independent of Python's hash salt)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def make_agent(spec: str, **options: Any) -> Agent:
    """Build an agent from ``random``, ``expert``, ``hf:<model>``, ``vllm:<model>``, ``openai:<model>``.

    ``options`` go to the agent's constructor (sampling settings, API options...).
    """
    import opid_gym
    from opid_gym import builtin
    from opid_gym.registry import UnknownNameError, load_object, suggest

    prefix, sep, rest = spec.partition(":")
    if sep and prefix in builtin.AGENT_PREFIXES:
        factory = load_object(builtin.AGENT_PREFIXES[prefix][0])
        return factory(rest, **options)
    if spec in opid_gym.AGENTS:
        return opid_gym.AGENTS.get(spec)(**options)
    known = opid_gym.AGENTS.names() + [f"{p}:<model>" for p in builtin.AGENT_PREFIXES]
    raise UnknownNameError(f"unknown agent {spec!r}." + suggest(spec, known))
