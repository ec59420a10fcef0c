"""RLSD: the GRPO advantage reweighted per token by how much the library teacher agrees.

The teacher π_T is the old policy prompted with the static skill library
(``learners/distill.py``); Δ = ℓ_T − ℓ_old is its per-token log-ratio to the sampler.
RLSD keeps the GRPO loss and only reshapes the advantage (algorithms spec §3):

    A    = the row's GRPO advantage, read at its first valid token
    w    = (1 − λ) + λ · clip(exp(sign(A) · Δ), 0.8, 1.2)
    A'   = A · w                                       per valid token

A token the teacher prefers (Δ > 0) gets more credit when A > 0 and less blame when
A < 0; the clip keeps w within [1 − 0.2λ, 1 + 0.2λ]. λ decays linearly from 0.5 to 0
over 100 steps of the trainer's 1-based global step, as in the reference trainer
(SDAR's ``rlsd_ray_trainer``): the first update uses λ = 0.5·(1 − 1/100), and from
global step 100 on λ = 0 (plain GRPO).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from learners.distill import TEACHER_LOGP, LibraryConfig, LibraryTeacherGRPO, check
from opid_gym.learner import StepBatch, StepContext


@dataclass(frozen=True)
class RLSDConfig(LibraryConfig):
    """Attributes:
        lambda_start: λ at global step 0 (0.5; the first update, global step 1, uses 0.495).
        lambda_decay_steps: λ reaches 0 after this many steps (100).
        clip_low / clip_high: bounds of exp(sign(A)·Δ) (0.8 / 1.2).
    """

    lambda_start: float = 0.5
    lambda_decay_steps: int = 100
    clip_low: float = 0.8
    clip_high: float = 1.2

    def __post_init__(self) -> None:
        super().__post_init__()
        check(0 <= self.lambda_start <= 1, f"lambda_start must be in [0, 1], got {self.lambda_start}")
        check(self.lambda_decay_steps >= 1, f"lambda_decay_steps must be >= 1, got {self.lambda_decay_steps}")
        check(0 < self.clip_low <= 1 <= self.clip_high, "need 0 < clip_low <= 1 <= clip_high")


def rlsd_lambda(global_step: int, start: float = 0.5, decay_steps: int = 100) -> float:
    """λ at the trainer's 1-based global step: ``start · max(0, 1 − global_step / decay_steps)``
    (the loop's 0-based ``StepContext.step`` s is global step s + 1)."""
    return start * max(0.0, 1.0 - global_step / decay_steps)


def first_token_advantage(adv: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each row's advantage at its first valid token (the reference's sequence advantage).

    Args:
        adv: [N, L] per-token advantages. mask: [N, L].

    Returns:
        [N, 1] (0 for a row without valid tokens).
    """
    first = mask.to(torch.int64).argmax(dim=-1, keepdim=True)  # [N, 1]; 0 when the row is empty
    return adv.gather(1, first) * (mask.sum(dim=-1, keepdim=True) > 0)


def rlsd_weights(adv: torch.Tensor, delta: torch.Tensor, lam: float, *, low: float = 0.8,
                 high: float = 1.2) -> torch.Tensor:
    """``w = (1 − λ) + λ · clip(exp(sign(A) · Δ), low, high)``.

    Args:
        adv: [N, L] advantages A. delta: [N, L] Δ = ℓ_T − ℓ_old. lam: λ in [0, 1].

    Returns:
        [N, L] weights (detached); multiply A by them.
    """
    ratio = torch.exp(torch.clamp(torch.sign(adv) * delta, -20.0, 20.0))
    return ((1.0 - lam) + lam * torch.clamp(ratio, low, high)).detach()


class RLSD(LibraryTeacherGRPO[RLSDConfig]):
    name = "rlsd"
    description = "RLSD: GRPO advantage x per-token teacher/student ratio weight (skill-library teacher), λ 0.5 → 0"
    paper = "OPID paper baseline (arXiv 2606.26790), as in SDAR's released baselines (arXiv 2605.15155)"
    Config = RLSDConfig

    def advantages(self, batch: StepBatch, ctx: StepContext) -> torch.Tensor:
        cfg = self.config
        assert isinstance(cfg, RLSDConfig) and batch.old_logp is not None
        adv = first_token_advantage(super().advantages(batch, ctx), batch.mask)  # [N, 1] GRPO
        lam = rlsd_lambda(ctx.step + 1, cfg.lambda_start, cfg.lambda_decay_steps)
        delta = (batch.extras[TEACHER_LOGP] - batch.old_logp) * batch.mask
        w = rlsd_weights(adv.expand_as(delta), delta, lam, low=cfg.clip_low, high=cfg.clip_high)
        tokens = batch.mask.sum().clamp(min=1.0)
        ctx.log({"rlsd/lambda": lam, "rlsd/weight_mean": float((w * batch.mask).sum() / tokens)})
        return adv * w * batch.mask
