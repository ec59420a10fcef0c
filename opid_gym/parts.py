"""Building a training run's parts from its config: the first of the loop's three jobs.

:func:`build_parts` turns a :class:`~opid_gym.config.RunConfig` into a :class:`RunParts`
(benchmark, episode wiring, learner, policy, trainer, rollout engine, agents, task
order); :mod:`opid_gym.train` runs the step loop over them and
:mod:`opid_gym.persistence` saves, restores and finishes. Every seam is a Protocol:
:class:`~opid_gym.trainer.Trainer`, :class:`~opid_gym.backend.Generator`,
:class:`~opid_gym.backend.WeightSync`, :class:`~opid_gym.workers.EnvPool`,
:class:`~opid_gym.agent.Agent`.

Where a sharded trainer and remote environment workers plug in: :func:`make_trainer`
and :func:`make_env_pool`. See docs/training.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from opid_gym import builtin
from opid_gym.agent import Agent, derive_seed
from opid_gym.backend import Generator, SamplingParams, TrainablePolicy, WeightSync
from opid_gym.benchmark import Benchmark
from opid_gym.config import RunConfig, learner_class
from opid_gym.episode import EpisodeSetup, data_kwargs, episode_setup
from opid_gym.history import HistoryManager
from opid_gym.learner import Learner, RunInfo
from opid_gym.persistence import seed_everything
from opid_gym.registry import load_object
from opid_gym.rollout import PromptHook
from opid_gym.run_folder import RunError

if TYPE_CHECKING:
    from opid_gym.trainer import Trainer
    from opid_gym.workers import EnvPool


# ----------------------------------------------------------------- data order
@dataclass(frozen=True)
class TaskSampler:
    """Which training tasks step ``s`` rolls out: a pure function of (seed, s).

    Tasks are dealt in epochs: each epoch is a fresh seeded permutation of all
    tasks, and step s takes positions [s·B, (s+1)·B) of the concatenated epochs, so
    every task is seen once per epoch and a resumed run sees the same order.
    """

    num_tasks: int
    per_step: int
    seed: int

    def tasks(self, step: int) -> list[int]:
        out = []
        for pos in range(step * self.per_step, (step + 1) * self.per_step):
            epoch, offset = divmod(pos, self.num_tasks)
            perm = np.random.default_rng(derive_seed(self.seed, "tasks", epoch)).permutation(self.num_tasks)
            out.append(int(perm[offset]))
        return out

    def state_dict(self) -> dict[str, int]:
        return {"num_tasks": self.num_tasks, "per_step": self.per_step, "seed": self.seed}


def training_subset(num_tasks: int, fraction: float, seed: int) -> list[int]:
    """The training tasks a run with ``env.train_fraction = fraction`` uses (sorted).

    The first ``max(1, round(fraction * num_tasks))`` tasks of one seeded permutation of
    all tasks: a pure function of (num_tasks, fraction, seed), independent of the
    learner, and nested across fractions (the 20% subset lies inside the 60% one).
    ``fraction = 1`` is every task.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if fraction >= 1:
        return list(range(num_tasks))
    keep = max(1, min(num_tasks, round(fraction * num_tasks)))
    perm = np.random.default_rng(derive_seed(seed, "train-subset")).permutation(num_tasks)
    return sorted(int(i) for i in perm[:keep])


# ------------------------------------------------------- plug-in points (build)
def make_policy(cfg: RunConfig) -> TrainablePolicy:
    """The trainable policy of ``model.backend`` (:data:`opid_gym.builtin.POLICY_BACKENDS`)."""
    from opid_gym.registry import UnknownNameError, suggest

    if cfg.model.backend not in builtin.POLICY_BACKENDS:
        raise UnknownNameError(f"unknown model backend {cfg.model.backend!r}."
                               + suggest(cfg.model.backend, list(builtin.POLICY_BACKENDS)))
    if cfg.model.name.startswith("run:"):  # another run's final weights (opid_gym/warm_start.py)
        from opid_gym.warm_start import policy_from_run

        return policy_from_run(cfg, make_policy)
    from opid_gym.distributed import device_for

    model = cfg.model
    if device_for(model.device) != model.device:  # under torchrun: this rank's GPU
        import dataclasses

        model = dataclasses.replace(model, device=device_for(model.device))
    return load_object(builtin.POLICY_BACKENDS[cfg.model.backend])(model)


