"""Rolling out episodes: many environments stepped in lockstep against one agent.

``run_episodes`` takes a list of :class:`EpisodeSpec` (which task, which seed, which
group) and returns one :class:`~opid_gym.types.Trajectory` per spec, in the same order.
At most ``max_concurrent`` episodes run at once; when one ends its slot takes the next
pending spec. Each turn, the prompts of all running episodes go to the agent as one
batch, and the parsed actions go to the pool as one batch.

Results do not depend on ``max_concurrent`` or the pool's worker count: environments
are reset with the episode's own seed and agents sample from per-request seeds (see
:mod:`opid_gym.agent`).

Groups (GRPO): the G members of a group share ``task_index`` and ``seed``; only
``member`` differs (it enters the agent's per-request seed, so members sample
different responses from the same start state).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from opid_gym.agent import Agent, AgentRequest, derive_seed
from opid_gym.history import EpisodeView, HistoryManager, PromptTemplate
from opid_gym.parsing import get_parser
from opid_gym.types import Message, Step, Trajectory
from opid_gym.workers import EnvError, EnvPool

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
) -> list[Trajectory]:
    """Run ``episodes`` to completion; see the module docstring."""
    parse = get_parser(action_format)
    stats = stats if stats is not None else RolloutStats()
    limit = max(1, max_concurrent or len(episodes) or 1)
    results: list[Trajectory | None] = [None] * len(episodes)
    running: dict[int, tuple[int, _Running]] = {}  # slot -> (episode index, state)
    free_slots = list(range(limit))[::-1]
    next_ep = 0

    def finish(slot: int) -> None:
        idx, run = running.pop(slot)
        results[idx] = run.traj
        free_slots.append(slot)
        if on_done is not None:
            on_done(run.traj)

    while next_ep < len(episodes) or running:
        # 1. start pending episodes in free slots
        starting = []
        while free_slots and next_ep < len(episodes):
            starting.append((free_slots.pop(), next_ep))
            next_ep += 1
        if starting:
            t0 = time.perf_counter()
            answers = pool.reset(
                [(slot, episodes[i].seed, {"task_index": episodes[i].task_index}) for slot, i in starting]
            )
            stats.env_seconds += time.perf_counter() - t0
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
        if not running:
            continue

        # 2. one agent call for every running episode
        slots = sorted(running)
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

        # 3. parse and step (an episode whose reply is a backend failure ends as an error)
        parsed = [parse(reply.text) for reply in replies]
        stepping = [j for j, reply in enumerate(replies) if getattr(reply, "error", None) is None]
        t0 = time.perf_counter()
        stepped = pool.step([(slots[j], parsed[j].action) for j in stepping]) if stepping else []
        stats.env_seconds += time.perf_counter() - t0
        answers: list[Any] = [EnvError(f"model backend failed: {getattr(reply, 'error', None)}")
                              for reply in replies]
        for j, ans in zip(stepping, stepped):
            answers[j] = ans
        for slot, req, reply, p, ans in zip(slots, requests, replies, parsed, answers):
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
    return [t for t in results if t is not None]
