"""The shared learner math against values computed by hand (algorithms spec §1)."""

from __future__ import annotations

import math

import pytest
import torch

from learners.common import (
    discounted_returns,
    episode_scores,
    group_advantages,
    k3_kl,
    policy_loss,
    ppo_dual_clip_loss,
    token_advantages,
    token_mean,
)
from opid_gym.learner import LearnerConfig, LossInputs

EPS = 1e-6


def close(a, b, tol=1e-5):
    return torch.allclose(torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32), atol=tol)


# ---------------------------------------------------------------------- scores
def test_episode_score_subtracts_the_penalty_of_invalid_steps_only():
    s = episode_scores(torch.tensor([10.0, 10.0, 0.0]), torch.tensor([False, True, True]), 0.1)
    assert close(s, [10.0, 9.9, -0.1])


def test_discounted_returns():
    # G_2 = 10, G_1 = 0 + 0.95*10, G_0 = 0 + 0.95*9.5
    assert discounted_returns([0.0, 0.0, 10.0], 0.95) == pytest.approx([9.025, 9.5, 10.0])
    assert discounted_returns([1.0, 1.0], 0.5) == pytest.approx([1.5, 1.0])
    assert discounted_returns([], 0.95) == []


# ------------------------------------------------------------------ advantages
def test_mean_std_norm_with_step_pooling():
    # group 0: S = 10, 0, 0 -> mean 10/3, unbiased var = ((20/3)^2 + 2 (10/3)^2) / 2 = 100/3
    # group 1: one sample -> mean 0, std 1
    scores = torch.tensor([10.0, 0.0, 0.0, 3.0])
    groups = torch.tensor([0, 0, 0, 1])
    adv = group_advantages(scores, groups, norm="mean_std_norm")
    std = math.sqrt(100 / 3)
    assert close(adv, [(20 / 3) / (std + EPS), -(10 / 3) / (std + EPS), -(10 / 3) / (std + EPS), 3.0 / (1 + EPS)])


def test_mean_norm_does_not_divide():
    adv = group_advantages(torch.tensor([10.0, 0.0, 0.0, 3.0]), torch.tensor([0, 0, 0, 1]), norm="mean_norm")
    assert close(adv, [20 / 3, -10 / 3, -10 / 3, 3.0])


def test_all_equal_group_gets_zero_advantage():
    adv = group_advantages(torch.tensor([5.0, 5.0, 5.0, 1.0, 2.0]), torch.tensor([0, 0, 0, 1, 1]))
    assert close(adv[:3], [0.0, 0.0, 0.0])
    # group 1: mean 1.5, unbiased std = sqrt(0.5)
    assert close(adv[3:], [-0.5 / (math.sqrt(0.5) + EPS), 0.5 / (math.sqrt(0.5) + EPS)])


def test_group_of_one_keeps_its_own_score_under_both_norms():
    for norm in ("mean_std_norm", "mean_norm"):
        adv = group_advantages(torch.tensor([-0.1]), torch.tensor([7]), norm=norm)
        expected = -0.1 / (1 + EPS) if norm == "mean_std_norm" else -0.1
        assert close(adv, [expected])


def test_step_pooling_weighs_long_trajectories_more_than_trajectory_pooling():
    # one group: trajectory a = 3 steps (S = 10, 10, 9.9), trajectory b = 1 step (S = 0)
    scores = torch.tensor([10.0, 10.0, 9.9, 0.0])
    groups = torch.tensor([0, 0, 0, 0])
    trajs = torch.tensor([0, 0, 0, 1])
    # step pooling: mean 7.475; deviations 2.525, 2.525, 2.425, -7.475
    step_std = math.sqrt((2 * 2.525**2 + 2.425**2 + 7.475**2) / 3)
    adv = group_advantages(scores, groups, pooling="step")
    assert close(adv, [2.525 / step_std, 2.525 / step_std, 2.425 / step_std, -7.475 / step_std], tol=1e-4)
    # trajectory pooling: values 29.9/3 and 0 -> mean 29.9/6, unbiased std = (29.9/3)/sqrt(2)
    a_mean = 29.9 / 3
    mean, std = a_mean / 2, a_mean / math.sqrt(2)
    adv_t = group_advantages(scores, groups, pooling="trajectory", traj_index=trajs)
    assert close(adv_t, [(10 - mean) / std, (10 - mean) / std, (9.9 - mean) / std, (0 - mean) / std], tol=1e-4)


def test_trajectory_pooling_needs_trajectory_ids_and_names_are_checked():
    with pytest.raises(ValueError, match="traj_index"):
        group_advantages(torch.zeros(2), torch.zeros(2, dtype=torch.long), pooling="trajectory")
    with pytest.raises(ValueError, match="normalisation"):
        group_advantages(torch.zeros(2), torch.zeros(2, dtype=torch.long), norm="std")


def test_token_advantages_broadcast_over_valid_tokens_only():
    out = token_advantages(torch.tensor([2.0, -1.0]), torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]]))
    assert close(out, [[2.0, 2.0, 0.0], [-1.0, 0.0, 0.0]])


