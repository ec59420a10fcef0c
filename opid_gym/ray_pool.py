"""Environment workers as Ray actors: the :class:`~opid_gym.workers.EnvPool` of a Ray cluster.

:class:`RayPool` is a third implementation of the pool interface beside
``InProcessPool`` and ``ProcessPool``: slot ``s`` lives in actor ``s % workers``, each
actor holds its slots' environments and steps them one after another, and all actors
step concurrently. Actors go wherever the Ray cluster has free CPUs, so rollouts can
use the cores of other machines (``ray start --head`` on one machine, ``ray start
--address=HEAD:6379`` on the others, then ``env.pool=ray`` with
``env.ray_address=HEAD:6379`` or ``auto``; docs/scale.md).

Crash semantics are the process pool's: an actor that dies (killed, segfault, an
environment calling ``os._exit``) or does not answer within ``timeout`` seconds per
item is killed and replaced by a fresh actor; every slot it held gets an
:class:`~opid_gym.workers.EnvError` (the episode is reported as failed by error),
all other slots carry on. One difference: Ray does not report a dead actor's exit
code, so the message says "exit code unknown". An exception inside one environment is
an ``EnvError`` for that slot only (the actor survives).

Environments must be importable on every machine of the cluster (install the package
there); the driver's ``sys.path`` is added to each actor's, which covers a
single-machine cluster and a shared file system.

Ray is optional (``pip install 'opid-gym[ray]'``) and imported only when a pool is made.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Sequence

from opid_gym.registry import env_spec
from opid_gym.workers import EnvError, ResetResult, StepResult, _SlotEnvs

INSTALL_HINT = "the Ray environment pool needs Ray: pip install 'opid-gym[ray]'"


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return ray


class _EnvActor:
    """One Ray actor: the environments of its slots (the process pool's worker, as an actor)."""

    def __init__(self, spec: Any, env_kwargs: dict[str, Any], with_expert: bool, sys_path: list[str]) -> None:
        for path in sys_path:  # the driver's import path (plugin and test environments)
            if path not in sys.path:
                sys.path.append(path)
        self.envs = _SlotEnvs(spec, env_kwargs, with_expert)

    def pid(self) -> int:
        return os.getpid()

    def reset(self, items: list[tuple[int, int, dict[str, Any]]]) -> list[ResetResult | EnvError]:
        return [self.envs.reset(*item) for item in items]

    def step(self, items: list[tuple[int, str]]) -> list[StepResult | EnvError]:
        return [self.envs.step(*item) for item in items]

    def close(self) -> None:
        self.envs.close()


class RayPool:
    """Environments in ``workers`` Ray actors; dead or hung actors are replaced.

    Args:
        env_id: a registered environment id.
        env_kwargs: constructor arguments for every environment.
        workers: number of actors (>= 1).
        with_expert: put the env's ``expert_action()`` in each info (scripted experts).
        timeout: seconds one environment call may take before its actor is declared hung;
            a batch of k items on one actor gets k × timeout.
        num_cpus: CPUs Ray reserves for each actor (fractions allowed).
        address: the Ray cluster to join when Ray is not initialised yet (``auto``, or
            ``HOST:PORT``); None starts a local Ray instance.
        init_kwargs: other ``ray.init`` arguments (only used when this pool initialises Ray).
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
        num_cpus: float = 1.0,
        address: str | None = None,
        init_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1 (use InProcessPool for none)")
        ray = _import_ray()
        if not ray.is_initialized():
            ray.init(address=address, **(init_kwargs or {}))
        self._ray = ray
        self.env_id = env_id
        self.spec = env_spec(env_id)
        self.env_kwargs = dict(env_kwargs or {})
        self.with_expert = with_expert
        self.timeout = timeout
        self._remote = ray.remote(num_cpus=num_cpus, max_restarts=0, max_task_retries=0)(_EnvActor)
        self._actors: list[Any] = [None] * workers
        self._pids: list[int] = [0] * workers
        self.restarts = 0
        for w in range(workers):
            self._start(w)

    @property
    def num_workers(self) -> int:
        return len(self._actors)

    def worker_pid(self, slot: int) -> int:
        """PID of the actor process that holds ``slot`` (tests kill it on purpose)."""
        return self._pids[slot % self.num_workers]

    def _start(self, w: int) -> None:
        actor = self._remote.remote(self.spec, self.env_kwargs, self.with_expert, list(sys.path))
        self._actors[w] = actor
        self._pids[w] = int(self._ray.get(actor.pid.remote(), timeout=max(self.timeout, 60.0)))

    def _restart(self, w: int) -> None:
        actor = self._actors[w]
        if actor is not None:
            try:
                self._ray.kill(actor, no_restart=True)
            except Exception:
                pass
        self.restarts += 1
        self._start(w)

    def _run(self, cmd: str, items: Sequence[tuple]) -> list[Any]:
        ray = self._ray
        by_worker: dict[int, list[int]] = {}
        for i, item in enumerate(items):
            by_worker.setdefault(item[0] % self.num_workers, []).append(i)
        results: list[Any] = [None] * len(items)
        pending: dict[Any, int] = {}
        for w, idxs in by_worker.items():
            pending[getattr(self._actors[w], cmd).remote([items[i] for i in idxs])] = w
        start = time.monotonic()
        deadline = {w: start + self.timeout * len(idxs) for w, idxs in by_worker.items()}
        while pending:
            first = min(deadline[w] for w in pending.values())
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=max(0.0, first - time.monotonic()))
            if not ready:  # hung actors: kill and replace them
                for ref, w in list(pending.items()):
                    if time.monotonic() >= deadline[w]:
                        limit = self.timeout * len(by_worker[w])
                        self._fail(w, by_worker[w], results, f"worker did not answer within {limit:.0f}s")
                        pending.pop(ref)
                continue
            for ref in ready:
                w = pending.pop(ref)
                try:
                    answer = ray.get(ref)
                except ray.exceptions.RayActorError:
                    self._fail(w, by_worker[w], results, "worker process died (exit code unknown: Ray does "
                                                         "not report it)")
                    continue
                for i, res in zip(by_worker[w], answer):
                    results[i] = res
        return results

    def _fail(self, w: int, idxs: list[int], results: list[Any], why: str) -> None:
        self._restart(w)
        for i in idxs:
            results[i] = EnvError(f"{why}; worker restarted")

    def reset(self, items: Sequence[tuple[int, int, dict[str, Any]]]) -> list[ResetResult | EnvError]:
        return self._run("reset", items)

    def step(self, items: Sequence[tuple[int, str]]) -> list[StepResult | EnvError]:
        return self._run("step", items)

    def close(self) -> None:
        """Close every environment and end the actors (Ray itself stays up)."""
        ray = self._ray
        refs = [a.close.remote() for a in self._actors if a is not None]
        try:
            ray.wait(refs, num_returns=len(refs), timeout=10)
        except Exception:
            pass
        for w, actor in enumerate(self._actors):
            if actor is not None:
                try:
                    ray.kill(actor, no_restart=True)
                except Exception:
                    pass
                self._actors[w] = None

    def __enter__(self) -> RayPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
