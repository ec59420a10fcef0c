"""Rolling out episodes: many environments stepped in lockstep against one agent.

``run_episodes`` takes a list of :class:`EpisodeSpec` (which task, which seed, which
group) and returns one :class:`~opid_gym.types.Trajectory` per spec, in the same order.
At most ``max_concurrent`` episodes run at once; when one ends its slot takes the next
pending spec. Each turn, the prompts of all running episodes go to the agent as one
batch, and the parsed actions go to the pool as one batch.

Results do not depend on ``max_concurrent`` or the pool's worker count: environments
are reset with the episode's own seed and agents sample from per-request seeds (see
:mod:`opid_gym.agent`).

Overlap (on by default for worker pools): the running episodes form two waves; while
the pool steps (and resets) one wave in a background thread, the agent acts for the
other, so the model and the environments work at the same time. For the same reason
as above this changes no result (``tests/test_rollout_overlap.py`` checks trajectories
bit for bit against the sequential path). :class:`ResetPrefetch` starts a later call's
first resets ahead of time (the training loop: during the learner's update).

Groups (GRPO): the G members of a group share ``task_index`` and ``seed``; only
``member`` differs (it enters the agent's per-request seed, so members sample
different responses from the same start state).
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from opid_gym.agent import Agent, AgentRequest, derive_seed
from opid_gym.history import EpisodeView, HistoryManager, PromptTemplate
from opid_gym.parsing import get_parser
from opid_gym.types import Message, Step, Trajectory
from opid_gym.workers import EnvError, EnvPool, ResetResult, StepResult

PromptHook = Callable[[list[Message], dict[str, Any]], list[Message]]
"""Rewrites the rendered prompt of a step (e.g. Skill-GRPO adds library skills)."""


@dataclass(frozen=True)
class EpisodeSpec:
    """One episode to run: task ``task_index`` of the env's split, reset with ``seed``."""

    task_index: int
    seed: int
    group_id: str
    member: int = 0


def make_groups(task_indices: Sequence[int], group_size: int, seed: int, tag: str = "g") -> list[EpisodeSpec]:
    """B tasks × G members; the members of a group share the task and the seed."""
    specs = []
    for b, task in enumerate(task_indices):
        gseed = derive_seed(seed, tag, b, task)
        for m in range(group_size):
            specs.append(EpisodeSpec(int(task), gseed, f"{tag}{b}-t{task}", m))
    return specs


@dataclass
class RolloutStats:
    env_steps: int = 0
    agent_calls: int = 0
    generated_tokens: int = 0
    agent_seconds: float = 0.0
    env_seconds: float = 0.0
    errors: int = 0
    retried: int = 0


@dataclass
class _Running:
    spec: EpisodeSpec
    traj: Trajectory
    observation: str
    info: dict[str, Any]
    history: list[tuple[str, str]] = field(default_factory=list)


class ResetPrefetch:
    """Resets of a future :func:`run_episodes` call, started now in a background thread.

    The first ``max_concurrent`` episodes of a call go to slots 0, 1, ... in order, so
    their resets are known in advance: ``(slot i, spec.seed, task_index)``. A reset is a
    pure function of those, so :func:`run_episodes` can use the answers computed here
    instead of resetting again (it checks that the items match; otherwise it resets as
    usual). The training loop starts the next step's resets while the learner updates.
    """

    def __init__(self, pool: EnvPool, episodes: Sequence[EpisodeSpec], max_concurrent: int | None = None) -> None:
        limit = max(1, max_concurrent or len(episodes) or 1)
        self.items = [(slot, spec.seed, {"task_index": spec.task_index})
                      for slot, spec in enumerate(list(episodes)[:limit])]
        self.seconds = 0.0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="opid-reset-prefetch")
        self._future: Future | None = self._executor.submit(self._reset, pool)

    def _reset(self, pool: EnvPool) -> list[ResetResult | EnvError]:
        t0 = time.perf_counter()
        try:
            return pool.reset(self.items) if self.items else []
        finally:
            self.seconds = time.perf_counter() - t0

    def take(self, items: Sequence[tuple[int, int, dict[str, Any]]]) -> list[ResetResult | EnvError] | None:
        """The prefetched answers if ``items`` are exactly the prefetched resets, else None.

        Always waits for the prefetch to finish (the pool is not shared with it after this).
        """
        answers = self.wait()
        return answers if answers is not None and list(items) == self.items else None

    def wait(self) -> list[ResetResult | EnvError] | None:
        """Wait for the background resets; their answers (None once taken or on failure)."""
        future, self._future = self._future, None
        if future is None:
            return None
        try:
            return future.result()
        except Exception:  # the rollout resets these episodes again and sees the error itself
            return None
        finally:
            self._executor.shutdown(wait=True)

    close = wait


