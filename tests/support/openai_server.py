"""A scriptable OpenAI-compatible chat server for tests: real sockets on 127.0.0.1.

It answers ``POST <prefix>/chat/completions`` (prefix ``/v1``) from a standard-library
``ThreadingHTTPServer`` in a background thread, bound to a free port. Tests script what
it does, request by request, and read back what it received.

Usage::

    from tests.support.openai_server import ChatServer, Reply, Status, Sleep, Garbage

    with ChatServer() as server:                      # default: echo the last user message
        server.script(Status(429, retry_after=0), Reply("hello", prompt_tokens=5))
        client = ChatClient(base_url=server.base_url, model="m", api_key="k")
        ...
        assert server.requests[1].body["model"] == "m"
        assert server.max_in_flight <= 4

Behaviours (each answers one request; ``server.script(*behaviours)`` queues them in
order, and ``server.default`` answers once the queue is empty):

* ``Reply(text, prompt_tokens=.., completion_tokens=.., finish_reason=.., usage=True)``:
  a well-formed completion. ``text`` may be a callable ``body -> str`` (``body`` is the
  parsed request JSON). ``usage=False`` leaves the usage block out.
* ``Echo()``: replies with the last user message's content (the initial default).
* ``Status(code, body=None, retry_after=None)``: an HTTP error with an OpenAI-style
  error JSON (or ``body`` as given); ``retry_after`` sets the ``Retry-After`` header.
* ``Sleep(seconds, then=Reply(...))``: waits, then answers with ``then`` (a timeout test
  sets ``seconds`` past the client's timeout).
* ``Garbage(body, status=200, content_type="application/json")``: raw bytes as the body
  (malformed JSON, HTML, JSON without ``choices``...).
* ``Hold(n, timeout=5.0, then=Reply(...))``: waits until ``n`` requests are waiting in
  ``Hold`` at once (or ``timeout``), then answers: a concurrency-limit test reads
  ``server.max_in_flight`` afterwards (a client limited to n sends waves of n).
* ``Close()``: drops the connection without answering.

A behaviour may also be any callable ``(handler, body) -> None`` that writes its own
response through ``handler`` (a ``BaseHTTPRequestHandler``).

Recorded: ``server.requests`` (a list of :class:`Received`: path, headers, parsed body
or None), ``server.max_in_flight`` and ``server.in_flight``. Everything is thread-safe;
``server.reset()`` clears the script and the records.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any
    time: float = field(default_factory=time.monotonic)


def _completion(text: str, model: str, *, prompt_tokens: int, completion_tokens: int,
                finish_reason: str, usage: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "finish_reason": finish_reason}],
    }
    if usage:
        out["usage"] = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                        "total_tokens": prompt_tokens + completion_tokens}
    return out


def _send(handler: BaseHTTPRequestHandler, status: int, payload: bytes,
          content_type: str = "application/json", headers: dict[str, str] | None = None) -> None:
    # The request stops counting as in flight before its answer leaves: a client that
    # reuses the slot at once must not be seen as one request over its limit.
    handler.server.chat_server._leave(handler)  # type: ignore[attr-defined]
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(payload)))
    for k, v in (headers or {}).items():
        handler.send_header(k, v)
    handler.end_headers()
    handler.wfile.write(payload)


@dataclass
class Reply:
    text: str | Callable[[Any], str] = "ok"
    prompt_tokens: int = 7
    completion_tokens: int = 3
    finish_reason: str = "stop"
    usage: bool = True

    def __call__(self, handler: BaseHTTPRequestHandler, body: Any) -> None:
        text = self.text(body) if callable(self.text) else self.text
        model = body.get("model", "") if isinstance(body, dict) else ""
        data = _completion(text, model, prompt_tokens=self.prompt_tokens,
                           completion_tokens=self.completion_tokens,
                           finish_reason=self.finish_reason, usage=self.usage)
        _send(handler, 200, json.dumps(data).encode())


@dataclass
class Echo:
    prompt_tokens: int = 7
    completion_tokens: int = 3

    def __call__(self, handler: BaseHTTPRequestHandler, body: Any) -> None:
        users = [m.get("content", "") for m in body.get("messages", []) if m.get("role") == "user"]
        Reply(users[-1] if users else "", self.prompt_tokens, self.completion_tokens)(handler, body)


@dataclass
class Status:
    code: int
    body: bytes | None = None
    retry_after: float | str | None = None

    def __call__(self, handler: BaseHTTPRequestHandler, body: Any) -> None:
        payload = self.body if self.body is not None else json.dumps(
            {"error": {"message": f"test server error {self.code}", "type": "test", "code": self.code}}
        ).encode()
        headers = {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}
        _send(handler, self.code, payload, headers=headers)


@dataclass
class Sleep:
    seconds: float
    then: Callable[[BaseHTTPRequestHandler, Any], None] = field(default_factory=Reply)

    def __call__(self, handler: BaseHTTPRequestHandler, body: Any) -> None:
        time.sleep(self.seconds)
        try:
            self.then(handler, body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up first
            pass


@dataclass
class Garbage:
    body: bytes = b'{"choices": [ {"message": '
    status: int = 200
    content_type: str = "application/json"

    def __call__(self, handler: BaseHTTPRequestHandler, body: Any) -> None:
        _send(handler, self.status, self.body, self.content_type)


@dataclass
class Hold:
    n: int
    timeout: float = 5.0
    then: Callable[[BaseHTTPRequestHandler, Any], None] = field(default_factory=Reply)

    def __call__(self, handler: BaseHTTPRequestHandler, body: Any) -> None:
        # A barrier: the n-th waiting request releases itself and the n-1 before it.
        server: ChatServer = handler.server.chat_server  # type: ignore[attr-defined]
        deadline = time.monotonic() + self.timeout
        with server._cond:
            generation = server._hold_generation
            server._holding += 1
            if server._holding >= self.n:
                server._holding = 0
                server._hold_generation += 1
                server._cond.notify_all()
            while server._hold_generation == generation and time.monotonic() < deadline:
                server._cond.wait(timeout=max(0.0, deadline - time.monotonic()))
            if server._hold_generation == generation:  # timed out: stop counting as waiting
                server._holding -= 1
        self.then(handler, body)


class Close:
    def __call__(self, handler: BaseHTTPRequestHandler, body: Any) -> None:
        handler.server.chat_server._leave(handler)  # type: ignore[attr-defined]
        handler.close_connection = True
        handler.connection.close()


Behaviour = Callable[[BaseHTTPRequestHandler, Any], None]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        server: ChatServer = self.server.chat_server  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = None
        with server._cond:
            server.requests.append(Received(self.path, dict(self.headers.items()), body))
            server.in_flight += 1
            self._in_flight = True
            server.max_in_flight = max(server.max_in_flight, server.in_flight)
            server._cond.notify_all()
            behaviour = server._queue.pop(0) if server._queue else server.default
        try:
            if not self.path.rstrip("/").endswith(server.prefix + "/chat/completions"):
                Status(404)(self, body)
            elif not isinstance(body, dict):
                Status(400)(self, body)
            else:
                behaviour(self, body)
        finally:
            server._leave(self)


class ChatServer:
    """The test server; see the module docstring. Use as a context manager."""

    def __init__(self, default: Behaviour | None = None, prefix: str = "/v1") -> None:
        self.default: Behaviour = default or Echo()
        self.prefix = prefix
        self.requests: list[Received] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._queue: list[Behaviour] = []
        self._holding = 0
        self._hold_generation = 0
        self._cond = threading.Condition()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.chat_server = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.prefix}"

    def _leave(self, handler: BaseHTTPRequestHandler) -> None:
        with self._cond:
            if getattr(handler, "_in_flight", False):
                handler._in_flight = False  # type: ignore[attr-defined]
                self.in_flight -= 1
                self._cond.notify_all()

    def script(self, *behaviours: Behaviour) -> None:
        """Queue behaviours: the next requests are answered by them, in order."""
        with self._cond:
            self._queue.extend(behaviours)

    def reset(self) -> None:
        with self._cond:
            self._queue.clear()
            self.requests.clear()
            self.max_in_flight = self.in_flight

    def start(self) -> ChatServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="chat-test-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ChatServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