def make_trainer(cfg: RunConfig, policy: TrainablePolicy, learner: Learner) -> Trainer:
    """The :class:`~opid_gym.trainer.Trainer`: the single-process one, or under ``torchrun``
    with several processes the FSDP2 one (:class:`~opid_gym.sharded.ShardedTrainer`).

    The loop only calls the Trainer protocol.
    """
    from opid_gym.distributed import current

    if current().enabled:
        from opid_gym.sharded import ShardedTrainer, fsdp_settings

        return ShardedTrainer(policy, cfg.optim, total_steps=cfg.steps, keep_ref=learner.needs_ref_logp,
                              seed=cfg.seed, fsdp=fsdp_settings(cfg.model))
    from opid_gym.trainer import LocalTrainer

    return LocalTrainer(policy, cfg.optim, total_steps=cfg.steps, keep_ref=learner.needs_ref_logp, seed=cfg.seed)


def make_rollout_engine(cfg: RunConfig, policy: TrainablePolicy) -> RolloutEngine:
    """The generator and the weight sync target (None: ``trainer``, the policy samples itself)."""
    from opid_gym.registry import UnknownNameError, suggest

    if cfg.model.rollout_engine == "trainer":
        if not isinstance(policy, Generator):
            raise RunError(f"model backend {cfg.model.backend!r} cannot sample; set model.rollout_engine")
        return RolloutEngine(policy, None)  # the policy samples itself
    if cfg.model.rollout_engine not in builtin.ROLLOUT_ENGINES:
        raise UnknownNameError(f"unknown rollout engine {cfg.model.rollout_engine!r}."
                               + suggest(cfg.model.rollout_engine, ["trainer", *builtin.ROLLOUT_ENGINES]))
    model = cfg.model
    if model.engine_max_len is None:  # room for the longest prompt and response of the run
        import dataclasses

        prompt = cfg.rollout.max_prompt_tokens or 4096
        model = dataclasses.replace(model, engine_max_len=max(2048, prompt + cfg.rollout.max_new_tokens + 16))
    engine = load_object(builtin.ROLLOUT_ENGINES[cfg.model.rollout_engine])(model, policy)
    return RolloutEngine(engine, engine)


def make_env_pool(cfg: RunConfig, env_id: str, env_kwargs: dict[str, Any], *, with_expert: bool = False) -> EnvPool:
    """The training environments' :class:`~opid_gym.workers.EnvPool`: local processes, Ray actors or
    ``serve-env`` servers (``env.remote_urls``).

    ``with_expert``: every step's info carries the env's ``expert_action()`` (for a learner's
    ``needs_expert`` or a scripted rollout agent), which the rollout records as ``Step.expert_action``.
    """
    from opid_gym.workers import make_pool

    if cfg.env.remote_urls:  # environments served by `opid-bench serve-env` elsewhere
        from opid_gym.remote import env_token

        return make_pool(env_id, env_kwargs, urls=list(cfg.env.remote_urls), token=env_token(),
                         timeout=cfg.env.remote_timeout, with_expert=with_expert)
    if cfg.env.pool == "ray":
        return make_pool(env_id, env_kwargs, workers=cfg.env.workers, kind="ray", address=cfg.env.ray_address,
                         with_expert=with_expert)
    return make_pool(env_id, env_kwargs, workers=cfg.env.workers, kind=cfg.env.pool, with_expert=with_expert)


def run_benchmark(cfg: RunConfig) -> Benchmark:
    """The benchmark with the run's step limit, history length and token limits."""
    import opid_gym

    bench = opid_gym.BENCHMARKS.get(cfg.env.benchmark)
    changes: dict[str, Any] = {"max_new_tokens": cfg.rollout.max_new_tokens}
    if cfg.env.max_steps is not None:
        changes["max_steps"] = cfg.env.max_steps
    if cfg.env.history_length is not None:
        changes["history_length"] = cfg.env.history_length
    if cfg.rollout.max_prompt_tokens is not None:
        changes["max_prompt_tokens"] = cfg.rollout.max_prompt_tokens
    return bench.with_overrides(**changes)