class _Background:
    """One pool call at a time in a background thread, so the model can work meanwhile."""

    def __init__(self, pool: EnvPool) -> None:
        self.pool = pool
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="opid-env")

    def submit(self, steps: list[tuple[int, str]], resets: list[tuple[int, int, dict[str, Any]]]) -> Future:
        def job() -> tuple[list[Any], list[Any], float]:
            t0 = time.perf_counter()
            step_answers = self.pool.step(steps) if steps else []
            reset_answers = self.pool.reset(resets) if resets else []
            return step_answers, reset_answers, time.perf_counter() - t0

        return self.executor.submit(job)

    def close(self) -> None:
        self.executor.shutdown(wait=True)


def run_episodes(
    pool: EnvPool,
    agent: Agent,
    episodes: Sequence[EpisodeSpec],
    *,
    env_id: str,
    template: PromptTemplate,
    action_format: str,
    history: HistoryManager,
    max_concurrent: int | None = None,
    prompt_hook: PromptHook | None = None,
    metric_keys: Sequence[str] = (),
    on_done: Callable[[Trajectory], None] | None = None,
    stats: RolloutStats | None = None,
    traj_prefix: str = "",
    overlap: bool | None = None,
    prefetched: ResetPrefetch | None = None,
) -> list[Trajectory]:
    """Run ``episodes`` to completion; see the module docstring.

    ``overlap``: step (and reset) one half of the running episodes in a background thread
    while the agent acts for the other half (None: on for worker pools, off in-process).
    ``prefetched``: resets started earlier for these episodes (:class:`ResetPrefetch`).
    Neither changes any result: episodes are independent and seeded per request.
    """
    parse = get_parser(action_format)
    stats = stats if stats is not None else RolloutStats()
    limit = max(1, max_concurrent or len(episodes) or 1)
    results: list[Trajectory | None] = [None] * len(episodes)
    running: dict[int, tuple[int, _Running]] = {}  # slot -> (episode index, state)
    free_slots = list(range(limit))[::-1]
    next_ep = 0
    if overlap is None:
        overlap = not pool.in_process

    def finish(slot: int) -> None:
        idx, run = running.pop(slot)
        results[idx] = run.traj
        free_slots.append(slot)
        if on_done is not None:
            on_done(run.traj)

    def claim_starts() -> list[tuple[int, int]]:
        nonlocal next_ep
        starting = []
        while free_slots and next_ep < len(episodes):
            starting.append((free_slots.pop(), next_ep))
            next_ep += 1
        return starting

    def reset_items(starting: list[tuple[int, int]]) -> list[tuple[int, int, dict[str, Any]]]:
        return [(slot, episodes[i].seed, {"task_index": episodes[i].task_index}) for slot, i in starting]

    def start(starting: list[tuple[int, int]], answers: Sequence[ResetResult | EnvError]) -> list[int]:
        """Record reset answers; returns the slots whose episodes now run."""
        started = []
        for (slot, i), ans in zip(starting, answers):
            spec = episodes[i]
            traj = Trajectory(
                traj_id=f"{traj_prefix}{spec.group_id}-m{spec.member}", env_id=env_id,
                task_index=spec.task_index, task_id="", task_type="", task="",
                seed=spec.seed, group_id=spec.group_id, member=spec.member,
            )
            if isinstance(ans, EnvError):
                traj.error = ans.message
                stats.errors += 1
                results[i] = traj
                free_slots.append(slot)
                if on_done is not None:
                    on_done(traj)
                continue
            info = ans.info
            traj.task_id = str(info.get("task_id", ""))
            traj.task_type = str(info.get("task_type", ""))
            traj.task = str(info.get("task", ""))
            plan = info.get("expert_plan")
            traj.expert_plan = list(plan) if plan else None
            running[slot] = (i, _Running(spec, traj, ans.observation, info))
            started.append(slot)
        return started

    def act(slots: list[int]) -> list[tuple[int, AgentRequest, Any, Any]]:
        """One agent call for ``slots``; returns (slot, request, reply, parsed) each."""
        requests = []
        for slot in slots:
            _, run = running[slot]
            view = EpisodeView(
                task=run.traj.task, observation=run.observation, step=len(run.traj.steps),
                history=run.history, admissible_actions=run.info.get("admissible_actions"),
            )
            messages = history.render(template, view)
            if prompt_hook is not None:
                messages = prompt_hook(messages, run.info)
            requests.append(AgentRequest(
                messages=messages,
                seed=derive_seed(run.spec.seed, run.spec.task_index, run.spec.member, len(run.traj.steps)),
                step=len(run.traj.steps), observation=run.observation,
                admissible_actions=run.info.get("admissible_actions"),
                expert_action=run.info.get("expert_action"), action_format=action_format, info=run.info,
            ))
        t0 = time.perf_counter()
        replies = agent.act(requests)
        stats.agent_seconds += time.perf_counter() - t0
        stats.agent_calls += 1
        if len(replies) != len(requests):
            raise RuntimeError(f"agent {agent.name!r} answered {len(replies)} of {len(requests)} requests")
        return [(slot, req, reply, parse(reply.text)) for slot, req, reply in zip(slots, requests, replies)]

    def to_step(acted: list[tuple[int, AgentRequest, Any, Any]]) -> list[tuple[int, str]]:
        """The (slot, action) pairs to step; a reply that is a backend failure is not stepped."""
        return [(slot, p.action) for slot, _, reply, p in acted if getattr(reply, "error", None) is None]

    def with_failures(acted: list[tuple[int, AgentRequest, Any, Any]],
                      stepped: Sequence[StepResult | EnvError]) -> list[StepResult | EnvError]:
        """Step answers aligned with ``acted``: an episode whose reply is a backend failure ends as an error."""
        answers = iter(stepped)
        return [EnvError(f"model backend failed: {reply.error}") if getattr(reply, "error", None) is not None
                else next(answers) for _, _, reply, _ in acted]

    def record(acted: list[tuple[int, AgentRequest, Any, Any]], answers: Sequence[StepResult | EnvError]) -> list[int]:
        """Record step answers; returns the slots whose episodes go on."""
        going_on = []
        for (slot, req, reply, p), ans in zip(acted, with_failures(acted, answers)):
            _, run = running[slot]
            if reply.token_ids is not None:
                stats.generated_tokens += len(reply.token_ids)
            if isinstance(ans, EnvError):
                run.traj.error = ans.message
                stats.errors += 1
                finish(slot)
                continue
            stats.env_steps += 1
            info = {k: v for k, v in ans.info.items() if k not in ("expert_plan",)}
            run.traj.steps.append(Step(
                index=len(run.traj.steps), observation=run.observation, prompt=req.messages,
                response=reply.text, action=p.action, valid=p.valid, next_observation=ans.observation,
                reward=ans.reward, terminated=ans.terminated, truncated=ans.truncated, info=info,
                prompt_token_ids=reply.prompt_token_ids, response_token_ids=reply.token_ids,
                response_logprobs=reply.logprobs, parse_error=p.error, expert_action=req.expert_action,
            ))
            run.history.append((run.observation, p.action))
            run.observation = ans.observation
            run.info = ans.info
            if ans.terminated or ans.truncated:
                run.traj.won = bool(ans.info.get("won", False))
                run.traj.terminated = ans.terminated
                run.traj.truncated = ans.truncated
                for key in metric_keys:
                    if key in ans.info and isinstance(ans.info[key], (int, float)):
                        run.traj.metrics[key] = float(ans.info[key])
                finish(slot)
            else:
                going_on.append(slot)
        return going_on

    def first_resets() -> list[int]:
        starting = claim_starts()
        if not starting:
            return []
        items = reset_items(starting)
        answers = prefetched.take(items) if prefetched is not None else None
        if answers is None:
            t0 = time.perf_counter()
            answers = pool.reset(items)
            stats.env_seconds += time.perf_counter() - t0
        return start(starting, answers)

    if not overlap:
        first = True
        while next_ep < len(episodes) or running:
            # 1. start pending episodes in free slots
            if first:
                first_resets()
                first = False
            else:
                starting = claim_starts()
                if starting:
                    t0 = time.perf_counter()
                    answers = pool.reset(reset_items(starting))
                    stats.env_seconds += time.perf_counter() - t0
                    start(starting, answers)
            if not running:
                continue
            # 2. one agent call for every running episode, 3. parse and step
            acted = act(sorted(running))
            items = to_step(acted)
            t0 = time.perf_counter()
            answers = pool.step(items) if items else []
            stats.env_seconds += time.perf_counter() - t0
            record(acted, answers)
        return [t for t in results if t is not None]

    # Overlapped: episodes form two waves. While the environments step (or reset) one
    # wave in the background thread, the agent acts for the other; then they swap.
    ready: list[int] = first_resets()  # slots waiting for an action
    background = _Background(pool)
    inflight: Future | None = None
    inflight_acted: list[tuple[int, AgentRequest, Any, Any]] = []
    inflight_starting: list[tuple[int, int]] = []
    try:
        while ready or inflight is not None or next_ep < len(episodes):
            acted: list[tuple[int, AgentRequest, Any, Any]] = []
            if ready:
                ready.sort()
                # nothing in flight: act for half now, the other half while the first steps
                take = ready if inflight is not None or len(ready) < 2 else ready[:(len(ready) + 1) // 2]
                ready = ready[len(take):]
                acted = act(take)
            if inflight is not None:
                step_answers, reset_answers, seconds = inflight.result()
                stats.env_seconds += seconds
                inflight = None
                ready += record(inflight_acted, step_answers)
                ready += start(inflight_starting, reset_answers)
            starting = claim_starts()
            if acted or starting:
                inflight_acted, inflight_starting = acted, starting
                inflight = background.submit(to_step(acted), reset_items(starting))
    finally:
        background.close()
    return [t for t in results if t is not None]
