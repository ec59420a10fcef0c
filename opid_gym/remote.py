"""Environments served over HTTP: ``opid-bench serve-env`` and the :class:`RemoteEnv` client.

One machine runs the environment engines; another runs the model and reaches them
over the network::

    host-a$ opid-bench serve-env alfworld-train alfworld-unseen --host 0.0.0.0 --port 8765 --token-file tok
    host-b$ OPID_GYM_ENV_TOKEN=... opid-bench eval --agent expert --env alfworld-unseen --env-url http://host-a:8765

The protocol follows OpenEnv's HTTP conventions (``openenv-core``): ``POST /reset`` and
``POST /step`` answer ``{"observation": {...}, "reward": r, "done": d}``; a step
request is ``{"action": {...}}``; ``GET /state``, ``/health``, ``/metadata`` and
``/schema`` describe the server. On top of OpenEnv's stateless HTTP routes it adds
*sessions* (one environment instance each) so that many clients share one server:

============================  ===============================================================
``POST /sessions``            ``{"env_id": id, "env_kwargs": {...}}`` → 201 ``{"session_id", "num_tasks", ...}``
``POST /close``               closes the session named by the ``X-Session-Id`` header
``POST /reset``               ``{"seed": int, "options": {"task_index": i}}`` (``task_index`` also
                              accepted at top level) → observation, ``reward: null``, ``done: false``
``POST /step``                ``{"action": {"text": "go to desk 1"}}`` → observation, reward, done
``GET /state``                ``{"episode_id", "step_count", "task_index", "task_id", "won", "done"}``
``GET /tasks``                ``{"env_id", "num_tasks", "task_ids", "task_types"}``
``GET /expert``               ``{"expert_action", "expert_plan"}`` of the current state
``GET /health``               ``{"status": "healthy"}`` (no token needed)
``GET /metadata``, ``/schema``  the served id and family; JSON schemas of action/observation/state
============================  ===============================================================

An observation is ``{"text": str, "info": {...}, "terminated": bool, "truncated": bool}``:
the Gymnasium five-tuple of :class:`~opid_gym.env.TextEnv`, with OpenEnv's ``done``
(``terminated or truncated``) beside it. A request without ``X-Session-Id`` uses the
``default`` session (built with the server's own settings), so a plain OpenEnv-style HTTP
client needs no session calls; concurrent clients each open their own session.

Sessions are bounded (``max_sessions``; one more is refused with 503) and one idle for
``session_timeout`` seconds is closed. The environments' engines are not all
thread-safe (ALFWorld's is not), so a server runs one environment call at a time:
requests from many clients interleave but never overlap. For parallel stepping run
several servers (one per core) and give the client every URL; :class:`RemotePool`
spreads slots over them as :class:`~opid_gym.workers.ProcessPool` spreads them over
processes. Errors are JSON ``{"detail": message}`` with a 4xx status for bad requests
(400 bad JSON or fields, 401 token, 404 unknown route or session, 409 step before reset
or after the end, 413 too large, 503 full) and 500 when the environment itself raised.

The server binds 127.0.0.1 unless told otherwise. With a token, every route but
``/health`` needs ``Authorization: Bearer <token>`` (compared in constant time); the
token guards against accidents on a shared network, it is not transport security (no TLS).
"""

from __future__ import annotations

import hmac
import http.client
import json
import socket
import threading
import time
import traceback
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Sequence

import gymnasium as gym

from opid_gym.env import TextEnv
from opid_gym.registry import env_class, env_spec, full_env_id, make
from opid_gym.workers import EnvError, ResetResult, StepResult, _SlotEnvs

TOKEN_ENV = "OPID_GYM_ENV_TOKEN"
"""Where clients (``eval --env-url``, ``env.remote_urls``) and ``serve-env`` read the shared token."""
DEFAULT_SESSION = "default"
SESSION_HEADER = "X-Session-Id"
MAX_BODY_BYTES = 8 * 1024 * 1024
REMOTE_ENV_ID = "opid-remote/served"
"""A Gymnasium id for :class:`RemoteEnv` (``make(REMOTE_ENV_ID, url=...)``), registered on
import of this module; it is not among :func:`opid_gym.env_ids` (it needs a URL)."""

