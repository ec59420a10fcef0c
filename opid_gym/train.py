"""The training loop every learner plugs into (started by `opid-bench run` / `resume`, :mod:`opid_gym.launch`).

One training step, for every learner alike (it never looks at the learner's name)::

    rollout    B tasks × G members → trajectories          (env pool + rollout engine)
    prepare    step samples → StepBatch; π_old and π_ref log-probs; learner.prepare
    advantage  learner.advantages(batch) → [N, L]
    update     trainer.update: PPO epochs × mini-batches × micro-batches, learner.loss
    sync       push weights to the rollout engine when it is not the trainer itself
    eval       every ``eval.every`` steps, on the benchmark's evaluation split

then the step's metrics line, its trajectories (``rollouts/``), and every
``checkpoint.every`` steps an atomic checkpoint. Each phase is timed.

Determinism: the task order is a pure function of (seed, step) (:class:`TaskSampler`),
every episode samples from seeds derived from (seed, step, task, member, turn), and
the mini-batch order from (seed, step, epoch). A resumed run therefore continues
exactly where the killed one would have gone: same tasks, same samples, same updates.

Numbering: ``step`` in metrics, checkpoint and eval tags counts completed training
steps (``step_000002`` = the state after two updates). Learners see the 0-based index
of the step being trained (``StepContext.step`` = completed steps before it).

The loop is one of three jobs: :mod:`opid_gym.parts` builds the run's parts from its
config (:func:`~opid_gym.parts.build_parts`; where a sharded trainer and remote
environment workers plug in: :func:`~opid_gym.parts.make_trainer`,
:func:`~opid_gym.parts.make_env_pool`), this module steps, and
:mod:`opid_gym.persistence` saves, restores and finishes. See docs/training.md.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
import warnings
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np

from opid_gym import persistence
from opid_gym.agent import derive_seed
from opid_gym.backend import Closeable, Generation, Generator, Releasable, SamplingParams
from opid_gym.config import RunConfig, config_to_dict
from opid_gym.learner import Learner, RunInfo, StepBatch, StepContext, build_step_batch
from opid_gym.parts import (  # noqa: F401  (re-exported: the builders' historical home)
    RunParts, TaskSampler, build_parts, make_env_pool, make_policy, make_rollout_engine, make_trainer, run_benchmark,
    training_subset,
)
from opid_gym.persistence import LoopState, rng_state, seed_everything, set_rng_state  # noqa: F401
from opid_gym.run_folder import MetricsLog, RunError, RunPaths, step_tag, write_rollouts
from opid_gym.types import Message, Trajectory

if TYPE_CHECKING:
    import torch

    from opid_gym.rollout import ResetPrefetch, RolloutStats
    from opid_gym.trainer import Trainer

PHASES = ("rollout", "prepare", "advantage", "update", "sync", "eval")


# ---------------------------------------------------------------------- timing
class PhaseTimer:
    """Wall-clock seconds per named phase of the current step."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - start

    def reset(self) -> None:
        self.times = {}


# -------------------------------------------------------------- step context
def make_step_context(step: int, run: RunInfo, trainer: Trainer, batch: StepBatch, max_prompt_tokens: int | None,
                      log: Callable[[dict[str, float]], None], *, generator: Generator | None = None,
                      old_logp_source: str = "recompute") -> StepContext:
    """The :class:`StepContext` of one step: the old-policy scoring service over ``batch``.

    ``score_ids(prompt_ids, rows)`` / ``score_messages(messages, rows)`` score the
    response tokens of batch rows ``rows`` (default: all, in order) under the given
    prompts with the trainer's current parameters — π_old, since learners call them
    before the update — without gradient, micro-batched, as ``[len(rows), L]`` with
    the batch's L (0 at padding).
    """

    def score_ids(prompt_ids: Sequence[Sequence[int]], rows: Sequence[int] | None = None) -> torch.Tensor:
        rows = list(range(len(batch))) if rows is None else list(rows)
        if len(prompt_ids) != len(rows):
            raise ValueError(f"{len(prompt_ids)} prompts for {len(rows)} rows")
        return trainer.score(prompt_ids, [batch.response_ids[r] for r in rows], which="policy",
                             width=batch.mask.shape[1])

    def encode_chat(messages: list[Message]) -> tuple[list[int], bool]:
        ids, truncated = trainer.encode_chat(list(messages), max_prompt_tokens)
        return list(ids), bool(truncated)

    def encode(messages: list[Message]) -> list[int]:
        return encode_chat(messages)[0]

    def score_messages(messages: Sequence[list[Message]], rows: Sequence[int] | None = None) -> torch.Tensor:
        return score_ids([encode(m) for m in messages], rows)

    return StepContext(step=step, run=run, score_messages=score_messages, score_ids=score_ids, log=log,
                       token_strings=trainer.token_strings, encode_messages=encode, encode_chat=encode_chat,
                       old_logp_source="sampler" if old_logp_source == "sampler" else "recompute",
                       generate=generator.generate if generator is not None else None)


