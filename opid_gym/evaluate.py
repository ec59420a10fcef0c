"""Evaluation on a benchmark's evaluation split, and the metrics every report uses.

The task list is the split's full list in its fixed order, each task ``num_seeds``
times (one seed each). ``limit`` takes a fixed subset: the first ``limit`` tasks of a
permutation drawn with a constant seed, so every agent evaluated with the same limit
sees the same tasks. For benchmarks whose overall number averages task types
(``overall="types"``, e.g. search QA's seven data sets) the subset is stratified:
``limit`` tasks of each type, so every type is evaluated. Episode seeds derive from (run seed, task, repeat) only, so
results do not depend on worker counts or batch sizes.
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

from opid_gym.agent import Agent, derive_seed
from opid_gym.benchmark import Benchmark
from opid_gym.history import make_history
from opid_gym.registry import env_class, make
from opid_gym.rollout import EpisodeSpec, RolloutStats, run_episodes
from opid_gym.types import Trajectory
from opid_gym.workers import make_pool

SUBSET_SEED = 20260601
"""The constant seed of ``--limit`` subsets (part of the protocol, never the run seed)."""


def count_tasks(env_id: str, env_kwargs: dict[str, Any]) -> int:
    env = make(env_id, **env_kwargs)
    try:
        return int(env.unwrapped.num_tasks)
    finally:
        env.close()


def eval_task_indices(num_tasks: int, limit: int | None = None, types: Sequence[str] | None = None) -> list[int]:
    """All tasks, or a fixed seeded subset of ``limit`` tasks (sorted).

    With ``types`` (the task type of every task), ``limit`` tasks of each type are taken,
    each type's subset drawn as above from that type's tasks.
    """
    if limit is None or limit >= num_tasks:
        return list(range(num_tasks))
    if types is not None:
        by_type: dict[str, list[int]] = defaultdict(list)
        for i, t in enumerate(types):
            by_type[t].append(i)
        return sorted(members[j] for members in by_type.values()
                      for j in eval_task_indices(len(members), limit))
    perm = np.random.default_rng(SUBSET_SEED).permutation(num_tasks)
    return sorted(int(i) for i in perm[:limit])


def task_types(env_id: str, env_kwargs: dict[str, Any]) -> list[str] | None:
    """The task type of every task, where the env lists them (``task_types()``)."""
    env = make(env_id, **env_kwargs)
    try:
        fn = getattr(env.unwrapped, "task_types", None)
        return list(fn()) if callable(fn) else None
    finally:
        env.close()


def eval_episodes(task_indices: Sequence[int], num_seeds: int, seed: int) -> list[EpisodeSpec]:
    return [
        EpisodeSpec(t, derive_seed(seed, "eval", t, r), f"eval-t{t}-r{r}", 0)
        for r in range(num_seeds)
        for t in task_indices
    ]


@dataclass
class TypeStats:
    episodes: int = 0
    successes: int = 0
    errors: int = 0

    @property
    def success_rate(self) -> float:
        return self.successes / self.episodes if self.episodes else 0.0


@dataclass
class EvalSummary:
    """What ``opid-bench eval --json`` prints and ``summary.json`` holds."""

    benchmark: str
    agent: str
    episodes: int
    errors: int
    success_rate: float
    per_type: dict[str, dict[str, float]]
    mean_reward: float
    mean_length: float
    invalid_rate: float
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    env_steps: int = 0
    generated_tokens: int = 0
    seed: int = 0
    limit: int | None = None
    protocol_id: str | None = None
    protocol_hash: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(
    trajectories: Sequence[Trajectory], *, benchmark: Benchmark, agent: str, seconds: float = 0.0,
    stats: RolloutStats | None = None, seed: int = 0, limit: int | None = None,
) -> EvalSummary:
    """Success overall and per task type; errors count as failures and are reported apart.

    ``benchmark.overall == "types"`` makes the overall success the mean of the per-type
    rates (search QA's average over data sets); otherwise it is over all episodes.
    """
    per_type: dict[str, TypeStats] = defaultdict(TypeStats)
    rewards, lengths, invalid, steps = [], [], 0, 0
    metric_values: dict[str, list[float]] = defaultdict(list)
    for t in trajectories:
        key = t.task_type or "unknown"
        per_type[key].episodes += 1
        per_type[key].successes += int(t.won and t.error is None)
        per_type[key].errors += int(t.error is not None)
        rewards.append(t.total_reward)
        lengths.append(t.length)
        invalid += t.invalid_steps
        steps += t.length
        for k, v in t.metrics.items():
            metric_values[k].append(v)
    n = len(trajectories)
    if benchmark.overall == "types" and per_type:
        overall = float(np.mean([s.success_rate for s in per_type.values()]))
    else:
        overall = sum(s.successes for s in per_type.values()) / n if n else 0.0
    return EvalSummary(
        benchmark=benchmark.name, agent=agent, episodes=n,
        errors=sum(s.errors for s in per_type.values()), success_rate=overall,
        per_type={k: {"episodes": s.episodes, "successes": s.successes, "errors": s.errors,
                      "success_rate": s.success_rate} for k, s in sorted(per_type.items())},
        mean_reward=float(np.mean(rewards)) if rewards else 0.0,
        mean_length=float(np.mean(lengths)) if lengths else 0.0,
        invalid_rate=invalid / steps if steps else 0.0,
        metrics={k: float(np.mean(v)) for k, v in metric_values.items()},
        seconds=seconds, env_steps=stats.env_steps if stats else steps,
        generated_tokens=stats.generated_tokens if stats else 0, seed=seed, limit=limit,
    )


def write_trajectories(path: Path, trajectories: Sequence[Trajectory]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for t in trajectories:
            f.write(json.dumps(t.to_dict(), ensure_ascii=False) + "\n")


def read_trajectories(path: Path) -> list[Trajectory]:
    with open(path, encoding="utf-8") as f:
        return [Trajectory.from_dict(json.loads(line)) for line in f if line.strip()]


def evaluate(
    benchmark: Benchmark,
    agent: Agent,
    *,
    agent_name: str | None = None,
    env_kwargs: dict[str, Any] | None = None,
    limit: int | None = None,
    workers: int = 0,
    seed: int = 0,
    max_concurrent: int | None = None,
    out_dir: Path | None = None,
    progress: Literal["bar", "lines", "off"] = "off",
    prompt_hook: Any = None,
) -> tuple[EvalSummary, list[Trajectory]]:
    """Evaluate ``agent`` on ``benchmark``; write trajectories and summary under ``out_dir``.

    ``progress``: a progress bar on stderr (``bar``), one stderr line per finished episode
    (``lines``: logs, pipes, ``nohup``), or nothing (``off``).
    """
    if progress not in ("bar", "lines", "off"):
        raise ValueError(f"progress must be 'bar', 'lines' or 'off', got {progress!r}")
    cls = env_class(benchmark.env_id)
    kwargs = {**benchmark.eval_env_kwargs(), **(env_kwargs or {})}
    num_tasks = count_tasks(benchmark.env_id, kwargs)
    protocol = resolve_protocol(benchmark, env_kwargs=env_kwargs, limit=limit)
    with make_pool(benchmark.env_id, kwargs, workers=workers, with_expert=agent.needs_expert) as pool:
        types = task_types(benchmark.env_id, kwargs) if limit is not None and benchmark.overall == "types" else None
        specs = eval_episodes(eval_task_indices(num_tasks, limit, types), benchmark.num_seeds, seed)
        stats = RolloutStats()
        bar = _progress(len(specs)) if progress == "bar" else None
        done: list[Trajectory] = []

        def on_done(t: Trajectory) -> None:
            done.append(t)
            wins = sum(x.won for x in done)
            rate = stats.env_steps / max(time.perf_counter() - start, 1e-9)
            if bar is not None:
                bar.set_postfix(success=f"{wins}/{len(done)}", steps_per_s=f"{rate:.1f}")
                bar.update(1)
            elif progress == "lines":
                print(f"episode {len(done)}/{len(specs)} {t.task_id}: {'won' if t.won else 'not won'} "
                      f"in {len(t.steps)} steps; success so far {wins}/{len(done)}, {rate:.2f} env steps/s",
                      file=sys.stderr, flush=True)

        start = time.perf_counter()
        trajs = run_episodes(
            pool, agent, specs, env_id=benchmark.env_id, template=cls.prompt,
            action_format=cls.action_format,
            history=make_history(benchmark.history, **({"length": benchmark.history_length}
                                                       if benchmark.history == "window" else {})),
            max_concurrent=max_concurrent, metric_keys=getattr(cls, "metric_keys", ()),
            on_done=on_done, stats=stats, prompt_hook=prompt_hook,
        )
        seconds = time.perf_counter() - start
        if bar is not None:
            bar.close()
    summary = summarize(trajs, benchmark=benchmark, agent=agent_name or agent.name, seconds=seconds,
                        stats=stats, seed=seed, limit=limit)
    summary.protocol_id, summary.protocol_hash = protocol
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_trajectories(out_dir / "trajectories.jsonl", trajs)
        (out_dir / "summary.json").write_text(json.dumps(summary.to_dict(), indent=2))
    return summary, trajs


def resolve_protocol(
    benchmark: Benchmark, *, env_kwargs: dict[str, Any] | None = None, limit: int | None = None
) -> tuple[str, str]:
    """The benchmark's protocol ``(id, hash)`` (``benchmarks/protocols.py``, loaded lazily)."""
    from opid_gym.builtin import PROTOCOL_RESOLVER
    from opid_gym.registry import load_object

    return load_object(PROTOCOL_RESOLVER)(benchmark, env_kwargs=env_kwargs, limit=limit)


def _progress(total: int) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc="episodes", unit="ep", dynamic_ncols=True)
