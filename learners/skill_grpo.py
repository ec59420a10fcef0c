"""Skill-GRPO: GRPO where the student itself sees the static skill library.

Every training prompt gets the library text chosen for its task (by task type or
keywords, ``learners/skills/library.py``), added by a rollout prompt hook before the
model samples, so the sampled tokens, π_old and the update all see the skills. The
loss and the advantage are plain GRPO (algorithms spec §1, §3).

Evaluation has two modes (the paper's two rows):

* ``Skill-GRPO`` (default, ``eval_skills=false``): the trained model with plain prompts;
* ``Skill-GRPO*`` (``--set learner.eval_skills=true``): with the library skills in the
  evaluation prompts too. A finished run can also be evaluated both ways afterwards:
  ``opid-bench eval --agent run:<run folder> --env <id> [--skills]``.
"""

from __future__ import annotations

from dataclasses import dataclass

from learners.distill import LibraryConfig, run_library
from learners.grpo import GRPO
from learners.skills.library import library_prompt_hook
from opid_gym.rollout import PromptHook


@dataclass(frozen=True)
class SkillGRPOConfig(LibraryConfig):
    """Attributes:
        eval_skills: also show the library skills in evaluation prompts (Skill-GRPO*).
    """

    eval_skills: bool = False


class SkillGRPO(GRPO[SkillGRPOConfig]):
    name = "skill-grpo"
    description = "Skill-GRPO: GRPO with the static skill library in every training prompt (* = also at evaluation)"
    paper = "OPID paper baseline (arXiv 2606.26790); GRPO: arXiv 2402.03300"
    Config = SkillGRPOConfig

    def rollout_prompt_hook(self) -> PromptHook | None:
        return library_prompt_hook(run_library(self.config), self.run.family)

    def eval_prompt_hook(self) -> PromptHook | None:
        return self.rollout_prompt_hook() if self.config.eval_skills else None