# -------------------------------------------------------------------- metrics
def rollout_metrics(trajs: Sequence[Trajectory], stats: RolloutStats) -> dict[str, float]:
    """Success, episode length, invalid-action rate, tokens and env steps of a rollout."""
    n = len(trajs)
    steps = sum(t.length for t in trajs)
    return {
        "rollout/success_rate": sum(t.won and t.error is None for t in trajs) / n if n else 0.0,
        "rollout/episode_length": steps / n if n else 0.0,
        "rollout/invalid_rate": sum(t.invalid_steps for t in trajs) / steps if steps else 0.0,
        "rollout/reward_mean": float(np.mean([t.total_reward for t in trajs])) if n else 0.0,
        "rollout/tokens_generated": float(stats.generated_tokens),
        "rollout/env_steps": float(stats.env_steps),
        "rollout/errors": float(sum(t.error is not None for t in trajs)),
        "rollout/episodes": float(n),
    }


def group_order(trajs: Sequence[Trajectory]) -> dict[str, list[Trajectory]]:
    """The trajectories of each group, groups in order of first appearance."""
    groups: dict[str, list[Trajectory]] = {}
    for t in trajs:
        groups.setdefault(t.group_id, []).append(t)
    return groups


def select_groups(kept: list[list[Trajectory]], trajs: Sequence[Trajectory], target: int, *,
                  last: bool) -> tuple[list[list[Trajectory]], int]:
    """One round of dynamic sampling (DAPO, arXiv 2503.14476; reference ``filter_group_data``).

    Adds the groups of ``trajs`` to ``kept`` (in order) until it holds ``target`` groups,
    leaving out groups whose episodes all have the same total reward (zero variance: no
    group-relative signal) unless ``last`` (the final allowed rollout keeps every group).
    Returns (the new list of kept groups, the number of groups left out as zero-variance).
    """
    out = list(kept)
    dropped = 0
    for members in group_order(trajs).values():
        if len(out) >= target:
            break
        rewards = {float(t.total_reward) for t in members}
        if len(rewards) <= 1 and not last:
            dropped += 1
            continue
        out.append(members)
    return out, dropped


class _WithWeights:
    """A generator whose ``generate`` runs inside ``weights()`` (a sharded trainer's full weights)."""

    def __init__(self, generator: Generator, weights: Callable[[], AbstractContextManager[Any]]) -> None:
        self._generator = generator
        self._weights = weights

    def generate(self, prompts: Sequence[list[Message]], params: SamplingParams,
                 seeds: Sequence[int] | None = None) -> list[Generation]:
        with self._weights():
            return self._generator.generate(prompts, params, seeds)


def gather_rollouts(total: int, mine: Sequence[int], trajs: list[Trajectory],
                    stats: RolloutStats) -> tuple[list[Trajectory], RolloutStats]:
    """Every rank's share of a step's episodes → all ``total`` trajectories in episode order
    (the single-process order) and the summed rollout statistics, on every rank."""
    import dataclasses

    from opid_gym.distributed import all_gather_objects
    from opid_gym.rollout import RolloutStats

    ordered: list[Trajectory | None] = [None] * total
    merged = RolloutStats()
    for rows, part, part_stats in all_gather_objects((list(mine), trajs, stats)):
        for i, traj in zip(rows, part):
            ordered[i] = traj
        for f in dataclasses.fields(merged):
            setattr(merged, f.name, getattr(merged, f.name) + getattr(part_stats, f.name))
    missing = [i for i, t in enumerate(ordered) if t is None]
    if missing:
        raise RuntimeError(f"episodes {missing} came back from no rank")
    return ordered, merged  # type: ignore[return-value]


