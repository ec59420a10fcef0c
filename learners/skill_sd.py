"""Skill-SD: GRPO plus an importance-weighted reverse-KL pull toward the library teacher.

The teacher π_T is the old policy prompted with the static skill library
(``learners/distill.py``). Per sampled token (algorithms spec §3):

    d    = log πθ − sg(ℓ_T)
    k3   = exp(−d) − 1 + d                       (≥ 0; Schulman's k3 of KL(πθ‖π_T))
    ρ    = exp(min(log πθ − sg(log π_old), 10))  (importance ratio, capped at e^10)
    loss = GRPO loss + λ · token_mean(ρ · k3),   λ = 0.001

ρ keeps its gradient: the term is the importance-sampled estimate of KL(πθ‖π_T) from
tokens sampled by π_old. k3 is :func:`learners.common.k3_kl` with π_T in the place of
π_ref (its log-ratio clamped to ±20 and its value to ±``kl_clamp`` for safety).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from learners.common import k3_kl, policy_loss
from learners.distill import TEACHER_LOGP, LibraryConfig, LibraryTeacherGRPO, check
from opid_gym.learner import LossInputs, LossOutput

RATIO_LOG_CAP = 10.0
"""ρ = exp(min(log πθ − log π_old, RATIO_LOG_CAP))."""


@dataclass(frozen=True)
class SkillSDConfig(LibraryConfig):
    """Attributes:
        distill_coef: λ, weight of the ρ·k3 term (0.001).
    """

    distill_coef: float = 0.001

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.distill_coef >= 0, f"distill_coef must be >= 0, got {self.distill_coef}")


def skill_sd_term(logp: torch.Tensor, old_logp: torch.Tensor, teacher_logp: torch.Tensor, *,
                  clamp: float = 10.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token ``ρ · k3(πθ‖π_T)``.

    Args:
        logp: [N, L] log πθ (with gradient). old_logp: [N, L] log π_old.
        teacher_logp: [N, L] ℓ_T. clamp: bound of k3 (as :func:`k3_kl`).

    Returns:
        (term [N, L] with gradient through ρ and k3, ρ [N, L] detached, k3 [N, L]
        detached); not masked.
    """
    rho = torch.exp(torch.clamp(logp - old_logp.detach(), max=RATIO_LOG_CAP))
    k3 = k3_kl(logp, teacher_logp.detach(), clamp=clamp)  # exp(ℓ_T − logp) − (ℓ_T − logp) − 1 = exp(−d) − 1 + d
    return rho * k3, rho.detach(), k3.detach()


class SkillSD(LibraryTeacherGRPO):
    name = "skill-sd"
    description = "Skill-SD: GRPO + 0.001 x importance-weighted k3 KL toward the skill-library teacher"
    paper = "OPID paper baseline (arXiv 2606.26790), as in SDAR's released baselines (arXiv 2605.15155)"
    Config = SkillSDConfig

    def loss(self, inputs: LossInputs) -> LossOutput:
        cfg = self.config
        assert isinstance(cfg, SkillSDConfig)
        out = policy_loss(inputs, cfg)
        term, rho, k3 = skill_sd_term(inputs.logp, inputs.old_logp, inputs.extras[TEACHER_LOGP], clamp=cfg.kl_clamp)
        value = inputs.token_mean(term)
        loss = out.loss + cfg.distill_coef * value
        out.metrics.update({
            "loss/distill": float(cfg.distill_coef * value.detach()),
            "distill/k3": float(inputs.token_mean(k3)),
            "distill/rho_mean": float(inputs.token_mean(rho)),
            "loss/total": float(loss.detach()),
        })
        return LossOutput(loss, out.metrics)
