"""A client for OpenAI-compatible chat APIs, and the ``openai:<model>`` agent.

:class:`ChatClient` sends ``POST {base_url}/chat/completions`` requests. Everything it
needs is passed explicitly (base URL, model, API key, timeout, retries, concurrency):
library code never reads environment variables; the CLI layer decides where a key
comes from (``opid-bench eval --api-key/--api-key-file``, see docs/backends-remote.md).

* Retries: connection errors, timeouts, HTTP 408/409/429/5xx and malformed responses are
  retried up to ``max_retries`` times with exponential backoff and jitter; a
  ``Retry-After`` header (seconds or an HTTP date) overrides the computed delay. Other
  4xx errors (bad request, bad key) fail at once.
* Final failures raise a :class:`ChatAPIError` subclass that says what happened, after
  how many attempts: :class:`ChatHTTPError`, :class:`ChatTimeoutError`,
  :class:`ChatConnectionError`, :class:`ChatResponseError`.
* Concurrency: at most ``concurrency`` requests are in flight at once, across all threads
  using the client. :meth:`ChatClient.chat_many` sends a batch through a thread pool and
  returns one :class:`ChatResult` or :class:`ChatAPIError` per request, in order, without
  raising for the batch (an analyzer sending hundreds of trajectories survives the
  failure of a few).
* Usage: each result carries its token counts; ``client.usage`` (an
  :class:`opid_gym.backend.Usage`) adds up calls, failures, tokens and seconds.

httpx is imported lazily (``pip install 'opid-gym[openai]'``).
"""

from __future__ import annotations

import email.utils
import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from opid_gym.agent import AgentReply, AgentRequest
from opid_gym.backend import BackendError, Usage
from opid_gym.types import Message

DEFAULT_BASE_URL = "https://api.openai.com/v1"
RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


# ----------------------------------------------------------------------- errors
class ChatAPIError(BackendError):
    """A chat request failed for good (after ``attempts`` tries)."""

    retryable = False

    def __init__(self, message: str, *, attempts: int = 1) -> None:
        super().__init__(message)
        self.attempts = attempts

    def __str__(self) -> str:
        base = super().__str__()
        return base if self.attempts <= 1 else f"{base} (after {self.attempts} attempts)"


class ChatHTTPError(ChatAPIError):
    """The server answered with an HTTP error status."""

    def __init__(self, status: int, detail: str, *, attempts: int = 1, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status}: {detail}", attempts=attempts)
        self.status = status
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        return self.status in RETRY_STATUS or self.status >= 500


class ChatTimeoutError(ChatAPIError):
    """No complete answer within the timeout."""

    retryable = True


class ChatConnectionError(ChatAPIError):
    """The server could not be reached or dropped the connection."""

    retryable = True


class ChatResponseError(ChatAPIError):
    """The server answered 2xx with a body that is not a chat completion (bad JSON, no choices...)."""

    retryable = True


# ---------------------------------------------------------------------- results
@dataclass
class ChatResult:
    """One completion. ``attempts`` counts tries including the successful one."""

    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    model: str
    attempts: int = 1
    seconds: float = 0.0
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


def parse_completion(data: Any) -> tuple[str, str | None, int, int, str]:
    """(text, finish_reason, prompt_tokens, completion_tokens, model) of a chat completion JSON.

    Raises :class:`ChatResponseError` when ``data`` is not a chat completion. A missing
    ``usage`` block counts as zero tokens; a ``null`` content (refusals, tool calls) as "".
    """
    if not isinstance(data, dict):
        raise ChatResponseError(f"expected a JSON object, got {type(data).__name__}")
    if "error" in data and "choices" not in data:
        raise ChatResponseError(f"error object in a 2xx answer: {_short(json.dumps(data['error']))}")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ChatResponseError(f"no choices in the answer: {_short(json.dumps(data))}")
    message = choices[0].get("message")
    if not isinstance(message, dict):
        raise ChatResponseError("choices[0] has no message object")
    content = message.get("content")
    if content is None:
        content = ""
    if not isinstance(content, str):
        raise ChatResponseError(f"message content is {type(content).__name__}, not a string")
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    finish = choices[0].get("finish_reason")
    return (content, finish if isinstance(finish, str) else None, _int(usage.get("prompt_tokens")),
            _int(usage.get("completion_tokens")), str(data.get("model", "")))


