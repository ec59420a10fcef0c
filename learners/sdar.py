"""SDAR: GRPO plus a gated pull toward the skill-library self-teacher.

SDAR (arXiv 2605.15155) keeps the GRPO loss and adds an on-policy distillation term
toward π_T, the old policy prompted with the static skill library
(``learners/distill.py``). The term is gated per token: tokens the teacher likes more
than the student does (ℓ_T > log πθ) get a gate near 1, tokens it dislikes a gate near
0, so the teacher can only pull probability up where it agrees (algorithms spec §3):

    g    = sg(sigmoid(β · (sg(ℓ_T) − sg(log πθ))))
    loss = GRPO loss + λ · agg(g · (sg(ℓ_T) − log πθ))      (agg: loss_agg_mode, token mean by default)

Defaults λ = 0.01, β = 5.0 (the released baseline scripts); the SDAR paper's text is
reported to use λ = 0.1, β = 10 — set ``learner.distill_coef=0.1 learner.gate_beta=10``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from learners.common import aggregate, policy_loss
from learners.distill import TEACHER_LOGP, LibraryConfig, LibraryTeacherGRPO, check
from opid_gym.learner import LossInputs, LossOutput


@dataclass(frozen=True)
class SDARConfig(LibraryConfig):
    """Attributes:
        distill_coef: λ, weight of the distillation term (0.01; the paper text: 0.1).
        gate_beta: β, sharpness of the gate (5.0; the paper text: 10).
    """

    distill_coef: float = 0.01
    gate_beta: float = 5.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.distill_coef >= 0, f"distill_coef must be >= 0, got {self.distill_coef}")
        check(self.gate_beta > 0, f"gate_beta must be > 0, got {self.gate_beta}")


def sdar_gate(teacher_logp: torch.Tensor, logp: torch.Tensor, beta: float) -> torch.Tensor:
    """``g = sigmoid(β · (ℓ_T − log πθ))``, detached.

    Args:
        teacher_logp: [N, L] ℓ_T. logp: [N, L] log πθ. beta: β > 0.

    Returns:
        [N, L] gate in (0, 1), no gradient (not masked).
    """
    return torch.sigmoid(beta * (teacher_logp.detach() - logp.detach()))


def distill_term(logp: torch.Tensor, teacher_logp: torch.Tensor, gate: torch.Tensor | float) -> torch.Tensor:
    """Per-token distillation term ``gate · (sg(ℓ_T) − log πθ)`` (to be minimised).

    Its gradient is ``−gate · ∇log πθ``: it raises the log-probability of each sampled
    token in proportion to the gate (the value itself is the gap, for logging).

    Args:
        logp: [N, L] log πθ (with gradient). teacher_logp: [N, L] ℓ_T.
        gate: [N, L] detached weights, or one number (GRPO+OPSD's 0.5).

    Returns:
        [N, L] (not masked: combine with ``token_mean``).
    """
    if isinstance(gate, torch.Tensor):
        gate = gate.detach()
    return gate * (teacher_logp.detach() - logp)


def sdar_loss(inputs: LossInputs, config: SDARConfig, *, pg: bool = True) -> LossOutput:
    """``policy_loss`` (with or without its policy-gradient term) + λ·token_mean(g·(ℓ_T − log πθ)).

    Extra metrics: ``loss/distill`` (the weighted term), ``distill/gate_mean``,
    ``distill/gap`` (token-mean ℓ_T − log πθ).
    """
    out = policy_loss(inputs, config, pg=pg)
    teacher = inputs.extras[TEACHER_LOGP]
    gate = sdar_gate(teacher, inputs.logp, config.gate_beta)
    term = aggregate(inputs, distill_term(inputs.logp, teacher, gate), config.loss_agg_mode)
    loss = out.loss + config.distill_coef * term
    out.metrics.update({
        "loss/distill": float(config.distill_coef * term.detach()),
        "distill/gate_mean": float(inputs.token_mean(gate)),
        "distill/gap": float(inputs.token_mean(teacher - inputs.logp.detach())),
        "loss/total": float(loss.detach()),
    })
    return LossOutput(loss, out.metrics)


class SDAR(LibraryTeacherGRPO[SDARConfig]):
    name = "sdar"
    description = "SDAR: GRPO + gated distillation toward the old policy prompted with the skill library"
    paper = "arXiv 2605.15155"
    Config = SDARConfig

    def loss(self, inputs: LossInputs) -> LossOutput:
        return sdar_loss(inputs, self.config)
