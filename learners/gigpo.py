"""GiGPO: group-in-group advantages — the episode's, plus one per anchor state.

GiGPO (Feng et al., "Group-in-Group Policy Optimization for LLM Agent Training",
arXiv 2505.10978; reference code in verl-agent) adds a step-level credit signal to
GRPO without a critic. Within an episode group (G rollouts of one task from one
seed), step samples whose observation text is identical share an *anchor state*; the
actions taken from it are compared by their discounted returns:

    A_ep_i   = GRPO's group advantage of the step sample (spec §1)
    G_i      = Σ_k γ^k r_{t+k}                      (``batch.returns``, γ = ``gamma``)
    A_step_i = (G_i − mean_a G) / (std_a G + 1e-6)  over the anchor group a of i
               (or G_i − mean_a G with ``adv_norm = mean_norm``)
    A_i      = A_ep_i + ω · A_step_i,   ω = ``step_weight`` (1.0 in the paper)

An anchor group of one sample has nothing to compare with: its step advantage is 0.
The step-level normalisation follows ``adv_norm`` like the episode level, as the
reference code's single ``mode`` setting does. The loss is GRPO's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from learners.common import STD_EPS, token_advantages
from learners.distill import check
from learners.grpo import GRPO
from opid_gym.learner import LearnerConfig, StepBatch, StepContext


@dataclass(frozen=True)
class GiGPOConfig(LearnerConfig):
    """Attributes:
        step_weight: ω, weight of the anchor-state step advantage (1.0).
    """

    step_weight: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.step_weight >= 0, f"step_weight must be >= 0, got {self.step_weight}")


def anchor_groups(group_index: torch.Tensor, observation: Sequence[str]) -> torch.Tensor:
    """Anchor-state group ids: one id per distinct (episode group, observation text).

    Args:
        group_index: [N] long, the episode group of each step sample.
        observation: N strings, the observation each step sample acted on.

    Returns:
        [N] long ids, numbered 0.. in order of first appearance.
    """
    ids: dict[tuple[int, str], int] = {}
    out = [ids.setdefault((int(g), obs), len(ids)) for g, obs in zip(group_index.tolist(), observation)]
    return torch.tensor(out, dtype=torch.long)


def anchor_advantages(returns: torch.Tensor, anchor_index: torch.Tensor, *, norm: str = "mean_std_norm",
                      eps: float = STD_EPS) -> torch.Tensor:
    """Step-level advantage: each return relative to its anchor group.

    ``(G_i − mean_a) / (std_a + eps)`` (``mean_std_norm``, unbiased std) or
    ``G_i − mean_a`` (``mean_norm``); 0 for an anchor group of one sample.

    Args:
        returns: [N] discounted returns G_i. anchor_index: [N] long anchor group ids.

    Returns:
        [N] float (detached).
    """
    if norm not in ("mean_std_norm", "mean_norm"):
        raise ValueError(f"unknown advantage normalisation {norm!r}")
    returns = returns.detach().to(torch.float32)
    adv = torch.zeros_like(returns)
    for a in torch.unique(anchor_index):
        rows = anchor_index == a
        values = returns[rows]
        if values.numel() < 2:
            continue
        centred = values - values.mean()
        adv[rows] = centred / (values.std() + eps) if norm == "mean_std_norm" else centred
    return adv


class GiGPO(GRPO):
    name = "gigpo"
    description = "GiGPO: GRPO episode advantage + step advantage within anchor states (identical observations)"
    paper = "arXiv 2505.10978"
    Config = GiGPOConfig

    def advantages(self, batch: StepBatch, ctx: StepContext) -> torch.Tensor:
        cfg = self.config
        assert isinstance(cfg, GiGPOConfig)
        episode = super().advantages(batch, ctx)  # [N, L]
        anchors = anchor_groups(batch.group_index, batch.observation)  # [N]
        step = anchor_advantages(batch.returns, anchors, norm=cfg.adv_norm)  # [N]
        sizes = torch.bincount(anchors) if len(anchors) else torch.zeros(0)
        ctx.log({"gigpo/anchor_groups": float(len(sizes)),
                 "gigpo/anchor_size_mean": float(sizes.float().mean()) if len(sizes) else 0.0,
                 "gigpo/step_adv_abs_mean": float(step.abs().mean()) if len(step) else 0.0})
        return episode + cfg.step_weight * token_advantages(step, batch.mask)
