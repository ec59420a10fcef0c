"""How an episode of one benchmark is wired, built once and shared by training and evaluation.

Training rollouts and evaluation run the same episodes: the same environment id with
the same constructor kwargs (``data_root`` where the constructor takes one), the
family's prompt template, action format and metric keys, and the benchmark's history
manager. :func:`episode_setup` resolves all of it from (benchmark, env id, data root)
in one place, so the two cannot drift apart.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from opid_gym.benchmark import Benchmark
from opid_gym.family import EnvFamily, family_of_class
from opid_gym.history import HistoryManager, PromptTemplate, make_history


def data_kwargs(env_id: str, data_root: str | os.PathLike[str] | None) -> dict[str, Any]:
    """``{"data_root": <resolved root>}`` for environments whose constructor takes one
    (third-party ones may not): the one place the data root reaches an environment."""
    from opid_gym.data import resolve_data_root
    from opid_gym.registry import accepts

    return {"data_root": str(resolve_data_root(data_root))} if accepts(env_id, "data_root") else {}


@dataclass(frozen=True)
class EpisodeSetup:
    """Everything an episode of ``env_id`` needs besides the agent and the seeds.

    Attributes:
        env_id: the environment id episodes run on.
        env_kwargs: its constructor kwargs (the benchmark's, then ``data_root``, then the
            caller's).
        env_cls: the environment class behind ``env_id``.
        family: the environment's family (metric keys, defaults).
        template: the family's prompt template.
        action_format: the family's response parser name.
        history_name / history_length: the benchmark's history manager.
    """

    env_id: str
    env_kwargs: dict[str, Any]
    env_cls: type
    family: EnvFamily
    template: PromptTemplate
    action_format: str
    history_name: str
    history_length: int

    def history(self) -> HistoryManager:
        """A fresh history manager of the benchmark's kind."""
        return make_history(self.history_name,
                            **({"length": self.history_length} if self.history_name == "window" else {}))

    def episode_args(self) -> dict[str, Any]:
        """The keyword arguments of :func:`opid_gym.rollout.run_episodes` this setup fixes."""
        return {"env_id": self.env_id, "template": self.template, "action_format": self.action_format,
                "history": self.history(), "metric_keys": self.family.metric_keys}


def episode_setup(benchmark: Benchmark, *, train: bool = False, data_root: str | os.PathLike[str] | None = None,
                  env_kwargs: dict[str, Any] | None = None, inject_data_root: bool = True) -> EpisodeSetup:
    """The episodes of ``benchmark``'s evaluation split (``train``: its training split).

    Args:
        benchmark: the benchmark (with any overrides applied).
        train: the training split (``train_env_id`` and ``train_kwargs``) instead of evaluation.
        data_root: the data root (resolved as :func:`opid_gym.data.resolve_data_root` does).
        env_kwargs: extra constructor kwargs; they win over the benchmark's.
        inject_data_root: add ``data_root`` where the constructor takes one (False: the
            caller's ``env_kwargs`` already say where the data is, or it needs none).
    """
    from opid_gym.registry import env_class

    env_id = benchmark.train_env_id if train else benchmark.env_id
    if env_id is None:
        raise ValueError(f"benchmark {benchmark.name!r} has no training split")
    base = benchmark.train_kwargs() if train else benchmark.eval_env_kwargs()
    injected = data_kwargs(env_id, data_root) if inject_data_root else {}
    cls = env_class(env_id)
    return EpisodeSetup(
        env_id=env_id, env_kwargs={**base, **injected, **(env_kwargs or {})}, env_cls=cls,
        family=family_of_class(cls), template=cls.prompt, action_format=cls.action_format,
        history_name=benchmark.history, history_length=benchmark.history_length,
    )