def _int(x: Any) -> int:
    return int(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and x >= 0 else 0


def _short(text: str, n: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n] + "…"


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def backoff_delay(attempt: int, *, base: float, cap: float, rng: random.Random) -> float:
    """Delay before retry number ``attempt`` (0-based): equal-jitter exponential backoff.

    ``d = min(cap, base * 2**attempt)``, then a uniform draw in ``[d/2, d]``, so retries
    spread out but never come back sooner than half the nominal delay.
    """
    d = min(cap, base * (2.0 ** attempt))
    return d / 2 + rng.uniform(0.0, d / 2)


# ----------------------------------------------------------------------- client
class ChatClient:
    """Chat completions against one OpenAI-compatible endpoint.

    Args:
        base_url: the API root including the version, e.g. ``https://api.openai.com/v1``
            or ``http://127.0.0.1:8000/v1`` (a vLLM server).
        model: the model name sent with each request.
        api_key: sent as ``Authorization: Bearer <key>``; None sends no header.
        timeout: seconds allowed for connecting and for each read of one request.
        max_retries: retries after the first attempt (0: try once).
        backoff: base delay in seconds; ``max_backoff`` caps each delay (and Retry-After).
        concurrency: requests in flight at once, at most.
        defaults: request fields sent unless overridden per call (``temperature``,
            ``top_p``, ``max_tokens``, ``stop``, or any extra field the server accepts).
        seed: seeds the backoff jitter.
    """

    def __init__(
        self, *, base_url: str, model: str, api_key: str | None = None, timeout: float = 60.0,
        max_retries: int = 4, backoff: float = 1.0, max_backoff: float = 30.0, concurrency: int = 8,
        defaults: dict[str, Any] | None = None, headers: dict[str, str] | None = None, seed: int = 0,
    ) -> None:
        if not base_url or "://" not in base_url:
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        if concurrency < 1 or max_retries < 0 or timeout <= 0:
            raise ValueError("need concurrency >= 1, max_retries >= 0, timeout > 0")
        httpx = _import_httpx()
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + "/chat/completions"
        self.model = model
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.concurrency = int(concurrency)
        self.defaults = dict(defaults or {})
        self.usage = Usage()
        self._headers = {"Content-Type": "application/json", **(headers or {})}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._httpx = httpx
        self._http = httpx.Client(
            timeout=httpx.Timeout(self.timeout),
            limits=httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency),
        )
        self._slots = threading.BoundedSemaphore(self.concurrency)
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self.sleep = time.sleep  # tests and callers may replace it

    # -------------------------------------------------------------- one request
    def chat(self, messages: Sequence[Message], **params: Any) -> ChatResult:
        """One chat completion; raises :class:`ChatAPIError` when it fails for good.

        ``params`` are request fields (``temperature``, ``max_tokens``, ``seed``,
        ``stop``, ``response_format``...) on top of the client's ``defaults``; None
        values are left out.
        """
        body = {"model": self.model, "messages": [dict(m) for m in messages],
                **{k: v for k, v in {**self.defaults, **params}.items() if v is not None}}
        start = time.perf_counter()
        attempt = 0
        while True:
            attempt += 1
            try:
                with self._slots:
                    data = self._post(body)
                text, finish, ptok, ctok, model = parse_completion(data)
            except ChatAPIError as exc:
                exc.attempts = attempt
                if not exc.retryable or attempt > self.max_retries:
                    with self._lock:
                        self.usage.failures += 1
                        self.usage.seconds += time.perf_counter() - start
                    raise
                retry_after = getattr(exc, "retry_after", None)
                with self._lock:
                    delay = backoff_delay(attempt - 1, base=self.backoff, cap=self.max_backoff, rng=self._rng)
                if retry_after is not None:
                    delay = min(retry_after, self.max_backoff)
                self.sleep(delay)
                continue
            seconds = time.perf_counter() - start
            with self._lock:
                self.usage.calls += 1
                self.usage.prompt_tokens += ptok
                self.usage.completion_tokens += ctok
                self.usage.seconds += seconds
            return ChatResult(text, finish, ptok, ctok, model, attempt, seconds, data)

    def _post(self, body: dict[str, Any]) -> Any:
        httpx = self._httpx
        try:
            response = self._http.post(self.url, content=json.dumps(body).encode(), headers=self._headers)
        except httpx.TimeoutException as exc:
            raise ChatTimeoutError(f"no answer from {self.url} within {self.timeout:g}s ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:  # connect errors, dropped connections, protocol errors
            raise ChatConnectionError(f"cannot talk to {self.url}: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 400:
            raise ChatHTTPError(response.status_code, _error_detail(response),
                                retry_after=parse_retry_after(response.headers.get("Retry-After")))
        try:
            return response.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ChatResponseError(f"malformed JSON from {self.url}: {_short(response.text)!r}") from exc

    # -------------------------------------------------------------------- batch
    def chat_many(
        self, batch: Sequence[Sequence[Message]], *, seeds: Sequence[int | None] | None = None, **params: Any
    ) -> list[ChatResult | ChatAPIError]:
        """Send every conversation of ``batch`` (at most ``concurrency`` at once).

        Returns one :class:`ChatResult` or :class:`ChatAPIError` per conversation, in the
        order given; never raises for a failed request. ``seeds[i]`` is sent as request
        i's ``seed`` field.
        """
        if seeds is not None and len(seeds) != len(batch):
            raise ValueError(f"{len(seeds)} seeds for {len(batch)} conversations")

        def one(i: int) -> ChatResult | ChatAPIError:
            extra = {} if seeds is None or seeds[i] is None else {"seed": int(seeds[i])}
            try:
                return self.chat(batch[i], **{**params, **extra})
            except ChatAPIError as exc:
                return exc

        if len(batch) <= 1:
            return [one(i) for i in range(len(batch))]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(batch)),
                                thread_name_prefix="chat") as pool:
            return list(pool.map(one, range(len(batch))))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ChatClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _error_detail(response: Any) -> str:
    try:
        data = response.json()
        err = data.get("error", data) if isinstance(data, dict) else data
        msg = err.get("message", err) if isinstance(err, dict) else err
        return _short(str(msg))
    except (ValueError, UnicodeDecodeError):
        return _short(response.text) or response.reason_phrase


