"""GRPO for multi-turn agents: group-relative episode advantage + PPO dual-clip loss.

DeepSeekMath (arXiv 2402.03300, §4.1) introduced GRPO for single-turn answers: sample
G responses per prompt and use each response's reward, normalised within its group,
as the advantage of all its tokens (no value network). For agents (algorithms spec §1,
as the OPID/verl-agent reference code does it), every step of a trajectory is one
training sample whose score is the whole episode's return minus the invalid-action
penalty of that step:

    S_i   = R(τ) − c_inv · 1[step i invalid]
    A_i   = (S_i − mean_g S) / (std_g S + 1e-6)        (or S_i − mean_g S: "mean_norm")
    A_i,l = A_i · m_i,l                                  (every valid response token)
    loss  = token_mean(PPO dual clip) − β_ent·H + β_kl·token_mean(k3(πθ‖π_ref))

Statistics pool every step sample of the group by default (long trajectories weigh
more), or one value per trajectory with ``pooling="trajectory"``.
"""

from __future__ import annotations

import torch

from learners.common import episode_scores, group_advantages, policy_loss, token_advantages
from opid_gym.learner import ConfigT, Learner, LearnerConfig, LossInputs, LossOutput, StepBatch, StepContext


class GRPO(Learner[ConfigT]):
    """GRPO (generic so that learners built on it keep their own config type)."""

    name = "grpo"
    description = "GRPO: group-normalised episode return per step sample + PPO dual-clip loss"
    paper = "arXiv 2402.03300"
    Config = LearnerConfig

    def advantages(self, batch: StepBatch, ctx: StepContext) -> torch.Tensor:
        cfg = self.config
        scores = episode_scores(batch.episode_return, batch.invalid, cfg.invalid_penalty)  # [N]
        adv = group_advantages(
            scores, batch.group_index, norm=cfg.adv_norm, pooling=cfg.pooling, traj_index=batch.traj_index,
        )  # [N]
        ctx.log({"grpo/score_mean": float(scores.mean()) if len(scores) else 0.0,
                 "grpo/adv_abs_mean": float(adv.abs().mean()) if len(adv) else 0.0,
                 "grpo/zero_adv_frac": float((adv == 0).float().mean()) if len(adv) else 0.0})
        return token_advantages(adv, batch.mask)  # [N, L]

    def loss(self, inputs: LossInputs) -> LossOutput:
        return policy_loss(inputs, self.config)
