"""Environment families: what one family of environments tells the rest of opid-gym.

Every :class:`~opid_gym.env.TextEnv` subclass declares ``family = EnvFamily(...)``: its
name, the run and loss defaults its published protocol uses, OPID's step-skill limit,
the extra metrics its final info carries, and how to check and fetch its data. The
core reads these through :func:`family_of` (env id -> class -> family) and never names
a family itself, so a new family touches only ``environments/<family>/`` and
:mod:`opid_gym.builtin`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from opid_gym.data import DatasetStatus


@dataclass(frozen=True)
class EnvFamily:
    """One environment family (ALFWorld, WebShop, search QA, ...).

    Attributes:
        name: the family name (``TextEnv.family.name``), e.g. ``alfworld``; learners key
            skill libraries by it and it enters the benchmark protocol hash.
        run_defaults: run-config defaults of this family's published protocol, as dotted
            keys (``{"rollout.tasks_per_step": 128}``); presets and ``--set`` still win.
        loss_defaults: overrides of :class:`~opid_gym.learner.LearnerConfig`'s defaults
            (``{"adv_norm": "mean_norm"}``); fields a learner's config lacks are skipped.
        max_step_skills: K, the most step skills per trajectory OPID keeps (spec §2).
        metric_keys: final-info keys evaluation averages besides success (``score``).
        data_dir: the folder under the data root that holds the family's data (None: the
            family needs none). It names the data set in ``opid-bench data``.
        data_status: ``data_root -> rows`` for ``opid-bench data status`` (None: no data).
        download_help: how to get the data (printed by ``opid-bench data download``).
        download: ``data_root -> exit code``: runs the upstream download tool, where the
            family has one (None: follow ``download_help`` by hand).
    """

    name: str
    run_defaults: Mapping[str, Any] = field(default_factory=dict)
    loss_defaults: Mapping[str, Any] = field(default_factory=dict)
    max_step_skills: int = 5
    metric_keys: tuple[str, ...] = ()
    data_dir: str | None = None
    data_status: Callable[[Path], list[DatasetStatus]] | None = None
    download_help: str = ""
    download: Callable[[Path], int] | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("an environment family needs a name")
        if self.max_step_skills < 1:
            raise ValueError(f"max_step_skills must be >= 1, got {self.max_step_skills}")


TEXT_FAMILY = EnvFamily("text")
"""The neutral family of a :class:`~opid_gym.env.TextEnv` that declares none."""


def family_of_class(cls: type) -> EnvFamily:
    """The family an environment class declares (:data:`TEXT_FAMILY` where it declares none)."""
    family = getattr(cls, "family", TEXT_FAMILY)
    if isinstance(family, EnvFamily):
        return family
    if isinstance(family, str):  # a third-party env written against the name-only contract
        return EnvFamily(family)
    raise TypeError(f"{cls.__name__}.family must be an EnvFamily, got {type(family).__name__}")


def family_of(env_id: str) -> EnvFamily:
    """The family of a registered environment id, resolved through the registry."""
    from opid_gym.registry import env_class

    return family_of_class(env_class(env_id))


def registered_families() -> list[EnvFamily]:
    """Every family of a registered environment, once each, in registration order.

    Environments whose module cannot be imported here (a missing extra) are skipped.
    """
    from opid_gym.registry import env_ids

    seen: dict[str, EnvFamily] = {}
    for env_id in env_ids():
        try:
            family = family_of(env_id)
        except ImportError:
            continue
        seen.setdefault(family.name, family)
    return list(seen.values())


def data_families() -> dict[str, EnvFamily]:
    """Families that keep data under the data root, by data-set name (``data_dir``)."""
    return {f.data_dir: f for f in registered_families() if f.data_dir is not None}


def dataset_status(root: Path) -> list[DatasetStatus]:
    """What is present under ``root``, one line per data set (for ``opid-bench data status``)."""
    out: list[DatasetStatus] = []
    for family in registered_families():
        if family.data_status is not None:
            out.extend(family.data_status(root))
    return out