# ------------------------------------------------------------------ the parts
@dataclass(frozen=True)
class RolloutEngine:
    """What samples the training rollouts, and where new weights go after an update
    (``sync``: None when the trained policy samples itself)."""

    generator: Generator
    sync: WeightSync | None


@dataclass(frozen=True)
class RunParts:
    """Everything a run is built from, before its first step (see :func:`build_parts`).

    Attributes:
        bench: the benchmark with the run's overrides (:func:`run_benchmark`).
        episodes: the training episodes' wiring (env id, kwargs, template, history).
        eval_data_kwargs: ``data_root`` for the evaluation env, where it takes one.
        learner: the learner, constructed with the run's :class:`~opid_gym.learner.RunInfo`.
        policy / trainer / engine: the model, its trainer and the rollout engine.
        train_agent / eval_agent: rollout sampling (the learner may swap the training
            agent, e.g. SFT's demonstrator) and the protocol's validation sampling.
        train_tasks: the training split's task indices the run uses; ``sampler`` deals
            them to steps.
        history / prompt_hook: the training prompts' history manager and rewrite hook.
    """

    bench: Benchmark
    episodes: EpisodeSetup
    eval_data_kwargs: dict[str, Any]
    learner: Learner[Any]
    policy: TrainablePolicy
    trainer: Trainer
    engine: RolloutEngine
    train_agent: Agent
    eval_agent: Agent
    train_tasks: list[int]
    sampler: TaskSampler
    history: HistoryManager
    prompt_hook: PromptHook | None


def build_parts(cfg: RunConfig, run_dir: Path) -> RunParts:
    """Build every part of a run from ``cfg`` (``run_dir``: given to the learner).

    The order is fixed (the seeds are set before any model is built), so the same
    config builds the same parts on every start and resume.
    """
    bench = run_benchmark(cfg)
    if bench.train_env_id is None:
        raise RunError(f"benchmark {bench.name!r} has no training split")
    # the training episodes, wired as evaluation wires its own (opid_gym.episode)
    episodes = episode_setup(bench, train=True, data_root=cfg.env.data_root)
    if cfg.model.cpu_threads is not None:
        import torch

        torch.set_num_threads(cfg.model.cpu_threads)
    seed_everything(cfg.seed)
    learner = learner_class(cfg.learner_name)(cfg.learner, RunInfo(
        benchmark=bench, family=episodes.family.name, template=episodes.template,
        action_format=episodes.action_format, run_dir=run_dir, seed=cfg.seed, total_steps=cfg.steps,
        max_prompt_tokens=cfg.rollout.max_prompt_tokens,
    ))
    policy = make_policy(cfg)
    trainer = make_trainer(cfg, policy, learner)
    engine = make_rollout_engine(cfg, policy)
    agent_cls = load_object(builtin.MODEL_AGENT)
    model_name = f"{cfg.model.backend}:{cfg.model.name}"
    train_agent = agent_cls(engine.generator, SamplingParams(
        temperature=cfg.rollout.temperature, top_p=cfg.rollout.top_p, max_new_tokens=cfg.rollout.max_new_tokens,
        max_prompt_tokens=cfg.rollout.max_prompt_tokens), name=model_name)
    train_agent = learner.rollout_agent(train_agent, policy)  # sft: the demonstrator
    eval_agent = agent_cls(engine.generator, SamplingParams(**bench.validation_sampling()), name=model_name)
    from opid_gym.evaluate import count_tasks

    num_train_tasks = count_tasks(episodes.env_id, episodes.env_kwargs)
    train_tasks = training_subset(num_train_tasks, cfg.env.train_fraction, cfg.seed)
    return RunParts(
        bench=bench, episodes=episodes, eval_data_kwargs=data_kwargs(bench.env_id, cfg.env.data_root),
        learner=learner, policy=policy, trainer=trainer, engine=engine, train_agent=train_agent,
        eval_agent=eval_agent, train_tasks=train_tasks,
        sampler=TaskSampler(len(train_tasks), cfg.rollout.tasks_per_step, cfg.seed),
        history=episodes.history(), prompt_hook=learner.rollout_prompt_hook(),
    )
