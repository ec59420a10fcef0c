"""Any :class:`~opid_gym.backend.Generator` as an :class:`~opid_gym.agent.Agent`.

The rollout hands the agent a batch of requests (one per running episode); the model
agent generates one response per request with that request's seed and returns the text
together with the exact prompt tokens, response tokens and sampler log-probs, which the
training loop stores in each :class:`~opid_gym.types.Step`. Every model backend
(transformers, vLLM, OpenAI-compatible) uses this one adapter.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from opid_gym.agent import AgentReply, AgentRequest
from opid_gym.backend import Generator, SamplingParams
from opid_gym.registry import UnknownNameError


class AgentOptionError(UnknownNameError):
    """An option the agent does not know (printed by the CLI as one line, exit code 2)."""


class ModelAgent:
    """Answers each request by sampling from a Generator with the request's seed.

    Attributes:
        generator: the backend (also reachable by the training loop, e.g. an HFPolicy).
        params: the sampling settings used for every call (change with :meth:`with_params`).
    """

    needs_expert = False

    def __init__(self, generator: Generator, params: SamplingParams, name: str = "model") -> None:
        self.generator = generator
        self.params = params
        self.name = name

    def with_params(self, params: SamplingParams) -> ModelAgent:
        """The same backend with other sampling settings (training vs validation temperature)."""
        return ModelAgent(self.generator, params, self.name)

    def act(self, requests: Sequence[AgentRequest]) -> list[AgentReply]:
        if not requests:
            return []
        gens = self.generator.generate([r.messages for r in requests], self.params, seeds=[r.seed for r in requests])
        return [AgentReply(g.text, list(g.prompt_token_ids), list(g.token_ids), list(g.logprobs)) for g in gens]


def split_options(options: dict[str, Any], sampling_keys: Iterable[str],
                  backend_keys: Iterable[str]) -> tuple[SamplingParams, dict[str, Any]]:
    """Split agent options into SamplingParams and backend options; unknown keys are an error."""
    sampling_keys, backend_keys = list(sampling_keys), list(backend_keys)
    unknown = sorted(set(options) - set(sampling_keys) - set(backend_keys))
    if unknown:
        raise AgentOptionError(
            f"unknown agent option(s) {', '.join(unknown)}; known: {', '.join(sampling_keys + backend_keys)}"
        )
    sampling = {k: options[k] for k in sampling_keys if k in options and options[k] is not None}
    if "stop" in sampling:
        stop = sampling["stop"]
        sampling["stop"] = (stop,) if isinstance(stop, str) else tuple(stop)
    for key, kind in (("temperature", float), ("top_p", float), ("max_new_tokens", int), ("max_prompt_tokens", int)):
        if key in sampling:
            try:
                sampling[key] = kind(sampling[key])
            except (TypeError, ValueError):
                raise AgentOptionError(f"agent option {key} must be a number, got {sampling[key]!r}") from None
    return SamplingParams(**sampling), {k: v for k, v in options.items() if k in backend_keys}