# ------------------------------------------------------------------------ run
class Run:
    """One training run: builds everything from a config, then :meth:`train`.

    Args:
        cfg: the resolved config (saved as ``config.json``).
        run_dir: the run folder.
        resume: continue from the newest complete checkpoint in ``run_dir``.
        progress: show a progress bar (else one line per step on stderr).
        results_db: the results database for the final record (None: its default).
        record_results: append the finished run to the results store.
        quiet: print nothing (benchmark scripts).
    """

    def __init__(self, cfg: RunConfig, run_dir: Path, *, resume: bool = False, progress: bool = False,
                 results_db: str | None = None, record_results: bool = True, quiet: bool = False) -> None:
        self.cfg = cfg
        self.paths = RunPaths(Path(run_dir))
        self.resume = resume
        self.progress = progress
        self.results_db = results_db
        self.record_results = record_results
        self.quiet = quiet
        self.timer = PhaseTimer()
        self.state = LoopState()
        self._step_logs: dict[str, float] = {}
        self._parts: RunParts | None = None  # built by _setup
        self._prefetch: ResetPrefetch | None = None
        from opid_gym.distributed import current

        self.dist = current()  # rank 0 of 1 unless started by torchrun (then set in _setup)

    # ------------------------------------------------------------------ set-up
    def _setup(self) -> None:
        cfg = self.cfg
        from opid_gym.distributed import init_distributed

        self.dist = init_distributed(cfg.model.device)  # one process: rank 0 of 1, nothing to join
        if cfg.env.pool == "ray":  # an optional dependency: fail before the run folder is written
            from opid_gym.ray_pool import _import_ray

            _import_ray()
        self._parts = build_parts(cfg, self.paths.root)

    @property
    def parts(self) -> RunParts:
        """What the run is built from (benchmark, learner, policy, trainer, engine, agents,
        task sampler, history): :func:`~opid_gym.parts.build_parts`, on the first ``train()``."""
        if self._parts is None:
            raise RuntimeError("the run's parts are built when it starts training (Run.train)")
        return self._parts

    def _restore(self) -> None:
        parts = self.parts
        state = persistence.restore(self.paths, sampler=parts.sampler, learner=parts.learner, trainer=parts.trainer,
                                    is_main=self.dist.is_main)
        if state is None:
            return  # killed before the first checkpoint: start over
        self.state = state
        if parts.engine.sync is not None:
            parts.engine.sync.load_weights(parts.trainer.named_weights())

    def _save(self, record: dict[str, Any]) -> None:
        persistence.save(self.paths, self.cfg, self.state, sampler=self.parts.sampler, learner=self.parts.learner,
                         trainer=self.parts.trainer, record=record, is_main=self.dist.is_main)

    # ------------------------------------------------------------------- a step
    def _context(self, step: int) -> StepContext:
        return make_step_context(step, self.parts.learner.run, self.parts.trainer, self._batch,
                                 self.cfg.rollout.max_prompt_tokens, self._step_logs.update,
                                 generator=_WithWeights(self.parts.engine.generator, self._engine_weights),
                                 old_logp_source=self.cfg.rollout.old_logp)

    def _rollout_filtered(self, step: int) -> tuple[list[Trajectory], list[Trajectory], RolloutStats, dict[str, float]]:
        """The step's rollout with optional dynamic sampling (``rollout.filter_groups``).

        Returns (the trajectories to train on, every trajectory generated, the summed
        rollout statistics, the dynamic-sampling metrics). Without ``filter_groups`` the
        two lists are the one rollout. With it: at most ``rollout.max_gen_batches``
        rollouts of the same B tasks (new seeds for each, derived from (seed, step,
        attempt), so a resumed run repeats them), zero-variance groups left out, the last
        rollout unfiltered, and at most B groups kept (:func:`select_groups`).
        """
        roll = self.cfg.rollout
        trajs, stats = self._rollout(step)
        if not roll.filter_groups:
            return trajs, trajs, stats, {}
        every = list(trajs)
        kept, dropped = select_groups([], trajs, roll.tasks_per_step, last=roll.max_gen_batches == 1)
        attempts = 1
        while len(kept) < roll.tasks_per_step and attempts < roll.max_gen_batches:
            more, more_stats = self._rollout(step, attempt=attempts)
            attempts += 1
            every.extend(more)
            for f in dataclasses.fields(stats):
                setattr(stats, f.name, getattr(stats, f.name) + getattr(more_stats, f.name))
            kept, n = select_groups(kept, more, roll.tasks_per_step, last=attempts == roll.max_gen_batches)
            dropped += n
        metrics = {"rollout/gen_batches": float(attempts), "rollout/kept_groups": float(len(kept)),
                   "rollout/dropped_groups": float(dropped)}
        return [t for members in kept for t in members], every, stats, metrics

    def _rollout(self, step: int, attempt: int = 0) -> tuple[list[Trajectory], RolloutStats]:
        from opid_gym.rollout import ResetPrefetch, RolloutStats, run_episodes

        specs, mine = self._step_specs(step, attempt)
        stats = RolloutStats()
        prefetched, self._prefetch = self._prefetch, None
        with self._engine_weights():
            trajs = run_episodes(
                self.pool, self.parts.train_agent, [specs[i] for i in mine],
                **{**self.parts.episodes.episode_args(), "history": self.parts.history},
                max_concurrent=self.cfg.env.max_concurrent, prompt_hook=self.parts.prompt_hook,
                stats=stats, prefetched=prefetched,
            )
        if step + 1 < self.cfg.steps and not self.pool.in_process \
                and not self.cfg.rollout.filter_groups:  # (dynamic sampling may roll out again first)
            # the next step's tasks are a pure function of (seed, step): reset its first
            # episodes in the background while the learner updates (changes no result)
            nxt, nxt_mine = self._step_specs(step + 1)
            self._prefetch = ResetPrefetch(self.pool, [nxt[i] for i in nxt_mine], self.cfg.env.max_concurrent)
        if self.dist.enabled:
            trajs, stats = gather_rollouts(len(specs), mine, trajs, stats)
        return trajs, stats

    def _step_specs(self, step: int, attempt: int = 0) -> tuple[list[Any], list[int]]:
        """The episodes of training step ``step`` (``attempt`` > 0: dynamic sampling's
        refills, with new seeds and group ids for the same tasks) and the indices this
        process runs."""
        from opid_gym.rollout import make_groups

        seed, tag = derive_seed(self.cfg.seed, "rollout", step), f"s{step}g"
        if attempt:
            seed, tag = derive_seed(self.cfg.seed, "rollout", step, "refill", attempt), f"s{step}r{attempt}g"
        tasks = [self.parts.train_tasks[i] for i in self.parts.sampler.tasks(step)]
        specs = make_groups(tasks, self.cfg.rollout.group_size, seed, tag=tag)
        return specs, list(self.dist.shard(range(len(specs))))  # every episode, when there is one process

    def _engine_weights(self) -> Any:
        """Full weights for sampling with the trained model itself (a sharded trainer's
        ``unsharded()``); nothing to do for a single-process trainer or another engine."""
        from opid_gym.trainer import Unsharding

        if self.parts.engine.sync is None and isinstance(self.parts.trainer, Unsharding):
            return self.parts.trainer.unsharded()
        from contextlib import nullcontext

        return nullcontext()

    def _train_step(self, step: int) -> dict[str, Any]:
        """Run training step ``step`` (0-based); returns its metrics record."""
        import torch

        t = self.timer
        t.reset()
        self._step_logs = {}
        start = time.perf_counter()
        with t.phase("rollout"):
            trajs, generated, stats, sampling = self._rollout_filtered(step)
        record: dict[str, Any] = {"step": step + 1}
        record.update(rollout_metrics(generated, stats))  # every episode generated (dynamic sampling: all tries)
        record.update(sampling)
        batch: StepBatch | None = None
        with t.phase("prepare"):
            batch = build_step_batch(trajs, gamma=self.parts.learner.config.gamma)
            self._batch = batch
            ctx = self._context(step)
            if len(batch):
                width = batch.mask.shape[1]
                if not self.parts.learner.needs_old_logp:  # e.g. a supervised loss: no ratio to π_old
                    batch.old_logp = torch.zeros_like(batch.mask)
                elif self.cfg.rollout.old_logp == "sampler":
                    if batch.sampler_logp is None:
                        raise RunError("rollout.old_logp=sampler but the rollout engine returned no log-probs")
                    batch.old_logp = batch.sampler_logp
                else:
                    batch.old_logp = self.parts.trainer.score(batch.prompt_ids, batch.response_ids, width=width)
                if self.parts.learner.needs_ref_logp:
                    batch.ref_logp = self.parts.trainer.score(batch.prompt_ids, batch.response_ids, which="ref",
                                                              width=width)
                self.parts.learner.prepare(batch, ctx)
                if self.dist.enabled:  # every rank ran prepare on the whole batch; rank 0's result wins
                    from opid_gym.distributed import broadcast_object

                    batch.extras, batch.annotations, logs = broadcast_object(
                        (batch.extras, batch.annotations, self._step_logs))
                    self._step_logs.update(logs)
        update_metrics: dict[str, float] = {}
        if len(batch):
            with t.phase("advantage"):
                adv = self.parts.learner.advantages(batch, ctx)
                if tuple(adv.shape) != tuple(batch.mask.shape):
                    raise RuntimeError(f"{self.parts.learner.name}.advantages returned shape {tuple(adv.shape)}, "
                                       f"expected {tuple(batch.mask.shape)}")
                adv = torch.nan_to_num(adv.detach().float()) * batch.mask
            with t.phase("update"):
                if isinstance(self.parts.engine.sync, Releasable):  # a colocated engine frees its memory;
                    self.parts.engine.sync.release()                 # the next load wakes it
                update_metrics = self.parts.trainer.update(batch, adv, self.parts.learner, step=step)
            with t.phase("sync"):
                if self.parts.engine.sync is not None:
                    report = self.parts.engine.sync.load_weights(self.parts.trainer.named_weights())
                    if report is not None:  # the engine's drift check (agents/drift.py)
                        record["sync/drift_mean_abs"] = float(report.mean_abs)
                        record["sync/drift_max_abs"] = float(report.max_abs)
            record["rollout/samples"] = float(len(batch))
            record["rollout/response_length"] = float(batch.mask.sum(1).mean())
            record["advantage/mean"] = float((adv.sum() / batch.mask.sum().clamp(min=1)))
        else:
            warnings.warn(f"step {step + 1}: no step samples to train on (every episode failed?)", stacklevel=2)
        record.update(update_metrics)
        record.update(self._step_logs)
        self.state.step = step + 1
        self.state.tokens_generated += stats.generated_tokens
        self.state.env_steps += stats.env_steps
        every = self.cfg.eval.every
        if every and self.state.step % every == 0 and self.state.step < self.cfg.steps:
            with t.phase("eval"):
                summary = self._evaluate(step_tag(self.state.step))
            record["eval/success_rate"] = summary.success_rate
        if self.dist.is_main and self.cfg.log.rollouts_every and self.state.step % self.cfg.log.rollouts_every == 0:
            write_rollouts(self.paths.rollouts / f"{step_tag(self.state.step)}.jsonl", batch, trajs)
        for phase in PHASES:
            record[f"time/{phase}"] = t.times.get(phase, 0.0)
        record["time/step"] = time.perf_counter() - start
        self.state.seconds = self._elapsed()
        record["time"] = self.state.seconds
        return record

    def _evaluate(self, tag: str) -> Any:
        """Evaluate on rank 0 (the other ranks wait); every rank gets the summary."""
        from opid_gym.distributed import barrier, broadcast_object
        from opid_gym.evaluate import evaluate

        summary = None
        with self._engine_weights():
            if self.dist.is_main:
                summary, _ = evaluate(
                    self.parts.bench, self.parts.eval_agent,
                    agent_name=f"{self.cfg.model.backend}:{self.cfg.model.name}",
                    env_kwargs=self.parts.eval_data_kwargs, limit=self.cfg.eval.limit, workers=self.cfg.env.workers,
                    seed=self.cfg.seed, max_concurrent=self.cfg.env.max_concurrent, out_dir=self.paths.eval_dir(tag),
                    prompt_hook=self.parts.learner.eval_prompt_hook(), env_urls=self.cfg.env.remote_urls,
                    env_timeout=self.cfg.env.remote_timeout,
                )
            barrier()
        summary = broadcast_object(summary)
        self.state.tokens_generated += int(summary.generated_tokens)
        return summary

    # -------------------------------------------------------------------- train
    def train(self) -> dict[str, Any]:
        """Train to ``cfg.steps``, evaluate, write the summary. Returns the summary dict."""
        try:
            return self._train()
        finally:
            sync = self._parts.engine.sync if self._parts is not None else None  # (None: set-up failed)
            if isinstance(sync, Closeable):  # shut the engine down while the process group exists
                sync.close()

    def _train(self) -> dict[str, Any]:
        self._setup()  # everything that can fail on bad input fails before the folder is written
        from opid_gym.distributed import broadcast_object

        main = self.dist.is_main  # with several processes (torchrun) only rank 0 writes the run folder
        if main:
            self.paths.root.mkdir(parents=True, exist_ok=True)
        if main and not self.resume:
            persistence.write_json(self.paths.config, config_to_dict(self.cfg))
        if self.resume:
            self._restore()
        done = main and self.resume and self.state.step >= self.cfg.steps and self.paths.summary.is_file()
        if broadcast_object(done):
            if not self.quiet and main:
                print(f"run {self.paths.root} is already complete", file=sys.stderr)
            return json.loads(self.paths.summary.read_text(encoding="utf-8")) if main else {}
        self._clock = (time.perf_counter(), self.state.seconds)
        log = MetricsLog(self.paths, tensorboard=self.cfg.log.tensorboard,
                         purge_step=self.state.step + 1 if self.resume else None) if main else None
        self.pool = make_env_pool(self.cfg, self.parts.episodes.env_id, self.parts.episodes.env_kwargs,
                                  with_expert=self.parts.learner.needs_expert or self.parts.train_agent.needs_expert)
        self._prefetch = None
        bar = self._bar() if main else None
        try:
            for step in range(self.state.step, self.cfg.steps):
                record = self._train_step(step)
                last = self.state.step == self.cfg.steps
                if last or self.state.step % self.cfg.checkpoint.every == 0:
                    t0 = time.perf_counter()
                    self._save(record)
                    record["time/checkpoint"] = time.perf_counter() - t0
                if log is not None:
                    log.write(record)
                    self._report(bar, record)
        finally:
            if bar is not None:
                bar.close()
            if log is not None:
                log.close()
            if self._prefetch is not None:
                self._prefetch.close()
                self._prefetch = None
            self.pool.close()
        return self._finish()

    def _elapsed(self) -> float:
        """Wall seconds of the whole run so far, across resumes."""
        start, base = self._clock
        return base + time.perf_counter() - start

    def _finish(self) -> dict[str, Any]:
        final = None
        t0 = time.perf_counter()
        if self.cfg.eval.final:
            final = self._evaluate("final")
        self.state.seconds = self._elapsed()
        summary = {
            "learner": self.cfg.learner_name, "benchmark": self.cfg.env.benchmark, "model": self.cfg.model.name,
            "seed": self.cfg.seed, "final_eval": final.to_dict() if final is not None else None,
            "budget": {"steps": self.state.step, "tokens_generated": self.state.tokens_generated,
                       "env_steps": self.state.env_steps, "seconds": self.state.seconds,
                       "train_tasks": len(self.parts.train_tasks), "train_fraction": self.cfg.env.train_fraction},
            "final_eval_seconds": time.perf_counter() - t0,
        }
        if self.dist.enabled:
            summary["processes"] = self.dist.world_size
        if not self.dist.is_main:
            return summary
        persistence.write_json(self.paths.summary, summary)
        if final is not None and self.record_results:
            persistence.record_result(self.results_db, self.cfg, self.state, final, self.paths.root,
                                      eval_skills=self.parts.learner.eval_prompt_hook() is not None)
        if not self.quiet:
            persistence.print_final(summary, self.paths.root)
        return summary

    # ------------------------------------------------------------------ output
    def _bar(self) -> Any:
        if not self.progress:
            return None
        from tqdm import tqdm

        return tqdm(total=self.cfg.steps, initial=self.state.step, desc=f"{self.cfg.learner_name}", unit="step",
                    dynamic_ncols=True, file=sys.stderr)

    def _report(self, bar: Any, record: dict[str, Any]) -> None:
        phases = " ".join(f"{p}={record.get(f'time/{p}', 0.0):.1f}s" for p in PHASES if record.get(f"time/{p}"))
        if bar is not None:
            bar.set_postfix_str(f"success={record['rollout/success_rate']:.2f} {phases}")
            bar.update(1)
        elif not self.quiet:
            print(f"step {record['step']}/{self.cfg.steps}  success={record['rollout/success_rate']:.2f}  "
                  f"len={record['rollout/episode_length']:.1f}  {phases}", file=sys.stderr, flush=True)
