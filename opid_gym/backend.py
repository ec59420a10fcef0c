"""What learners and the training loop need from a model, as small typed protocols.

Three capabilities, each a :class:`typing.Protocol` so any backend can provide any
subset (``agents/`` holds the implementations: transformers, vLLM, OpenAI-compatible):

* :class:`Generator` — sample responses for many prompts at once, with per-request seeds
  and the sampler's per-token log-probs.
* :class:`Scorer` — log-probs of *given* response tokens under *given* prompt tokens, no
  gradient (OPID, SDAR and RLSD score the same response under a second prompt).
* :class:`TrainablePolicy` — the torch model being optimised: tokenisation with the chat
  template, log-probs (and entropies) with gradients, and its parameters.

A rollout engine that is not the trainer (vLLM) also implements :class:`WeightSync`;
after each update the loop pushes the new weights and the engine's drift check compares
its log-probs with the trainer's on a fixed probe batch (:class:`WeightSyncError` when
they disagree: never train on stale weights silently).

Shapes: ``B`` = number of (prompt, response) pairs, ``L`` = the longest response in
tokens. Padded positions of per-token tensors are 0 and masked out by ``mask``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Protocol, Sequence, runtime_checkable

from opid_gym.types import Message

if TYPE_CHECKING:  # torch stays an optional dependency of the core
    import torch


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. ``seeds`` are given per request to :meth:`Generator.generate`."""

    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 512
    stop: tuple[str, ...] = ()
    max_prompt_tokens: int | None = None
    """Prompts longer than this are left-truncated (their oldest tokens dropped)."""


@dataclass
class Generation:
    """One sampled response.

    ``logprobs[i]`` is the sampler's log-prob of ``token_ids[i]`` under the sampling
    distribution's *unmodified* model distribution (temperature 1, no top-p), which is
    what PPO ratios need. ``prompt_token_ids`` are the exact tokens the model saw
    (chat template applied, truncation done).
    """

    text: str
    prompt_token_ids: list[int]
    token_ids: list[int]
    logprobs: list[float]
    finish_reason: str = "stop"
    prompt_truncated: bool = False


@dataclass
class Usage:
    """Token usage of remote calls (OpenAI-compatible APIs)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0
    failures: int = 0
    seconds: float = 0.0


@runtime_checkable
class Generator(Protocol):
    def generate(
        self, prompts: Sequence[list[Message]], params: SamplingParams, seeds: Sequence[int] | None = None
    ) -> list[Generation]:
        """Sample one response per prompt; ``seeds[i]`` alone decides prompt i's randomness."""
        ...


@runtime_checkable
class Scorer(Protocol):
    def score(
        self, prompt_ids: Sequence[Sequence[int]], response_ids: Sequence[Sequence[int]]
    ) -> list[list[float]]:
        """log π(response token | prompt, previous response tokens) for each pair, no gradient."""
        ...


@dataclass
class TokenLogprobs:
    """Per-token results of a forward pass over B (prompt, response) pairs.

    Attributes:
        logprobs: [B, L] log π(y_l | x, y_<l), 0 at padding.
        mask: [B, L] float, 1 for real response tokens.
        entropy: [B, L] entropy of the full next-token distribution (None if not asked).
    """

    logprobs: torch.Tensor
    mask: torch.Tensor
    entropy: torch.Tensor | None = None


@runtime_checkable
class TrainablePolicy(Protocol):
    """The model the loop optimises (a torch module behind a tokenizer)."""

    @property
    def module(self) -> torch.nn.Module: ...

    def encode_chat(self, messages: list[Message], max_prompt_tokens: int | None = None) -> tuple[list[int], bool]:
        """Chat-template + tokenise; left-truncate to ``max_prompt_tokens``. Returns (ids, truncated)."""
        ...

    def forward_logprobs(
        self, prompt_ids: Sequence[Sequence[int]], response_ids: Sequence[Sequence[int]], *, entropy: bool = False
    ) -> TokenLogprobs:
        """Log-probs of the response tokens WITH gradients (call under no_grad to score)."""
        ...


class BackendError(RuntimeError):
    """A model backend failed for good (an API after its retries, an engine): the CLI prints it as one line."""


class WeightSyncError(RuntimeError):
    """The rollout engine's log-probs disagree with the trainer's after a weight load."""


class SyncReport(Protocol):
    """What a weight load may report: how far the engine's log-probs are from the
    trainer's on a probe batch (``agents/drift.py``'s ``DriftReport``)."""

    @property
    def mean_abs(self) -> float: ...

    @property
    def max_abs(self) -> float: ...


@runtime_checkable
class WeightSync(Protocol):
    def load_weights(self, named_tensors: Iterable[tuple[str, Any]]) -> SyncReport | None:
        """Replace the engine's weights (names as in the trainer's ``state_dict``); returns
        the engine's drift check where it runs one (None: no check)."""
        ...


@runtime_checkable
class Releasable(Protocol):
    """A rollout engine that can free its accelerator memory during the update (a
    colocated engine); the next weight load wakes it."""

    def release(self) -> None: ...


@runtime_checkable
class Closeable(Protocol):
    """A rollout engine to shut down when the run ends (while the process group exists)."""

    def close(self) -> None: ...
