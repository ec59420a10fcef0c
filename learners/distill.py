"""What the static-library baselines share: the library setting and the library teacher.

SDAR, OPSD, GRPO+OPSD, Skill-SD and RLSD (algorithms spec §3) distil toward one
teacher: π_T = π_old with the static skill library's text added to the prompt. Its
log-probs of the sampled response tokens,

    ℓ_T[i, l] = log π_old(y_{i,l} | library text + h_i, y_{i,<l})       [N, L]

are computed once per training step in ``prepare``, before any update, by the loop's
old-policy scoring service (``StepContext.score_messages``: the same batched, no-grad
rescoring OPID's teacher uses) and stored as ``batch.extras["teacher_logp"]``. The
per-token teacher/student gap is ``Δ = ℓ_T − ℓ_old``.

The library text is chosen per step sample by task type or keywords
(:meth:`learners.skills.library.SkillLibrary.select`) and placed as
:func:`learners.skills.library.with_library_text` places it. ``skill_library`` points
at a user folder with the packaged layout (unset: the packaged library).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch

from learners.grpo import GRPO
from learners.skills.library import SkillLibrary, load_library, with_library_text
from opid_gym.learner import ConfigError, LearnerConfig, RunInfo, StepBatch, StepContext
from opid_gym.types import Message

def check(ok: bool, message: str) -> None:
    """Raise :class:`ConfigError` with ``message`` unless ``ok`` (config validation)."""
    if not ok:
        raise ConfigError(message)


TEACHER_LOGP = "teacher_logp"
"""The ``batch.extras`` / ``LossInputs.extras`` key of ℓ_T ([N, L])."""


@dataclass(frozen=True)
class LibraryConfig(LearnerConfig):
    """:class:`LearnerConfig` plus the static skill library.

    Attributes:
        skill_library: a folder laid out like the packaged library (``general.md``,
            ``<family>/<kind>.md``); unset: the library shipped in ``learners/skills/library``.
    """

    skill_library: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.skill_library is not None and not (Path(self.skill_library).expanduser() / "general.md").is_file():
            raise ConfigError(f"learner.skill_library: {self.skill_library!r} is not a skill library folder "
                              "(it needs a general.md; see learners/skills/library.py)")


def run_library(config: LibraryConfig) -> SkillLibrary:
    """The library a learner's config names."""
    return load_library(config.skill_library)


def library_messages(batch: StepBatch, library: SkillLibrary, family: str) -> list[list[Message]]:
    """The teacher's prompts: each sample's prompt (as the policy saw it) with its library text."""
    return [with_library_text(batch.messages[i], library.select(family, batch.task[i], batch.task_type[i]).text)
            for i in range(len(batch))]


def library_teacher_logp(batch: StepBatch, ctx: StepContext, library: SkillLibrary) -> torch.Tensor:
    """ℓ_T of every response token under the library-conditioned prompt, [N, L] (0 at padding).

    Scores with π_old through ``ctx.score_messages`` (no gradient), stores the result as
    ``batch.extras["teacher_logp"]``, and logs the token-mean gap ``teacher/delta_mean``
    (Δ = ℓ_T − ℓ_old) and ``teacher/delta_abs_mean``.
    """
    messages = library_messages(batch, library, ctx.run.family)
    teacher = ctx.score_messages(messages, None).detach().float() * batch.mask
    batch.extras[TEACHER_LOGP] = teacher
    if batch.old_logp is not None:
        tokens = batch.mask.sum().clamp(min=1.0)
        delta = (teacher - batch.old_logp) * batch.mask
        ctx.log({"teacher/delta_mean": float(delta.sum() / tokens),
                 "teacher/delta_abs_mean": float(delta.abs().sum() / tokens)})
        for i in range(len(batch)):
            n = float(batch.mask[i].sum().clamp(min=1.0))
            batch.annotate(i, teacher_delta_mean=round(float(delta[i].sum()) / n, 6))
    return teacher


LibConfigT = TypeVar("LibConfigT", bound=LibraryConfig)


class LibraryTeacherGRPO(GRPO[LibConfigT]):
    """GRPO whose ``prepare`` scores the batch under the library teacher (a base class).

    Subclasses add their distillation term in ``loss`` (reading
    ``inputs.extras["teacher_logp"]``) or reshape the advantage in ``advantages``.
    """

    Config = LibraryConfig

    def __init__(self, config: LibConfigT, run: RunInfo) -> None:
        super().__init__(config, run)
        self.library = run_library(config)

    def prepare(self, batch: StepBatch, ctx: StepContext) -> None:
        library_teacher_logp(batch, ctx, self.library)