def _import_httpx() -> Any:
    try:
        import httpx
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise ImportError("the OpenAI-compatible client needs httpx: pip install 'opid-gym[openai]'") from exc
    return httpx


# ------------------------------------------------------------------------ agent
class ChatAgent:
    """The ``openai:<model>`` agent: each request's messages become one chat completion.

    Replies carry text only (an API gives no token ids). Each request's seed is sent as
    the ``seed`` field (servers that honour it, such as vLLM, then sample reproducibly).
    A request that fails for good raises its :class:`ChatAPIError` (``on_error="raise"``)
    or becomes an empty reply marked with the error (``on_error="empty"``): its episode
    ends as failed-by-error, is retried, and is never scored as the model's failure;
    ``failed_requests`` counts those.
    """

    needs_expert = False

    def __init__(self, client: ChatClient, *, send_seed: bool = True, on_error: str = "raise") -> None:
        if on_error not in ("raise", "empty"):
            raise ValueError(f"on_error must be 'raise' or 'empty', got {on_error!r}")
        self.client = client
        self.name = f"openai:{client.model}"
        self.send_seed = send_seed
        self.on_error = on_error
        self.failed_requests = 0

    @property
    def usage(self) -> Usage:
        return self.client.usage

    def act(self, requests: Sequence[AgentRequest]) -> list[AgentReply]:
        seeds = [r.seed for r in requests] if self.send_seed else None
        results = self.client.chat_many([r.messages for r in requests], seeds=seeds)
        replies = []
        for res in results:
            if isinstance(res, ChatAPIError):
                if self.on_error == "raise":
                    raise res
                self.failed_requests += 1
                replies.append(AgentReply("", error=str(res)))
            else:
                replies.append(AgentReply(res.text))
        return replies


def make_agent(
    model: str, *, base_url: str = DEFAULT_BASE_URL, api_key: str | None = None,
    api_key_file: str | None = None, temperature: float | None = None, top_p: float | None = None,
    max_new_tokens: int | None = None, stop: Sequence[str] | None = None,
    max_prompt_tokens: int | None = None, timeout: float = 60.0, max_retries: int = 4,
    backoff: float = 1.0, max_backoff: float = 30.0, concurrency: int = 8, send_seed: bool = True,
    on_error: str = "raise", extra_body: dict[str, Any] | None = None,
) -> ChatAgent:
    """``openai:<model>``: a :class:`ChatAgent` over a new :class:`ChatClient`.

    ``api_key_file`` names a file whose first line is the key (used when ``api_key`` is
    None). ``max_prompt_tokens`` is accepted for symmetry with local backends and not
    applied: the API counts and limits its own context. ``extra_body`` adds request
    fields (e.g. ``{"max_completion_tokens": 512}`` for models that want it).
    """
    if not model:
        raise ValueError("openai:<model> needs a model name, e.g. openai:gpt-4o-mini")
    if api_key is None and api_key_file:
        path = Path(api_key_file).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"API key file not found: {path}")
        lines = path.read_text(encoding="utf-8").strip().splitlines()
        if not lines or not lines[0].strip():
            raise ValueError(f"API key file is empty: {path}")
        api_key = lines[0].strip()
    defaults: dict[str, Any] = {"temperature": temperature, "top_p": top_p, "max_tokens": max_new_tokens,
                                "stop": list(stop) if stop else None, **(extra_body or {})}
    client = ChatClient(base_url=base_url, model=model, api_key=api_key, timeout=timeout,
                        max_retries=max_retries, backoff=backoff, max_backoff=max_backoff,
                        concurrency=concurrency, defaults=defaults)
    return ChatAgent(client, send_seed=send_seed, on_error=on_error)
