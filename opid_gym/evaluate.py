"""Evaluation on a benchmark's evaluation split, and the metrics every report uses.

The task list is the split's full list in its fixed order, each task ``num_seeds``
times (one seed each). ``limit`` takes a fixed subset: the first ``limit`` tasks of a
permutation drawn with a constant seed, so every agent evaluated with the same limit
sees the same tasks. For benchmarks whose overall number averages task types
(``overall="types"``, e.g. search QA's seven data sets) the subset is stratified:
``limit`` tasks of each type, so every type is evaluated. Episode seeds derive from (run seed, task, repeat) only, so
results do not depend on worker counts or batch sizes.

Failures (docs/faults.md): an episode whose environment worker or model backend failed
(``Trajectory.error``) is run again, up to ``retries`` times (a crashed worker has been
restarted by then; the episode's seed is the same, so a retried episode is what the
first attempt would have been). Episodes that still fail are left out of the score and
counted in ``errors`` (per task type); the summary is then ``complete=False``.

With ``out_dir`` every finished episode is appended to ``trajectories.jsonl`` as it
ends; with ``continue_from`` (the evaluation's identity) a rerun into the same folder
keeps the finished episodes and runs only the rest.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

from opid_gym.agent import Agent, derive_seed
from opid_gym.benchmark import Benchmark
from opid_gym.env import TextEnv
from opid_gym.episode import episode_setup
from opid_gym.registry import make
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
        return _task_types(env.unwrapped)
    finally:
        env.close()


def _task_types(env: Any) -> list[str] | None:
    types = env.task_types() if isinstance(env, TextEnv) else None
    return list(types) if types is not None else None


def eval_episodes(task_indices: Sequence[int], num_seeds: int, seed: int) -> list[EpisodeSpec]:
    return [
        EpisodeSpec(t, derive_seed(seed, "eval", t, r), f"eval-t{t}-r{r}", 0)
        for r in range(num_seeds)
        for t in task_indices
    ]


class EvalOutputError(RuntimeError):
    """The output folder cannot be used (not writable, or it holds another evaluation)."""


IDENTITY_FILE = "eval.json"
"""In an eval output folder: what was evaluated (so a rerun continues only the same evaluation)."""


def check_writable(out_dir: Path) -> None:
    """Create ``out_dir`` and write a probe file in it, before any episode runs."""
    out_dir = Path(out_dir)
    probe = out_dir / f".write-test-{os.getpid()}"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe.write_text("ok", encoding="utf-8")
        probe.unlink()
    except OSError as exc:
        raise EvalOutputError(f"cannot write the evaluation output to {out_dir}: {exc.strerror or exc}") from None


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _finished_episodes(out_dir: Path, identity: dict[str, Any]) -> dict[str, Trajectory]:
    """Episodes an earlier run of the same evaluation finished without error, by ``traj_id``.

    A folder that holds another evaluation (another identity, or eval files without one)
    is refused: an evaluation never overwrites files it did not write.
    """
    ident_path = out_dir / IDENTITY_FILE
    others = [n for n in ("summary.json", "trajectories.jsonl") if (out_dir / n).exists()]
    if not ident_path.exists():
        if others:
            raise EvalOutputError(f"{out_dir} already holds evaluation files ({', '.join(others)}) of another "
                                  "evaluation; choose another --out")
        return {}
    try:
        previous = json.loads(ident_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EvalOutputError(f"{ident_path} is unreadable ({exc}); choose another --out") from None
    if previous != identity:
        diff = sorted(k for k in set(previous) | set(identity) if previous.get(k) != identity.get(k))
        raise EvalOutputError(f"{out_dir} holds another evaluation (it differs in: {', '.join(diff)}); "
                              "choose another --out")
    kept: dict[str, Trajectory] = {}
    path = out_dir / "trajectories.jsonl"
    if path.exists():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                t = Trajectory.from_dict(json.loads(line))
            except (ValueError, TypeError, KeyError):  # a line cut by a kill
                continue
            if t.error is None:
                kept[t.traj_id] = t
    return kept


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
    complete: bool = True
    """False when some episodes failed by error (after retries): they are not in the score."""
    retried: int = 0
    """Episode runs repeated because the environment worker or model backend failed."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(
    trajectories: Sequence[Trajectory], *, benchmark: Benchmark, agent: str, seconds: float = 0.0,
    stats: RolloutStats | None = None, seed: int = 0, limit: int | None = None,
) -> EvalSummary:
    """Success overall and per task type over the scored episodes; errors are counted apart.

    An episode with ``error`` set (its worker or backend failed) is not scored: it is
    counted in ``errors`` (overall and for its task type) and makes the summary
    ``complete=False``; ``episodes`` counts the scored ones.
    ``benchmark.overall == "types"`` makes the overall success the mean of the per-type
    rates (search QA's average over data sets); otherwise it is over all scored episodes.
    """
    per_type: dict[str, TypeStats] = defaultdict(TypeStats)
    rewards, lengths, invalid, steps = [], [], 0, 0
    metric_values: dict[str, list[float]] = defaultdict(list)
    for t in trajectories:
        key = t.task_type or "unknown"
        if t.error is not None:
            per_type[key].errors += 1
            continue
        per_type[key].episodes += 1
        per_type[key].successes += int(t.won)
        rewards.append(t.total_reward)
        lengths.append(t.length)
        invalid += t.invalid_steps
        steps += t.length
        for k, v in t.metrics.items():
            metric_values[k].append(v)
    n = sum(s.episodes for s in per_type.values())
    errors = sum(s.errors for s in per_type.values())
    if benchmark.overall == "types" and any(s.episodes for s in per_type.values()):
        overall = float(np.mean([s.success_rate for s in per_type.values() if s.episodes]))
    else:
        overall = sum(s.successes for s in per_type.values()) / n if n else 0.0
    return EvalSummary(
        benchmark=benchmark.name, agent=agent, episodes=n,
        errors=errors, complete=errors == 0, success_rate=overall,
        per_type={k: {"episodes": s.episodes, "successes": s.successes, "errors": s.errors,
                      "success_rate": s.success_rate} for k, s in sorted(per_type.items())},
        mean_reward=float(np.mean(rewards)) if rewards else 0.0,
        mean_length=float(np.mean(lengths)) if lengths else 0.0,
        invalid_rate=invalid / steps if steps else 0.0,
        metrics={k: float(np.mean(v)) for k, v in metric_values.items()},
        seconds=seconds, env_steps=stats.env_steps if stats else steps,
        generated_tokens=stats.generated_tokens if stats else 0, seed=seed, limit=limit,
        retried=stats.retried if stats else 0,
    )