# ------------------------------------------------------------------------ loss
# Six tokens: (A, ratio) chosen to hit every branch of the clipped surrogate.
CASES = [
    # A,   ratio, loss, eps-clipped, dual-clipped, d loss / d logp
    (1.0, 1.5, -1.2, 1.0, 0.0, 0.0),     # A>0, ratio above 1+eps: clipped, no gradient
    (1.0, 0.5, -0.5, 0.0, 0.0, -0.5),    # A>0, ratio below 1-eps: unclipped branch, grad -A*ratio
    (-1.0, 1.5, 1.5, 0.0, 0.0, 1.5),     # A<0, ratio above 1+eps: unclipped (pessimistic) branch
    (-1.0, 5.0, 3.0, 0.0, 1.0, 0.0),     # A<0, huge ratio: dual clip bounds the loss at -A*c = 3
    (-2.0, 0.5, 1.6, 1.0, 0.0, 0.0),     # A<0, ratio below 1-eps: clipped at -A*(1-eps) = 1.6
    (0.0, 2.0, 0.0, 0.0, 0.0, 0.0),      # A = 0: no loss
]


def test_dual_clip_ppo_loss_per_token():
    adv = torch.tensor([[c[0] for c in CASES]])
    logp = torch.log(torch.tensor([[c[1] for c in CASES]])).requires_grad_(True)
    old = torch.zeros_like(adv)
    loss, clipped, dual = ppo_dual_clip_loss(logp, old, adv, clip_eps=0.2, dual_clip=3.0)
    assert close(loss, [[c[2] for c in CASES]])
    assert close(clipped, [[c[3] for c in CASES]])
    assert close(dual, [[c[4] for c in CASES]])
    loss.sum().backward()
    assert close(logp.grad, [[c[5] for c in CASES]])


def test_without_dual_clip_the_exploded_negative_token_keeps_its_loss():
    loss, _, dual = ppo_dual_clip_loss(torch.log(torch.tensor([[5.0]])), torch.zeros(1, 1), torch.tensor([[-1.0]]),
                                       dual_clip=None)
    assert close(loss, [[5.0]]) and close(dual, [[0.0]])


def test_token_mean_over_micro_batches_adds_up_to_the_mini_batch_mean():
    x = torch.tensor([[1.0, 2.0, 9.0], [3.0, 0.0, 0.0], [4.0, 5.0, 6.0]])
    m = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    whole = token_mean(x, m)
    assert close(whole, (1 + 2 + 3 + 4 + 5 + 6) / 6)
    parts = token_mean(x[:2], m[:2], num_tokens=6) + token_mean(x[2:], m[2:], num_tokens=6)
    assert close(parts, whole)


def test_k3_kl_values_and_clamp():
    logp = torch.log(torch.tensor([[0.5, 0.3, 1e-12]]))
    ref = torch.log(torch.tensor([[0.25, 0.3, 0.9]]))
    kl = k3_kl(logp, ref)
    # token 0: d = log(0.25/0.5) = -log 2 -> 0.5 + log 2 - 1; token 1: 0; token 2: huge -> clamped to 10
    assert close(kl, [[0.5 + math.log(2) - 1, 0.0, 10.0]])


def test_k3_kl_gradient_stays_finite_when_the_ratio_explodes():
    logp = torch.tensor([[-60.0]], requires_grad=True)
    k3_kl(logp, torch.tensor([[0.0]])).sum().backward()
    assert torch.isfinite(logp.grad).all()


def test_policy_loss_combines_terms_with_their_weights():
    # two valid tokens, A = 1 and -1, ratio 1 (logp = old); ref differs; entropy given
    logp = torch.log(torch.tensor([[0.5, 0.5, 1.0]])).requires_grad_(True)
    inputs = LossInputs(
        logp=logp, old_logp=logp.detach().clone(), mask=torch.tensor([[1.0, 1.0, 0.0]]),
        advantages=torch.tensor([[1.0, -1.0, 0.0]]), num_tokens=2,
        ref_logp=torch.log(torch.tensor([[0.25, 0.5, 1.0]])), entropy=torch.tensor([[2.0, 4.0, 100.0]]),
    )
    cfg = LearnerConfig(kl_coef=0.1, entropy_coef=0.01)
    out = policy_loss(inputs, cfg)
    pg = (-1.0 + 1.0) / 2              # -A*ratio per token, token mean
    kl = (0.5 + math.log(2) - 1 + 0.0) / 2
    ent = (2.0 + 4.0) / 2
    assert out.metrics["loss/pg"] == pytest.approx(pg, abs=1e-6)
    assert out.metrics["kl"] == pytest.approx(kl, abs=1e-6)
    assert out.metrics["entropy"] == pytest.approx(ent, abs=1e-6)
    assert float(out.loss.detach()) == pytest.approx(pg + 0.1 * kl - 0.01 * ent, abs=1e-6)
    no_pg = policy_loss(inputs, cfg, pg=False)
    assert "loss/pg" not in no_pg.metrics
    assert float(no_pg.loss.detach()) == pytest.approx(0.1 * kl - 0.01 * ent, abs=1e-6)


def test_policy_loss_refuses_missing_inputs_it_needs():
    inputs = LossInputs(logp=torch.zeros(1, 1), old_logp=torch.zeros(1, 1), mask=torch.ones(1, 1),
                        advantages=torch.zeros(1, 1), num_tokens=1)
    with pytest.raises(ValueError, match="ref_logp"):
        policy_loss(inputs, LearnerConfig(kl_coef=0.01, entropy_coef=0.0))
    with pytest.raises(ValueError, match="entropy"):
        policy_loss(inputs, LearnerConfig(kl_coef=0.0, entropy_coef=0.01))
