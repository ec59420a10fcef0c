"""Skill-SD: GRPO plus an importance-weighted reverse-KL pull toward the library teacher.

The teacher π_T is the old policy prompted with the static skill library
(``learners/distill.py``). Per sampled token (algorithms spec §3):

    d    = log πθ − sg(ℓ_T)
    k3   = exp(min(−d, 20)) − 1 + d              (≥ 0; Schulman's k3 of KL(πθ‖π_T))
    ρ    = exp(min(log πθ − sg(log π_old), 10))  (importance ratio, capped at e^10)
    loss = GRPO loss + λ · agg(ρ · k3),          λ = 0.001

ρ keeps its gradient: the term is the importance-sampled estimate of KL(πθ‖π_T) from
tokens sampled by π_old. As in the reference (SDAR's ``skillsd_utils``), only −d is
capped (at 20, so the exponential stays finite) and log ρ at 10; the k3 value itself
is not clamped (unlike the KL-to-π_ref term's ``kl_clamp``). ``agg`` follows
``loss_agg_mode`` (token mean by default).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from learners.common import aggregate, policy_loss
from learners.distill import TEACHER_LOGP, LibraryConfig, LibraryTeacherGRPO, check
from opid_gym.learner import LossInputs, LossOutput

RATIO_LOG_CAP = 10.0
"""ρ = exp(min(log πθ − log π_old, RATIO_LOG_CAP))."""
NEG_D_CAP = 20.0
"""k3 = exp(min(−d, NEG_D_CAP)) − 1 + d."""


@dataclass(frozen=True)
class SkillSDConfig(LibraryConfig):
    """Attributes:
        distill_coef: λ, weight of the ρ·k3 term (0.001).
    """

    distill_coef: float = 0.001

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.distill_coef >= 0, f"distill_coef must be >= 0, got {self.distill_coef}")


def skill_sd_term(logp: torch.Tensor, old_logp: torch.Tensor,
                  teacher_logp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token ``ρ · k3(πθ‖π_T)`` (module docstring: −d capped at 20, log ρ at 10, k3 unclamped).

    Args:
        logp: [N, L] log πθ (with gradient). old_logp: [N, L] log π_old.
        teacher_logp: [N, L] ℓ_T.

    Returns:
        (term [N, L] with gradient through ρ and k3, ρ [N, L] detached, k3 [N, L]
        detached); not masked.
    """
    rho = torch.exp(torch.clamp(logp - old_logp.detach(), max=RATIO_LOG_CAP))
    d = logp - teacher_logp.detach()
    k3 = torch.exp(torch.clamp(-d, max=NEG_D_CAP)) - 1.0 + d
    return rho * k3, rho.detach(), k3.detach()


class SkillSD(LibraryTeacherGRPO[SkillSDConfig]):
    name = "skill-sd"
    description = "Skill-SD: GRPO + 0.001 x importance-weighted k3 KL toward the skill-library teacher"
    paper = "OPID paper baseline (arXiv 2606.26790), as in SDAR's released baselines (arXiv 2605.15155)"
    Config = SkillSDConfig

    def loss(self, inputs: LossInputs) -> LossOutput:
        cfg = self.config
        assert isinstance(cfg, SkillSDConfig)
        out = policy_loss(inputs, cfg)
        term, rho, k3 = skill_sd_term(inputs.logp, inputs.old_logp, inputs.extras[TEACHER_LOGP])
        value = aggregate(inputs, term, cfg.loss_agg_mode)
        loss = out.loss + cfg.distill_coef * value
        out.metrics.update({
            "loss/distill": float(cfg.distill_coef * value.detach()),
            "distill/k3": float(inputs.token_mean(k3)),
            "distill/rho_mean": float(inputs.token_mean(rho)),
            "loss/total": float(loss.detach()),
        })
        return LossOutput(loss, out.metrics)