def write_trajectories(path: Path, trajectories: Sequence[Trajectory]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for t in trajectories:
            f.write(json.dumps(t.to_dict(), ensure_ascii=False) + "\n")


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
    retries: int = 2,
    continue_from: dict[str, Any] | None = None,
    env_urls: Sequence[str] = (),
    env_timeout: float = 300.0,
) -> tuple[EvalSummary, list[Trajectory]]:
    """Evaluate ``agent`` on ``benchmark``; write trajectories and summary under ``out_dir``.

    ``progress``: a progress bar on stderr (``bar``), one stderr line per finished episode
    (``lines``: logs, pipes, ``nohup``), or nothing (``off``).
    ``retries``: how many times an episode that failed by error (worker or backend) is
    run again. ``continue_from``: the evaluation's identity (a JSON-able dict); with it,
    ``out_dir`` keeps the episodes an earlier run of the same evaluation finished, only
    the others run, and a folder holding another evaluation is refused
    (:class:`EvalOutputError`). Without it, ``out_dir``'s files are replaced.
    ``env_urls``: run the episodes on ``opid-bench serve-env`` servers (token from
    ``$OPID_GYM_ENV_TOKEN``; ``env_timeout`` seconds per request) instead of ``workers``.
    """
    if progress not in ("bar", "lines", "off"):
        raise ValueError(f"progress must be 'bar', 'lines' or 'off', got {progress!r}")
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    setup = episode_setup(benchmark, env_kwargs=env_kwargs, inject_data_root=False)  # the caller's data_root
    kwargs = setup.env_kwargs
    pool_options: dict[str, Any] = {}
    if env_urls:
        from opid_gym.remote import env_token

        pool_options = {"urls": list(env_urls), "token": env_token(), "timeout": env_timeout}
    num_tasks, all_types = _catalogue(benchmark.env_id, kwargs, pool_options)
    protocol = resolve_protocol(benchmark, env_kwargs=env_kwargs, limit=limit)
    types = all_types if limit is not None and benchmark.overall == "types" else None
    specs = eval_episodes(eval_task_indices(num_tasks, limit, types), benchmark.num_seeds, seed)
    stream = None
    kept: dict[str, Trajectory] = {}
    if out_dir is not None:
        out_dir = Path(out_dir)
        check_writable(out_dir)
        if continue_from is not None:  # as JSON reads it back (tuples become lists)
            identity = json.loads(json.dumps({**continue_from, "protocol": list(protocol)}, default=str))
            kept = _finished_episodes(out_dir, identity)
            _atomic_write(out_dir / IDENTITY_FILE, json.dumps(identity, indent=1))
        # the kept episodes first (a line cut by a kill is dropped here), then each new one as it ends
        _atomic_write(out_dir / "trajectories.jsonl",
                      "".join(json.dumps(t.to_dict(), ensure_ascii=False) + "\n" for t in kept.values()))
        stream = open(out_dir / "trajectories.jsonl", "a", encoding="utf-8")
    ids = [f"{s.group_id}-m{s.member}" for s in specs]
    todo = [i for i, tid in enumerate(ids) if tid not in kept]
    trajs: list[Trajectory | None] = [kept.get(tid) for tid in ids]
    stats = RolloutStats()
    try:
        with make_pool(benchmark.env_id, kwargs, workers=workers, with_expert=agent.needs_expert,
                       **pool_options) as pool:
            bar = _progress(len(specs), len(specs) - len(todo)) if progress == "bar" else None
            done: list[Trajectory] = []

            def on_done(t: Trajectory) -> None:
                if stream is not None:  # streamed as it ends: a kill or Ctrl-C keeps it
                    stream.write(json.dumps(t.to_dict(), ensure_ascii=False) + "\n")
                    stream.flush()
                if t.error is not None:
                    return  # run again below (or counted as an error)
                done.append(t)
                wins = sum(x.won for x in done)
                rate = stats.env_steps / max(time.perf_counter() - start, 1e-9)
                if bar is not None:
                    bar.set_postfix(success=f"{wins}/{len(done)}", steps_per_s=f"{rate:.1f}")
                    bar.update(1)
                elif progress == "lines":
                    print(f"episode {len(specs) - len(todo) + len(done)}/{len(specs)} {t.task_id}: "
                          f"{'won' if t.won else 'not won'} in {len(t.steps)} steps; success so far "
                          f"{wins}/{len(done)}, {rate:.2f} env steps/s", file=sys.stderr, flush=True)

            start = time.perf_counter()
            for attempt in range(retries + 1):
                if not todo:
                    break
                if attempt:
                    stats.retried += len(todo)
                ran = run_episodes(
                    pool, agent, [specs[i] for i in todo], **setup.episode_args(),
                    # a retry runs one episode per worker at a time: an episode that kills its
                    # worker again takes no other episode down with it
                    max_concurrent=max_concurrent if not attempt or workers <= 0 else workers,
                    on_done=on_done, stats=stats,
                    prompt_hook=prompt_hook,
                )
                for i, t in zip(todo, ran):
                    trajs[i] = t
                todo = [i for i in todo if trajs[i].error is not None]  # type: ignore[union-attr]
            seconds = time.perf_counter() - start
            if bar is not None:
                bar.close()
    finally:
        if stream is not None:
            stream.close()
    final = [t for t in trajs if t is not None]
    if all_types is not None:  # an episode that failed at reset never learnt its task type
        for t in final:
            if not t.task_type and 0 <= t.task_index < len(all_types):
                t.task_type = all_types[t.task_index]
    summary = summarize(final, benchmark=benchmark, agent=agent_name or agent.name, seconds=seconds,
                        stats=stats, seed=seed, limit=limit)
    summary.protocol_id, summary.protocol_hash = protocol
    if out_dir is not None:
        _atomic_write(out_dir / "trajectories.jsonl",
                      "".join(json.dumps(t.to_dict(), ensure_ascii=False) + "\n" for t in final))
        _atomic_write(out_dir / "summary.json", json.dumps(summary.to_dict(), indent=2))
    return summary, final