if REMOTE_ENV_ID not in gym.registry:
    gym.register(id=REMOTE_ENV_ID, entry_point="opid_gym.remote:RemoteEnv", disable_env_checker=True)


class RemoteEnvError(RuntimeError):
    """The served environment could not be reached or refused a request."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _jsonable(value: Any) -> Any:
    """Info values as JSON: numpy scalars and arrays as numbers and lists, tuples as lists."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if hasattr(value, "tolist"):  # numpy scalar or array
        return value.tolist()
    return str(value)


# ----------------------------------------------------------------------- server
class _HTTPError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass
class _Session:
    env: Any
    env_id: str
    env_kwargs: dict[str, Any]
    last_used: float = field(default_factory=time.monotonic)
    episode_id: str | None = None


class EnvServer:
    """The state behind ``serve-env``: sessions of one or more registered environment ids.

    Args:
        env_ids: the registered environment ids to serve (a session picks one; the
            first is the default), e.g. a benchmark's training and evaluation splits.
        env_kwargs: constructor arguments the server fixes (e.g. its own ``data_root``);
            they win over a client's ``env_kwargs``.
        token: the shared token (None: no authentication).
        max_sessions: sessions open at once, the default one included.
        session_timeout: seconds after which an idle session is closed.
    """

    def __init__(
        self,
        env_ids: str | Sequence[str],
        env_kwargs: dict[str, Any] | None = None,
        *,
        token: str | None = None,
        max_sessions: int = 64,
        session_timeout: float = 1800.0,
    ) -> None:
        if max_sessions < 1:
            raise ValueError(f"max_sessions must be >= 1, got {max_sessions}")
        if session_timeout <= 0:
            raise ValueError(f"session_timeout must be > 0, got {session_timeout}")
        ids = [env_ids] if isinstance(env_ids, str) else list(env_ids)
        if not ids:
            raise ValueError("serve at least one environment id")
        self.env_ids = [env_spec(e).id for e in ids]  # unknown ids fail here, with "did you mean"
        self.env_id = self.env_ids[0]
        self.env_kwargs = dict(env_kwargs or {})
        self.token = token
        self.max_sessions = max_sessions
        self.session_timeout = session_timeout
        self.sessions: dict[str, _Session] = {}
        self.opened = 0
        """Sessions opened since the server started (``/metadata``'s ``sessions_opened``)."""
        self.lock = threading.Lock()
        """Held for every environment call: engines are not thread-safe (module docstring)."""

    @staticmethod
    def _describe(env_id: str) -> dict[str, str]:
        cls = env_class(env_id)
        from opid_gym.family import family_of_class

        return {"family": family_of_class(cls).name, "action_format": str(getattr(cls, "action_format", ""))}

    # ------------------------------------------------------------- sessions
    def _reap(self) -> None:
        now = time.monotonic()
        for sid, s in list(self.sessions.items()):
            if now - s.last_used > self.session_timeout:
                self._drop(sid)

    def _drop(self, sid: str) -> None:
        s = self.sessions.pop(sid, None)
        if s is not None:
            try:
                s.env.close()
            except Exception:
                pass

    def _open(self, sid: str, env_id: str, client_kwargs: dict[str, Any]) -> _Session:
        self._reap()
        if len(self.sessions) >= self.max_sessions:
            raise _HTTPError(503, f"server full: {len(self.sessions)} sessions open (max_sessions="
                                  f"{self.max_sessions}); close one or start another server")
        kwargs = {**client_kwargs, **self.env_kwargs}
        try:
            env = make(env_id, **kwargs)
        except (TypeError, ValueError) as exc:
            raise _HTTPError(400, f"cannot build {env_id} with env_kwargs {client_kwargs}: "
                                  f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
        session = _Session(env, env_id, dict(client_kwargs))
        self.sessions[sid] = session
        self.opened += 1
        return session

    def _session(self, sid: str | None) -> _Session:
        if not sid or sid == DEFAULT_SESSION:
            if DEFAULT_SESSION not in self.sessions:
                return self._open(DEFAULT_SESSION, self.env_id, {})
            sid = DEFAULT_SESSION
        session = self.sessions.get(sid)
        if session is None:
            raise _HTTPError(404, f"unknown session {sid!r} (closed, timed out, or the server restarted); "
                                  "open a new one with POST /sessions")
        session.last_used = time.monotonic()
        return session

    # -------------------------------------------------------------- routes
    def handle(self, method: str, path: str, sid: str | None, body: Any) -> tuple[int, dict[str, Any]]:
        """One request → ``(status, JSON answer)``; raises :class:`_HTTPError` for bad ones."""
        route = (method, path)
        if route == ("GET", "/health"):
            return 200, {"status": "healthy"}
        if route == ("GET", "/metadata"):
            from opid_gym import __version__

            return 200, {"name": self.env_id, "env_id": self.env_id, "env_ids": self.env_ids,
                         **self._describe(self.env_id), "version": __version__,
                         "description": "an opid-gym environment served by `opid-bench serve-env`",
                         "sessions": len(self.sessions), "sessions_opened": self.opened,
                         "max_sessions": self.max_sessions}
        if route == ("GET", "/schema"):
            return 200, SCHEMA
        handlers = {
            ("POST", "/sessions"): self._create, ("POST", "/close"): self._close,
            ("POST", "/reset"): self._reset, ("POST", "/step"): self._step,
            ("GET", "/state"): self._state, ("GET", "/tasks"): self._tasks, ("GET", "/expert"): self._expert,
        }
        if route not in handlers:
            known = sorted({p for _, p in handlers} | {"/health", "/metadata", "/schema"})
            raise _HTTPError(404 if path not in known else 405,
                             f"no route {method} {path} (routes: {', '.join(known)})")
        if method == "POST" and not isinstance(body, dict):
            raise _HTTPError(400, "the request body must be a JSON object")
        with self.lock:
            self._reap()
            return handlers[route](sid, body)

    def _create(self, sid: str | None, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        kwargs = body.get("env_kwargs", {})
        if not isinstance(kwargs, dict):
            raise _HTTPError(400, "env_kwargs must be a JSON object")
        env_id = body.get("env_id") or self.env_id
        if not isinstance(env_id, str) or full_env_id(env_id) not in self.env_ids:
            raise _HTTPError(400, f"this server serves {', '.join(self.env_ids)}, not {env_id!r}")
        env_id = full_env_id(env_id)
        new = uuid.uuid4().hex
        env = self._open(new, env_id, kwargs).env.unwrapped
        return 201, {"session_id": new, "env_id": env_id, "num_tasks": int(env.num_tasks),
                     "max_steps": int(env.max_steps), **self._describe(env_id)}

    def _close(self, sid: str | None, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        key = sid or DEFAULT_SESSION
        known = key in self.sessions
        self._drop(key)
        return 200, {"closed": known}

    def _reset(self, sid: str | None, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        s = self._session(sid)
        seed, options = body.get("seed"), body.get("options") or {}
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise _HTTPError(400, f"seed must be a non-negative integer or null, got {seed!r}")
        if not isinstance(options, dict):
            raise _HTTPError(400, "options must be a JSON object")
        if "task_index" in body:
            options = {**options, "task_index": body["task_index"]}
        if "task_index" in options and (isinstance(options["task_index"], bool)
                                        or not isinstance(options["task_index"], int)):
            raise _HTTPError(400, f"task_index must be an integer, got {options['task_index']!r}")
        try:
            obs, info = s.env.reset(seed=seed, options=options)
        except IndexError as exc:
            raise _HTTPError(400, str(exc)) from None
        s.episode_id = body.get("episode_id") if isinstance(body.get("episode_id"), str) else uuid.uuid4().hex
        return 200, {"observation": {"text": obs, "info": _jsonable(info), "terminated": False, "truncated": False},
                     "reward": None, "done": False}

    def _step(self, sid: str | None, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        s = self._session(sid)
        action = body.get("action")
        if not isinstance(action, dict) or not isinstance(action.get("text"), str):
            raise _HTTPError(400, 'the step body must be {"action": {"text": "<action string>"}}')
        env = s.env.unwrapped
        if getattr(env, "_state", None) is None:
            raise _HTTPError(409, "call reset() before step()")
        if getattr(env, "_done", False):
            raise _HTTPError(409, "episode is over; call reset()")
        obs, reward, terminated, truncated, info = s.env.step(action["text"])
        return 200, {"observation": {"text": obs, "info": _jsonable(info), "terminated": bool(terminated),
                                     "truncated": bool(truncated)},
                     "reward": float(reward), "done": bool(terminated or truncated)}

    def _state(self, sid: str | None, body: Any) -> tuple[int, dict[str, Any]]:
        s = self._session(sid)
        env = s.env.unwrapped
        started = getattr(env, "_state", None) is not None
        return 200, {"episode_id": s.episode_id, "step_count": int(getattr(env, "_steps", 0)),
                     "task_index": getattr(env, "_task_index", None) if started else None,
                     "task_id": env._state.task_id if started else None,
                     "won": bool(getattr(env, "_won", False)), "done": bool(getattr(env, "_done", False)),
                     "max_steps": int(env.max_steps)}

    def _tasks(self, sid: str | None, body: Any) -> tuple[int, dict[str, Any]]:
        s = self._session(sid)
        env = s.env.unwrapped
        types = env.task_types()  # None where the env does not group its tasks
        return 200, {"env_id": s.env_id, "num_tasks": int(env.num_tasks), "task_ids": list(env.task_ids()),
                     "task_types": list(types) if types is not None else None}

    def _expert(self, sid: str | None, body: Any) -> tuple[int, dict[str, Any]]:
        env = self._session(sid).env.unwrapped
        if getattr(env, "_state", None) is None:
            raise _HTTPError(409, "call reset before asking for the expert")
        plan = env.expert_plan()
        return 200, {"expert_action": env.expert_action(), "expert_plan": list(plan) if plan is not None else None}

    def close(self) -> None:
        with self.lock:
            for sid in list(self.sessions):
                self._drop(sid)


SCHEMA: dict[str, Any] = {
    "action": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
    "observation": {"type": "object", "properties": {
        "text": {"type": "string"}, "info": {"type": "object"},
        "terminated": {"type": "boolean"}, "truncated": {"type": "boolean"}}},
    "state": {"type": "object", "properties": {
        "episode_id": {"type": ["string", "null"]}, "step_count": {"type": "integer"},
        "task_index": {"type": ["integer", "null"]}, "task_id": {"type": ["string", "null"]},
        "won": {"type": "boolean"}, "done": {"type": "boolean"}, "max_steps": {"type": "integer"}}},
}


def _handler_class(server: EnvServer, quiet: bool) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: one connection per client session
        server_version = "opid-gym-serve-env"

        def _answer(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode("utf-8")  # ASCII escapes: lone surrogates survive
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _serve(self, method: str) -> None:
            try:
                path = urllib.parse.urlsplit(self.path).path.rstrip("/") or "/"
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY_BYTES:
                    self.close_connection = True
                    raise _HTTPError(413, f"request body of {length} bytes exceeds {MAX_BODY_BYTES}")
                raw = self.rfile.read(length) if length else b""
                if path != "/health" and server.token is not None:
                    given = self.headers.get("Authorization", "")
                    expected = f"Bearer {server.token}"
                    if not hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8")):
                        raise _HTTPError(401, "missing or wrong token (header `Authorization: Bearer <token>`)")
                body: Any = {}
                if raw.strip():
                    try:
                        body = json.loads(raw)
                    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                        raise _HTTPError(400, f"the request body is not valid JSON: {exc}") from None
                status, payload = server.handle(method, path, self.headers.get(SESSION_HEADER), body)
            except _HTTPError as exc:
                status, payload = exc.status, {"detail": exc.detail}
            except Exception as exc:  # the environment raised: a 500 that says what happened
                status, payload = 500, {"detail": f"{type(exc).__name__}: {exc}",
                                        "traceback": traceback.format_exc(limit=5)}
            self._answer(status, payload)

        def do_GET(self) -> None:  # noqa: N802 (http.server's names)
            self._serve("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._serve("POST")

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            if not quiet:
                super().log_message(format, *args)

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def make_server(
    env_ids: str | Sequence[str], env_kwargs: dict[str, Any] | None = None, *, host: str = "127.0.0.1", port: int = 0,
    token: str | None = None, max_sessions: int = 64, session_timeout: float = 1800.0, quiet: bool = True,
) -> tuple[ThreadingHTTPServer, EnvServer]:
    """An HTTP server for ``env_ids`` bound to ``host:port`` (port 0: a free one), not yet serving.

    Call ``serve_forever()`` on the first element (a thread does); ``server_address`` holds
    the port actually bound. ``shutdown()`` then ``server_close()`` and ``EnvServer.close()`` stop it.
    """
    state = EnvServer(env_ids, env_kwargs, token=token, max_sessions=max_sessions, session_timeout=session_timeout)
    httpd = _Server((host, port), _handler_class(state, quiet))
    return httpd, state


# ----------------------------------------------------------------------- client
class _Connection:
    """One keep-alive HTTP connection to a server, JSON in and out."""

    def __init__(self, url: str, token: str | None, timeout: float) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"expected an http://host:port URL, got {url!r}")
        self.url = url.rstrip("/")
        self.host, self.port = parts.hostname, parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self.broken = False
        """The last request got no answer (server down or hung)."""

    def request(self, method: str, path: str, body: Any = None, *, session: str | None = None,
                retry: bool = False) -> dict[str, Any]:
        """``retry``: reconnect once if the connection broke (only for requests safe to repeat)."""
        headers = {"Content-Type": "application/json"}
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        if session is not None:
            headers[SESSION_HEADER] = session
        data = json.dumps(body).encode("utf-8") if body is not None else None
        for attempt in range(2 if retry else 1):
            try:
                if self._conn is None:
                    self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                self._conn.request(method, self.prefix + path, body=data, headers=headers)
                resp = self._conn.getresponse()
                raw = resp.read()
                self.broken = False
                break
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                self.broken = True
                if attempt + 1 < (2 if retry else 1) and not isinstance(exc, (socket.timeout, TimeoutError)):
                    continue
                what = (f"no answer within {self.timeout:g}s" if isinstance(exc, (socket.timeout, TimeoutError))
                        else f"{type(exc).__name__}: {exc}")
                raise RemoteEnvError(f"environment server {self.url} unreachable ({method} {path}): {what}") from None
        try:
            payload = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            raise RemoteEnvError(f"{self.url}{path} answered {resp.status} with non-JSON: {raw[:200]!r}",
                                 resp.status) from None
        if resp.status >= 400:
            detail = payload.get("detail", payload) if isinstance(payload, dict) else payload
            raise RemoteEnvError(f"{self.url}{path}: HTTP {resp.status}: {detail}", resp.status)
        return payload

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _served_family(env_id: str, name: str) -> Any:
    """The served environment's family: its full declaration where that package is installed
    here too (run and loss defaults, metric keys), else a bare family of the served name."""
    from opid_gym.family import EnvFamily, family_of

    try:
        family = family_of(env_id)
    except Exception:  # the served family is not installed here
        return EnvFamily(name or "text")
    return family if family.name == name else EnvFamily(name or "text")


class RemoteEnv(TextEnv):
    """A :class:`~opid_gym.env.TextEnv` whose engine runs in an ``opid-bench serve-env`` server.

    Opening one opens a session (its own environment instance on the server, built with
    ``env_kwargs``, e.g. ``max_steps``); ``close`` closes it. ``reset`` and ``step`` return
    what the served environment returned (observation, reward, ``terminated``,
    ``truncated``, info), so it is a drop-in replacement for the local environment.

    Args:
        url: the server, ``http://host:port``.
        served_env: which of the server's environment ids (None: its first).
        token: the server's shared token, if it has one.
        timeout: seconds one request may take before :class:`RemoteEnvError` is raised.
        env_kwargs: constructor arguments for the served environment (the server's own
            settings, such as its data root, win).
    """

    def __init__(self, url: str, *, served_env: str | None = None, token: str | None = None, timeout: float = 300.0,
                 render_mode: str | None = None, **env_kwargs: Any) -> None:
        self._http = _Connection(url, token, timeout)
        info = self._http.request("POST", "/sessions", {"env_id": served_env, "env_kwargs": _jsonable(env_kwargs)},
                                  retry=True)
        super().__init__(max_steps=int(info["max_steps"]), render_mode=render_mode)
        self.url = self._http.url
        self.session_id: str | None = str(info["session_id"])
        self.served_env_id = str(info["env_id"])
        self.family = _served_family(self.served_env_id, str(info.get("family", "")))  # type: ignore[misc]
        self.action_format = str(info.get("action_format", ""))  # type: ignore[misc]
        self._n = int(info["num_tasks"])
        self._tasks: dict[str, Any] | None = None
        self._expert_cache: dict[str, Any] | None = None
        try:
            self.prompt = env_class(self.served_env_id).prompt  # type: ignore[misc]
        except Exception:  # the served family is not installed here: prompts come from elsewhere
            self.prompt = None  # type: ignore[misc]

    def _call(self, method: str, path: str, body: Any = None, *, retry: bool = False) -> dict[str, Any]:
        if self.session_id is None:
            raise RuntimeError("this RemoteEnv is closed")
        return self._http.request(method, path, body, session=self.session_id, retry=retry)

    def _num_tasks(self) -> int:
        return self._n

    def _task_list(self) -> dict[str, Any]:
        if self._tasks is None:
            self._tasks = self._call("GET", "/tasks", retry=True)
        return self._tasks

    def task_ids(self) -> list[str]:
        return list(self._task_list()["task_ids"])

    def task_types(self) -> list[str] | None:
        types = self._task_list().get("task_types")
        return list(types) if types is not None else None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        gym.Env.reset(self, seed=seed)
        answer = self._call("POST", "/reset", {"seed": seed, "options": dict(options or {})}, retry=True)
        obs = answer["observation"]
        self._absorb(obs, done=False)
        return obs["text"], obs["info"]

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if not isinstance(action, str):
            action = str(action)
        try:
            answer = self._call("POST", "/step", {"action": {"text": action}})
        except RemoteEnvError as exc:
            if exc.status == 409:  # before reset / after the end: the local env's RuntimeError
                raise RuntimeError(str(exc).split(": ", 2)[-1]) from None
            raise
        obs = answer["observation"]
        self._absorb(obs, done=bool(answer["done"]))
        return obs["text"], float(answer["reward"]), bool(obs["terminated"]), bool(obs["truncated"]), obs["info"]

    def _absorb(self, obs: dict[str, Any], *, done: bool) -> None:
        info = obs["info"]
        self._last_observation = obs["text"]
        self._steps = int(info.get("step", 0))
        self._won = bool(info.get("won", False))
        self._done = done
        self._task_index = info.get("task_index")
        self._current_admissible = info.get("admissible_actions")
        self._expert_cache = None

    def state(self) -> dict[str, Any]:
        """The server's view of this session (OpenEnv's ``state``)."""
        return self._call("GET", "/state", retry=True)

    def _expert(self) -> dict[str, Any]:
        if self._expert_cache is None:
            self._expert_cache = self._call("GET", "/expert", retry=True)
        return self._expert_cache

    def expert_action(self) -> str | None:
        return self._expert()["expert_action"]

    def expert_plan(self) -> list[str] | None:
        return self._expert()["expert_plan"]

    def close(self) -> None:
        if self.session_id is not None and not self._http.broken:  # a dead server's sessions are gone
            try:
                self._call("POST", "/close", {}, retry=True)
            except RemoteEnvError:
                pass  # the server is gone: so is the session
        self.session_id = None
        self._http.close()


def env_token() -> str | None:
    """The shared token from ``$OPID_GYM_ENV_TOKEN`` (None when unset or empty)."""
    import os

    return os.environ.get(TOKEN_ENV) or None


def served_env_ids(url: str, *, token: str | None = None, timeout: float = 30.0) -> list[str]:
    """The environment ids a server serves (``GET /metadata``)."""
    conn = _Connection(url, token, timeout)
    try:
        return [str(e) for e in conn.request("GET", "/metadata", retry=True)["env_ids"]]
    finally:
        conn.close()


# ------------------------------------------------------------------------- pool
def check_servers(urls: Sequence[str], env_id: str, *, token: str | None = None, timeout: float = 30.0) -> str:
    """Check that every server answers and serves ``env_id``; its full id.

    Raises :class:`~opid_gym.learner.ConfigError` (one line from the CLI) otherwise.
    """
    from opid_gym.learner import ConfigError

    want = env_spec(env_id).id
    for url in urls:
        try:
            got = served_env_ids(url, token=token, timeout=min(timeout, 30.0))
        except (RemoteEnvError, ValueError) as exc:
            raise ConfigError(f"environment server {url}: {exc}") from None
        if want not in got:
            raise ConfigError(f"{url} serves {', '.join(got)}, not {want} (opid-bench serve-env {want} ...)")
    return want


class _RemoteSlots(_SlotEnvs):
    """:class:`~opid_gym.workers._SlotEnvs` whose slot ``s`` is a session on ``urls[s % n]``."""

    def __init__(self, env_id: str, urls: Sequence[str], env_kwargs: dict[str, Any], with_expert: bool,
                 token: str | None, timeout: float) -> None:
        super().__init__(None, env_kwargs, with_expert)
        self.env_id = env_id
        self.urls = list(urls)
        self.token = token
        self.timeout = timeout

    def _env(self, slot: int) -> Any:
        if slot not in self.envs:
            self.envs[slot] = RemoteEnv(self.urls[slot % len(self.urls)], served_env=self.env_id, token=self.token,
                                        timeout=self.timeout, **self.env_kwargs)
        return self.envs[slot]


class RemotePool:
    """Environments on ``serve-env`` servers: slot ``s`` is a session on ``urls[s % len(urls)]``.

    The :class:`~opid_gym.workers.EnvPool` interface, with
    :class:`~opid_gym.workers.ProcessPool`'s failure semantics: a server that is down,
    refuses, or does not answer within ``timeout`` seconds gives that slot an
    :class:`~opid_gym.workers.EnvError` and its session is dropped (``restarts`` counts
    them); the slot's next reset opens a new session, so a restarted server is picked up
    again and the evaluation's retries run the episode anew. Slots are stepped concurrently
    (one thread per slot in a batch, at most ``max_threads``).

    A server that cannot be reached when the pool starts, or serves another environment,
    is a :class:`~opid_gym.learner.ConfigError`.

    Args:
        env_id: the environment id the slots hold; every server must serve it.
        env_kwargs: constructor arguments for the served environments (``data_root`` is
            left out: each server reads its own data).
        urls: the servers, ``http://host:port`` each.
        token: the servers' shared token.
        timeout: seconds per request.
    """

    in_process = False

    def __init__(self, env_id: str, env_kwargs: dict[str, Any] | None = None, *, urls: Sequence[str],
                 with_expert: bool = False, token: str | None = None, timeout: float = 300.0,
                 max_threads: int = 64) -> None:
        if not urls:
            raise ValueError("RemotePool needs at least one server URL")
        want = check_servers(urls, env_id, token=token, timeout=timeout)
        kwargs = {k: v for k, v in (env_kwargs or {}).items() if k != "data_root"}
        self._envs = _RemoteSlots(want, urls, kwargs, with_expert, token, timeout)
        self._threads = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="opid-remote")
        self.restarts = 0

    def _map(self, fn: Any, items: Sequence[tuple]) -> list[Any]:
        results = list(self._threads.map(lambda item: fn(*item), items))
        self.restarts += sum(isinstance(r, EnvError) and "RemoteEnvError" in r.message for r in results)
        return results

    def reset(self, items: Sequence[tuple[int, int, dict[str, Any]]]) -> list[ResetResult | EnvError]:
        return self._map(self._envs.reset, items)

    def step(self, items: Sequence[tuple[int, str]]) -> list[StepResult | EnvError]:
        return self._map(self._envs.step, items)

    def close(self) -> None:
        self._envs.close()
        self._threads.shutdown(wait=True)

    def __enter__(self) -> RemotePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(env_ids: str | Sequence[str], env_kwargs: dict[str, Any] | None = None, *, host: str = "127.0.0.1",
          port: int = 8765, token: str | None = None, max_sessions: int = 64, session_timeout: float = 1800.0,
          quiet: bool = False) -> None:
    """Serve ``env_ids`` until interrupted (``opid-bench serve-env``)."""
    import sys

    httpd, state = make_server(env_ids, env_kwargs, host=host, port=port, token=token,
                               max_sessions=max_sessions, session_timeout=session_timeout, quiet=quiet)
    bound_host, bound_port = httpd.server_address[:2]
    print(f"serving {', '.join(state.env_ids)} on http://{bound_host}:{bound_port} "
          f"({'token required' if token else 'no token'}; max {max_sessions} sessions)", file=sys.stderr, flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
        state.close()


# -------------------------------------------------------------------------- CLI
def add_serve_arguments(p: Any) -> None:
    """``opid-bench serve-env``'s arguments."""
    p.add_argument("env_ids", nargs="+", metavar="ENV_ID",
                   help="environment id(s) to serve, e.g. alfworld-train alfworld-unseen (the first is the default)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free port, printed)")
    p.add_argument("--token", default=None,
                   help=f"shared token clients must send (default: ${TOKEN_ENV}; prefer it or --token-file: "
                        "a command line is visible to other users)")
    p.add_argument("--token-file", default=None, help="file holding the shared token")
    p.add_argument("--max-sessions", type=int, default=64, help="sessions (environment instances) open at once")
    p.add_argument("--session-timeout", type=float, default=1800.0,
                   help="seconds after which an idle session is closed (default 1800)")
    p.add_argument("--env-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="environment option fixed by the server (repeatable; wins over clients' options)")
    p.add_argument("--quiet", action="store_true", help="do not log every request")


def cmd_serve(args: Any) -> int:
    """``opid-bench serve-env``: serve environments until Ctrl-C."""
    from pathlib import Path

    from opid_gym.cli import CLIError, _data_kwargs, _parse_kv
    from opid_gym.registry import accepts

    if not 0 <= args.port <= 65535:
        raise CLIError(f"--port must be in 0..65535, got {args.port}")
    if args.max_sessions < 1 or args.session_timeout <= 0:
        raise CLIError("--max-sessions must be >= 1 and --session-timeout > 0")
    token = args.token
    if args.token_file:
        try:
            token = Path(args.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise CLIError(f"cannot read --token-file: {exc}") from None
    token = token or env_token()
    for env_id in args.env_ids:
        env_spec(env_id)  # unknown ids: "did you mean" before anything binds
    kwargs = _parse_kv(args.env_opt)
    if all(accepts(e, "data_root") for e in args.env_ids):
        kwargs = {**_data_kwargs(args, args.env_ids[0]), **kwargs}
    if args.host not in ("127.0.0.1", "localhost", "::1") and token is None:
        import sys

        print(f"opid-bench serve-env: warning: listening on {args.host} without a token", file=sys.stderr)
    try:
        serve(args.env_ids, kwargs, host=args.host, port=args.port, token=token, max_sessions=args.max_sessions,
              session_timeout=args.session_timeout, quiet=args.quiet)
    except OSError as exc:
        raise CLIError(f"cannot listen on {args.host}:{args.port}: {exc}") from None
    return 0
