"""GRPO+OPSD: the GRPO loss plus an ungated self-distillation term.

The teacher is the skill-library-conditioned old policy (``learners/distill.py``); the
term is SDAR's with the gate fixed at 0.5 (algorithms spec §3):

    loss = GRPO loss + λ · token_mean(0.5 · (sg(ℓ_T) − log πθ)),      λ = 0.01

Every sampled token is pulled up with the same weight, whatever the teacher thinks of
it; the value of the term is half the teacher/student gap (for logging).
"""

from __future__ import annotations

from dataclasses import dataclass

from learners.common import aggregate, policy_loss
from learners.distill import TEACHER_LOGP, LibraryConfig, LibraryTeacherGRPO, check
from learners.sdar import distill_term
from opid_gym.learner import LossInputs, LossOutput


@dataclass(frozen=True)
class GRPOOPSDConfig(LibraryConfig):
    """Attributes:
        distill_coef: λ, weight of the distillation term (0.01).
        gate: the constant per-token weight (0.5).
    """

    distill_coef: float = 0.01
    gate: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.distill_coef >= 0, f"distill_coef must be >= 0, got {self.distill_coef}")
        check(0 <= self.gate <= 1, f"gate must be in [0, 1], got {self.gate}")


def grpo_opsd_loss(inputs: LossInputs, config: GRPOOPSDConfig) -> LossOutput:
    """``policy_loss`` + λ·token_mean(gate·(sg(ℓ_T) − log πθ)) (metrics: ``loss/distill``, ``distill/gap``)."""
    out = policy_loss(inputs, config)
    teacher = inputs.extras[TEACHER_LOGP]
    term = aggregate(inputs, distill_term(inputs.logp, teacher, config.gate), config.loss_agg_mode)
    loss = out.loss + config.distill_coef * term
    out.metrics.update({
        "loss/distill": float(config.distill_coef * term.detach()),
        "distill/gap": float(inputs.token_mean(teacher - inputs.logp.detach())),
        "loss/total": float(loss.detach()),
    })
    return LossOutput(loss, out.metrics)


class GRPOOPSD(LibraryTeacherGRPO[GRPOOPSDConfig]):
    name = "grpo-opsd"
    description = "GRPO+OPSD: GRPO + 0.01 x ungated (gate 0.5) self-distillation toward the skill-library teacher"
    paper = "OPID paper baseline (arXiv 2606.26790), as in SDAR's released baselines (arXiv 2605.15155)"
    Config = GRPOOPSDConfig

    def loss(self, inputs: LossInputs) -> LossOutput:
        return grpo_opsd_loss(inputs, self.config)