def _catalogue(env_id: str, env_kwargs: dict[str, Any], pool_options: dict[str, Any]) -> tuple[int, list[str] | None]:
    """The number of tasks and, where the env lists them, every task's type (one env built,
    on the first server when the episodes run on ``serve-env`` servers)."""
    if pool_options.get("urls"):
        from opid_gym.remote import RemoteEnv, check_servers

        check_servers(pool_options["urls"], env_id, token=pool_options["token"], timeout=pool_options["timeout"])
        env = RemoteEnv(pool_options["urls"][0], served_env=env_id, token=pool_options["token"],
                        timeout=pool_options["timeout"], **{k: v for k, v in env_kwargs.items() if k != "data_root"})
    else:
        env = make(env_id, **env_kwargs)
    try:
        return int(env.unwrapped.num_tasks), _task_types(env.unwrapped)
    finally:
        env.close()


def resolve_protocol(
    benchmark: Benchmark, *, env_kwargs: dict[str, Any] | None = None, limit: int | None = None
) -> tuple[str, str]:
    """The benchmark's protocol ``(id, hash)`` (``benchmarks/protocols.py``, loaded lazily)."""
    from opid_gym.builtin import PROTOCOL_RESOLVER
    from opid_gym.registry import load_object

    return load_object(PROTOCOL_RESOLVER)(benchmark, env_kwargs=env_kwargs, limit=limit)


def _progress(total: int, initial: int = 0) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc="episodes", unit="ep", dynamic_ncols=True)
