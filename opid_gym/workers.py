"""Environment worker pools: step many environments side by side, survive their crashes.

A pool owns *slots*; each slot holds one environment instance for one running episode.
The rollout asks the pool to reset or step a batch of slots at once. Two pools share
one interface (:class:`EnvPool`):

* :class:`InProcessPool` steps every environment in the calling process (debugging,
  tests, environments that are cheap and safe to share a process).
* :class:`ProcessPool` spreads slots over worker processes (slot ``s`` lives in worker
  ``s % workers``) and steps all workers concurrently. ALFWorld's engine is not
  thread-safe, hence processes. A worker that dies (killed, segfault) or does not answer
  within ``timeout`` seconds is killed and restarted; every slot it held gets an
  :class:`EnvError` result, so its episode is reported as failed-by-error while all
  other slots carry on untouched.

An exception raised by one environment's ``reset``/``step`` is also returned as an
:class:`EnvError` for that slot (the worker survives).

A third pool, :class:`opid_gym.ray_pool.RayPool`, puts the workers in Ray actors
(other machines' cores), with the same interface and crash semantics.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import signal
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Iterator, Protocol, Sequence

from opid_gym.registry import env_spec


@dataclass
class EnvError:
    """A slot whose environment failed; ``message`` says how."""

    message: str


@dataclass
class ResetResult:
    observation: str
    info: dict[str, Any]


@dataclass
class StepResult:
    observation: str
    reward: float
    terminated: bool
    truncated: bool
    info: dict[str, Any]


class EnvPool(Protocol):
    """What the rollout needs from a pool of environments."""

    in_process: bool
    """Whether the environments run in the caller's process (then a pool call blocks the
    caller, and overlapping environment work with generation gains nothing)."""

    def reset(self, items: Sequence[tuple[int, int, dict[str, Any]]]) -> list[ResetResult | EnvError]:
        """Reset slots: ``(slot, seed, options)`` each. Results are in input order."""
        ...

    def step(self, items: Sequence[tuple[int, str]]) -> list[StepResult | EnvError]:
        """Step slots: ``(slot, action)`` each. Results are in input order."""
        ...

    def close(self) -> None: ...


def _env_class_attr(env: Any, name: str, default: Any = None) -> Any:
    return getattr(getattr(env, "unwrapped", env), name, default)


class _SlotEnvs:
    """The environments of one process, keyed by slot (shared by both pools)."""

    def __init__(self, spec: Any, env_kwargs: dict[str, Any], with_expert: bool) -> None:
        self.spec = spec  # a gymnasium EnvSpec: picklable, so plugin/test envs work in workers
        self.env_kwargs = env_kwargs
        self.with_expert = with_expert
        self.envs: dict[int, Any] = {}

    def _env(self, slot: int) -> Any:
        if slot not in self.envs:
            import gymnasium

            self.envs[slot] = gymnasium.make(self.spec, **self.env_kwargs)
        return self.envs[slot]

    def _expert(self, env: Any, info: dict[str, Any]) -> dict[str, Any]:
        if self.with_expert:
            expert = _env_class_attr(env, "expert_action")
            info["expert_action"] = expert() if expert else None
            plan = _env_class_attr(env, "expert_plan")
            rest = plan() if plan else None
            if rest is not None:  # the expert's remaining plan (the sub-goal it pursues)
                info["expert_plan_rest"] = list(rest)
        return info

    def reset(self, slot: int, seed: int, options: dict[str, Any]) -> ResetResult | EnvError:
        try:
            env = self._env(slot)
            obs, info = env.reset(seed=seed, options=options)
            return ResetResult(obs, self._expert(env, dict(info)))
        except Exception:
            self.drop(slot)
            return EnvError(traceback.format_exc(limit=5))

    def step(self, slot: int, action: str) -> StepResult | EnvError:
        if slot not in self.envs:  # never reset here: a restarted worker lost this slot's episode
            return EnvError(f"environment of slot {slot} lost: its worker process died or hung and was "
                            "restarted after this episode's reset")
        try:
            env = self._env(slot)
            obs, reward, terminated, truncated, info = env.step(action)
            info = dict(info)
            if not (terminated or truncated):
                info = self._expert(env, info)
            return StepResult(obs, float(reward), bool(terminated), bool(truncated), info)
        except Exception:
            self.drop(slot)
            return EnvError(traceback.format_exc(limit=5))

    def drop(self, slot: int) -> None:
        env = self.envs.pop(slot, None)
        if env is not None:
            try:
                env.close()
            except Exception:
                pass

    def close(self) -> None:
        for slot in list(self.envs):
            self.drop(slot)


class InProcessPool:
    """All environments in this process, stepped one after another."""

    in_process = True
    """Nothing to overlap with: the rollout steps it in the calling thread."""

    def __init__(self, env_id: str, env_kwargs: dict[str, Any] | None = None, *, with_expert: bool = False) -> None:
        self._envs = _SlotEnvs(env_spec(env_id), dict(env_kwargs or {}), with_expert)

    def reset(self, items: Sequence[tuple[int, int, dict[str, Any]]]) -> list[ResetResult | EnvError]:
        return [self._envs.reset(slot, seed, options) for slot, seed, options in items]

    def step(self, items: Sequence[tuple[int, str]]) -> list[StepResult | EnvError]:
        return [self._envs.step(slot, action) for slot, action in items]

    def close(self) -> None:
        self._envs.close()

    def __enter__(self) -> InProcessPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _worker_main(conn: Connection, spec: Any, env_kwargs: dict[str, Any], with_expert: bool) -> None:
    envs = _SlotEnvs(spec, env_kwargs, with_expert)
    try:
        while True:
            try:
                cmd, payload = conn.recv()
            except EOFError:
                break
            if cmd == "reset":
                conn.send([envs.reset(*item) for item in payload])
            elif cmd == "step":
                conn.send([envs.step(*item) for item in payload])
            elif cmd == "close":
                break
    except (KeyboardInterrupt, BrokenPipeError, ConnectionResetError):
        pass  # interrupted, or the parent closed the pipe (Ctrl-C, exit): nothing left to answer
    finally:
        envs.close()


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Ignore SIGINT while a worker starts, so the worker ignores it for its whole life.

    A Ctrl-C on a terminal reaches every process of the foreground group; workers that
    ignore it keep answering until the parent, which handles the interrupt, closes them
    (no traceback from half-started workers, finished episodes reach the parent).
    """
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: signals cannot be changed here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class ProcessPool:
    """Environments in ``workers`` processes; dead or hung workers are restarted.

    Args:
        env_id: a registered environment id.
        env_kwargs: constructor arguments for every environment.
        workers: number of worker processes (>= 1).
        with_expert: put the env's ``expert_action()`` in each info (scripted experts).
        timeout: seconds one environment call (reset or step) may take before its worker is
            declared hung; a batch of k items on one worker gets k × timeout.
        start_method: multiprocessing start method (``spawn`` is safe with torch loaded).
    """

    in_process = False

    def __init__(
        self,
        env_id: str,
        env_kwargs: dict[str, Any] | None = None,
        *,
        workers: int = 2,
        with_expert: bool = False,
        timeout: float = 300.0,
        start_method: str = "spawn",
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1 (use InProcessPool for none)")
        self.env_id = env_id
        self.spec = env_spec(env_id)
        self.env_kwargs = dict(env_kwargs or {})
        self.with_expert = with_expert
        self.timeout = timeout
        self._ctx = mp.get_context(start_method)
        self._procs: list[Any] = [None] * workers
        self._conns: list[Connection | None] = [None] * workers
        self.restarts = 0
        for w in range(workers):
            self._start(w)

    @property
    def num_workers(self) -> int:
        return len(self._procs)

    def worker_pid(self, slot: int) -> int:
        """PID of the process that holds ``slot`` (tests kill it on purpose)."""
        return self._procs[slot % self.num_workers].pid

    def _start(self, w: int) -> None:
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(
            target=_worker_main, args=(child, self.spec, self.env_kwargs, self.with_expert), daemon=True
        )
        with _sigint_ignored():  # the child inherits it: Ctrl-C is the parent's to handle
            proc.start()
        child.close()
        self._procs[w] = proc
        self._conns[w] = parent

    def _restart(self, w: int) -> None:
        proc, conn = self._procs[w], self._conns[w]
        if conn is not None:
            conn.close()
        if proc is not None and proc.is_alive():
            proc.kill()
        if proc is not None:
            proc.join(timeout=10)
        self.restarts += 1
        self._start(w)

    def _run(self, cmd: str, items: Sequence[tuple]) -> list[Any]:
        by_worker: dict[int, list[int]] = {}
        for i, item in enumerate(items):
            by_worker.setdefault(item[0] % self.num_workers, []).append(i)
        results: list[Any] = [None] * len(items)
        pending: dict[Connection, int] = {}
        for w, idxs in by_worker.items():
            conn = self._conns[w]
            try:
                assert conn is not None
                conn.send((cmd, [items[i] for i in idxs]))
                pending[conn] = w
            except (OSError, AssertionError):
                self._fail(w, idxs, results, "worker process died")
        # A worker runs its items one after another: each item gets `timeout` seconds.
        start = time.monotonic()
        deadline = {w: start + self.timeout * len(idxs) for w, idxs in by_worker.items()}
        while pending:
            now = time.monotonic()
            first = min(deadline[w] for w in pending.values())
            ready = wait(list(pending), timeout=max(0.0, first - now))
            if not ready:  # hung workers: kill and restart them
                for conn, w in list(pending.items()):
                    if time.monotonic() >= deadline[w]:
                        limit = self.timeout * len(by_worker[w])
                        self._fail(w, by_worker[w], results, f"worker did not answer within {limit:.0f}s")
                        pending.pop(conn)
                continue
            for conn in ready:
                w = pending.pop(conn)  # type: ignore[arg-type]
                try:
                    answer = conn.recv()  # type: ignore[union-attr]
                except (EOFError, OSError):
                    self._fail(w, by_worker[w], results, "worker process died")
                    continue
                for i, res in zip(by_worker[w], answer):
                    results[i] = res
        return results

    def _fail(self, w: int, idxs: list[int], results: list[Any], why: str) -> None:
        proc = self._procs[w]
        code = None
        if proc is not None:
            if proc.is_alive() and "died" in why:
                proc.join(timeout=2)  # a dying process: let it be reaped to learn its exit code
            code = proc.exitcode
        self._restart(w)
        for i in idxs:
            results[i] = EnvError(f"{why} (exit code {code}); worker restarted")

    def reset(self, items: Sequence[tuple[int, int, dict[str, Any]]]) -> list[ResetResult | EnvError]:
        return self._run("reset", items)

    def step(self, items: Sequence[tuple[int, str]]) -> list[StepResult | EnvError]:
        return self._run("step", items)

    def close(self) -> None:
        for w, conn in enumerate(self._conns):
            if conn is None:
                continue
            try:
                conn.send(("close", None))
            except OSError:
                pass
            conn.close()
            self._conns[w] = None
        for proc in self._procs:
            if proc is not None:
                proc.join(timeout=5)
                if proc.is_alive():
                    proc.kill()

    def __enter__(self) -> ProcessPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_pool(
    env_id: str, env_kwargs: dict[str, Any] | None = None, *, workers: int = 0, kind: str = "process", **kwargs: Any
) -> Any:
    """``workers=0``: in-process; ``workers>=1``: that many processes, or with ``kind="ray"``
    that many Ray actors (:class:`opid_gym.ray_pool.RayPool`; ``kwargs`` go to the pool).
    ``kind="auto"``: processes, unless :func:`probe_step_seconds` finds the environment's
    steps cheaper than ``auto_threshold`` seconds (default :data:`CHEAP_STEP_SECONDS`):
    then in-process, where a step costs less than a message to a worker would.
    ``urls=[...]``: environments served by ``opid-bench serve-env`` on those servers
    (:class:`opid_gym.remote.RemotePool`; ``workers`` and ``kind`` are then unused)."""
    urls = kwargs.pop("urls", None)
    if urls:
        from opid_gym.remote import RemotePool

        return RemotePool(env_id, env_kwargs, urls=urls, **kwargs)
    kwargs.pop("token", None)
    if workers <= 0:
        return InProcessPool(env_id, env_kwargs, with_expert=kwargs.get("with_expert", False))
    if kind == "auto":
        threshold = kwargs.pop("auto_threshold", CHEAP_STEP_SECONDS)
        if probe_step_seconds(env_id, env_kwargs) < threshold:
            return InProcessPool(env_id, env_kwargs, with_expert=kwargs.get("with_expert", False))
        kind = "process"
    if kind == "ray":
        from opid_gym.ray_pool import RayPool

        return RayPool(env_id, env_kwargs, workers=workers, **kwargs)
    if kind != "process":
        raise ValueError(f"unknown pool kind {kind!r} (process | ray | auto)")
    return ProcessPool(env_id, env_kwargs, workers=workers, **kwargs)


CHEAP_STEP_SECONDS = 0.002
"""Below this median step time, ``make_pool(kind="auto")`` steps in-process: a round trip
to a worker process (pickling, a pipe, a wake-up) costs about a millisecond on a loaded
2-core machine, so two workers cannot beat one process for such environments."""


def probe_step_seconds(env_id: str, env_kwargs: dict[str, Any] | None = None, *, steps: int = 8) -> float:
    """Median seconds of one ``step`` of ``env_id``, measured in this process.

    Resets task 0 (seed 0) and steps its admissible actions in turn (``"look"`` where it
    lists none); an environment that fails to probe counts as expensive (``inf``).
    """
    envs = _SlotEnvs(env_spec(env_id), dict(env_kwargs or {}), False)
    times: list[float] = []
    try:
        res = envs.reset(0, 0, {"task_index": 0})
        if isinstance(res, EnvError):
            return float("inf")
        info = res.info
        for k in range(steps):
            actions = info.get("admissible_actions") or ["look"]
            t0 = time.perf_counter()
            ans = envs.step(0, actions[k % len(actions)])
            times.append(time.perf_counter() - t0)
            if isinstance(ans, EnvError):
                return float("inf")
            if ans.terminated or ans.truncated:
                res = envs.reset(0, k + 1, {"task_index": 0})
                if isinstance(res, EnvError):
                    break
                ans = res  # type: ignore[assignment]
            info = ans.info
    finally:
        envs.close()
    return sorted(times)[len(times) // 2] if times else float("inf")
