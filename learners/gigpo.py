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

Similarity-based anchors (reference ``enable_similarity``, off by default): with
``similarity_thresh`` set, an observation joins the first anchor of its episode group
whose representative (the anchor's first observation) it matches with
``difflib.SequenceMatcher(None, a, b).ratio() >= similarity_thresh``, else it starts a
new anchor, in batch order, as the reference's ``build_step_group`` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Sequence

import torch

from learners.common import STD_EPS, group_stats, token_advantages
from learners.distill import check
from learners.grpo import GRPO
from opid_gym.learner import LearnerConfig, StepBatch, StepContext


@dataclass(frozen=True)
class GiGPOConfig(LearnerConfig):
    """Attributes:
        step_weight: ω, weight of the anchor-state step advantage (1.0).
        similarity_thresh: null (default: anchors are identical observations) or a
            threshold in (0, 1) for similarity-based anchors (reference
            ``enable_similarity`` + ``similarity_thresh``, whose default threshold is 0.95).
    """

    step_weight: float = 1.0
    similarity_thresh: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.step_weight >= 0, f"step_weight must be >= 0, got {self.step_weight}")
        check(self.similarity_thresh is None or 0 < self.similarity_thresh < 1,
              f"similarity_thresh must be in (0, 1) or null, got {self.similarity_thresh}")


def anchor_groups(group_index: torch.Tensor, observation: Sequence[str],
                  similarity_thresh: float | None = None) -> torch.Tensor:
    """Anchor-state group ids: one id per distinct (episode group, observation text).

    With ``similarity_thresh``, an observation instead joins the first anchor of its
    episode group (in order of creation) whose first observation ``rep`` satisfies
    ``SequenceMatcher(None, obs, rep).ratio() >= similarity_thresh``, else it opens a
    new anchor (greedy, in batch order).

    Args:
        group_index: [N] long, the episode group of each step sample.
        observation: N strings, the observation each step sample acted on.
        similarity_thresh: None (exact match) or a threshold in (0, 1).

    Returns:
        [N] long ids, numbered 0.. in order of first appearance.
    """
    if similarity_thresh is None:
        ids: dict[tuple[int, str], int] = {}
        out = [ids.setdefault((int(g), obs), len(ids)) for g, obs in zip(group_index.tolist(), observation)]
        return torch.tensor(out, dtype=torch.long)
    anchors: dict[int, list[tuple[str, int]]] = {}  # episode group -> [(representative, id)]
    count = 0
    out = []
    for g, obs in zip(group_index.tolist(), observation):
        reps = anchors.setdefault(int(g), [])
        found = next((a for rep, a in reps if SequenceMatcher(None, obs, rep).ratio() >= similarity_thresh), None)
        if found is None:
            found = count
            reps.append((obs, found))
            count += 1
        out.append(found)
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
    returns = returns.detach().to(torch.float64)  # float64 statistics: equal returns give exactly 0
    adv = torch.zeros_like(returns)
    for a in torch.unique(anchor_index):
        rows = anchor_index == a
        values = returns[rows]
        if values.numel() < 2:
            continue
        mean, std = group_stats(values)
        centred = values - mean
        adv[rows] = centred / (std + eps) if norm == "mean_std_norm" else centred
    return adv.to(torch.float32)


class GiGPO(GRPO[GiGPOConfig]):
    name = "gigpo"
    description = "GiGPO: GRPO episode advantage + step advantage within anchor states (identical observations)"
    paper = "arXiv 2505.10978"
    Config = GiGPOConfig

    def advantages(self, batch: StepBatch, ctx: StepContext) -> torch.Tensor:
        cfg = self.config
        assert isinstance(cfg, GiGPOConfig)
        episode = super().advantages(batch, ctx)  # [N, L]
        anchors = anchor_groups(batch.group_index, batch.observation, cfg.similarity_thresh)  # [N]
        step = anchor_advantages(batch.returns, anchors, norm=cfg.adv_norm)  # [N]
        sizes = torch.bincount(anchors) if len(anchors) else torch.zeros(0)
        ctx.log({"gigpo/anchor_groups": float(len(sizes)),
                 "gigpo/anchor_size_mean": float(sizes.float().mean()) if len(sizes) else 0.0,
                 "gigpo/step_adv_abs_mean": float(step.abs().mean()) if len(step) else 0.0})
        return episode + cfg.step_weight * token_advantages(step, batch.mask)
