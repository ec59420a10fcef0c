"""OPSD as an agentic baseline: on-policy self-distillation with no policy gradient.

On-policy self-distillation trains the student on its own samples toward a teacher
that is the same model with privileged context; here the context is the static skill
library (``learners/distill.py``). As a baseline in the OPID comparison (algorithms
spec §3) it is SDAR's gated distillation term alone — the PPO/GRPO policy-gradient
term is dropped, the KL-to-reference and entropy terms stay:

    g    = sg(sigmoid(β · (sg(ℓ_T) − sg(log πθ))))
    loss = λ · token_mean(g · (sg(ℓ_T) − log πθ)) + β_kl·token_mean(k3) − β_ent·H

The episode reward never enters the loss, so the advantages are reported as 0. λ and
β are SDAR's (``distill_coef`` 0.01, ``gate_beta`` 5.0).
"""

from __future__ import annotations

import torch

from learners.distill import LibraryTeacherGRPO
from learners.sdar import SDARConfig, sdar_loss
from opid_gym.learner import LossInputs, LossOutput, StepBatch, StepContext


class OPSD(LibraryTeacherGRPO[SDARConfig]):
    name = "opsd"
    description = "OPSD: gated self-distillation toward the skill-library teacher only (no policy gradient)"
    paper = "OPID paper baseline (arXiv 2606.26790), as in SDAR's released baselines (arXiv 2605.15155)"
    Config = SDARConfig

    def advantages(self, batch: StepBatch, ctx: StepContext) -> torch.Tensor:
        return torch.zeros_like(batch.mask)  # [N, L]: no policy-gradient term reads them

    def loss(self, inputs: LossInputs) -> LossOutput:
        return sdar_loss(inputs, self.config, pg=False)
