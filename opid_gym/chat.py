"""The chat-client seam: how code outside ``agents/`` reaches an OpenAI-compatible API.

Learners (e.g. OPID's hindsight analyzer) need a chat client but must not import the
``agents`` package (the dependency direction is one way, see the house style). They
type against :class:`ChatClient` and get one from :func:`make_chat_client`, which loads
the implementation named in :data:`opid_gym.builtin.CHAT_CLIENT` lazily.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

from opid_gym.types import Message


class ChatReply(Protocol):
    """One completed chat request."""

    text: str
    prompt_tokens: int
    completion_tokens: int


class ChatClient(Protocol):
    """Chat completions against one OpenAI-compatible endpoint."""

    def chat_many(
        self, batch: Sequence[Sequence[Message]], *, seeds: Sequence[int | None] | None = None, **params: Any
    ) -> Sequence[ChatReply | Exception]:
        """One reply (or the error that stopped it) per conversation, in order; never raises
        for a failed request."""
        ...


def make_chat_client(
    *, base_url: str, model: str, api_key: str | None = None, timeout: float = 60.0, max_retries: int = 4,
    concurrency: int = 8, seed: int = 0, defaults: dict[str, Any] | None = None,
) -> ChatClient:
    """A chat client for ``model`` at ``base_url`` (the built-in implementation, loaded lazily)."""
    from opid_gym.builtin import CHAT_CLIENT
    from opid_gym.registry import load_object

    factory = load_object(CHAT_CLIENT)
    client: ChatClient = factory(base_url=base_url, model=model, api_key=api_key, timeout=timeout,
                                 max_retries=max_retries, concurrency=concurrency, seed=seed, defaults=defaults)
    return client
