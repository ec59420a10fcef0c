"""Benchmarks: an environment split plus the protocol that makes its numbers comparable.

A benchmark id such as ``alfworld-unseen`` names the evaluation environment, the exact
task list (all tasks of the split, each once, in the split's fixed order), the step limit,
the history manager and length, the validation sampling settings and the number of
seeds. Two results are comparable only when their protocols are identical; see
``benchmarks/protocols.py`` for the protocol hash.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Benchmark:
    """One benchmark protocol.

    Attributes:
        name: the id users type (``alfworld-unseen``).
        env_id: the Gymnasium id of the evaluation split.
        train_env_id: the Gymnasium id of the training split (None: not trainable).
        max_steps: the episode step limit (reaching it = truncated).
        history: history manager name (``window``, ``budget``, ``chat``).
        history_length: past (observation, action) pairs shown.
        temperature / top_p / max_new_tokens: validation sampling.
        max_prompt_tokens: prompts are left-truncated to this many tokens.
        num_seeds: evaluation repeats per task (each with its own seed).
        invalid_penalty: c_inv, the invalid-action penalty learners use.
        overall: ``episodes`` (success over all episodes) or ``types`` (mean over task
            types, as search QA reports its average over data sets).
        env_kwargs: extra constructor arguments of the evaluation env.
        version: bumped by hand when the protocol's meaning changes.
    """

    name: str
    env_id: str
    train_env_id: str | None
    max_steps: int
    description: str = ""
    history: str = "window"
    history_length: int = 2
    temperature: float = 0.4
    top_p: float = 1.0
    max_new_tokens: int = 512
    max_prompt_tokens: int = 2048
    num_seeds: int = 1
    invalid_penalty: float = 0.1
    overall: str = "episodes"
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    train_env_kwargs: dict[str, Any] = field(default_factory=dict)
    version: str = "1"

    def with_overrides(self, **changes: Any) -> Benchmark:
        return replace(self, **changes)

    def eval_env_kwargs(self) -> dict[str, Any]:
        return {"max_steps": self.max_steps, **self.env_kwargs}

    def train_kwargs(self) -> dict[str, Any]:
        return {"max_steps": self.max_steps, **self.train_env_kwargs}

    def validation_sampling(self) -> dict[str, Any]:
        """The protocol's validation sampling settings: ``SamplingParams`` fields, also the
        options of a model agent (``temperature``, ``top_p``, token limits)."""
        return {"temperature": self.temperature, "top_p": self.top_p, "max_new_tokens": self.max_new_tokens,
                "max_prompt_tokens": self.max_prompt_tokens}
