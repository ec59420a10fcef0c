"""The shared learner math against values computed by hand (algorithms spec §1)."""

from __future__ import annotations

import math

import pytest
import torch

from learners.common import (
    aggregate_loss,
    discounted_returns,
    episode_scores,
    group_advantages,
    k3_kl,
    kl_penalty,
    opd_loss,
    policy_loss,
    ppo_dual_clip_loss,
    teacher_advantage,
    token_advantages,
    token_mean,
)
from opid_gym.learner import ConfigError, LearnerConfig, LossInputs

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


# ------------------------------------------- equal groups: exactly 0 (float64 statistics)
def _float32_reference(values):
    """The reference code's arithmetic (float32 mean/std, then / (std + 1e-6)): what we no longer do."""
    v = torch.tensor(values, dtype=torch.float32)
    return (v - v.mean()) / (v.std() + EPS)


@pytest.mark.parametrize("values", [[9.9] * 8, [-0.1] * 8, [0.7] * 7, [9.9] * 16, [0.7] * 3, [0.0] * 8])
@pytest.mark.parametrize("norm", ["mean_std_norm", "mean_norm"])
def test_a_group_of_equal_scores_gets_exactly_zero_at_any_size(values, norm):
    n = len(values)
    scores = torch.tensor(values, dtype=torch.float32)
    adv = group_advantages(scores, torch.zeros(n, dtype=torch.long), norm=norm)
    assert adv.dtype == torch.float32
    assert adv.tolist() == [0.0] * n
    traj = group_advantages(scores, torch.zeros(n, dtype=torch.long), norm=norm, pooling="trajectory",
                            traj_index=torch.arange(n))
    assert traj.tolist() == [0.0] * n


def test_the_float32_artefact_the_float64_statistics_remove():
    # the issue measured, with float32 statistics, −0.47 each for 8 × 9.9 and +0.0074 for 8 × −0.1
    # (the exact residue depends on float32 summation order): visibly non-zero, unlike ours
    assert abs(float(_float32_reference([9.9] * 8)[0])) > 0.1
    assert abs(float(_float32_reference([-0.1] * 8)[0])) > 1e-3


def test_equal_scores_built_from_returns_and_penalties_get_zero():
    # S = 10 − 0.1 = 9.9 for 8 invalid steps of 8 won episodes; S = 0 − 0.1 = −0.1 for 8 lost ones
    s = episode_scores(torch.full((16,), 10.0).index_fill(0, torch.arange(8, 16), 0.0),
                       torch.ones(16, dtype=torch.bool), 0.1)
    adv = group_advantages(s, torch.tensor([0] * 8 + [1] * 8))
    assert adv.tolist() == [0.0] * 16


def test_mixed_groups_against_hand_computed_values():
    # group 0: 1, 0, 0, 0 → mean 0.25, deviations 0.75, −0.25 (×3), var (0.5625 + 3·0.0625)/3 = 0.25, std 0.5
    # group 1: 9.9 ×7, −0.1 → mean (69.3 − 0.1)/8 = 8.65, deviations 1.25 (×7), −8.75,
    #          var (7·1.5625 + 76.5625)/7 = 87.5/7 = 12.5, std √12.5 = 3.5355339
    # group 2: 0.7 ×6, 1.7 → mean 5.2/7 = 0.8428571, deviations −0.1428571 (×6), 0.8571429,
    #          var (6·0.0204082 + 0.7346939)/6 = 0.8571429/6 = 0.1428571, std 0.3779645
    scores = torch.tensor([1.0, 0.0, 0.0, 0.0] + [9.9] * 7 + [-0.1] + [0.7] * 6 + [1.7])
    groups = torch.tensor([0] * 4 + [1] * 8 + [2] * 7)
    adv = group_advantages(scores, groups)
    s1 = math.sqrt(12.5)
    s2 = math.sqrt(1 / 7)
    expected = ([0.75 / (0.5 + EPS)] + [-0.25 / (0.5 + EPS)] * 3 + [1.25 / (s1 + EPS)] * 7 + [-8.75 / (s1 + EPS)]
                + [-(1 / 7) / (s2 + EPS)] * 6 + [(6 / 7) / (s2 + EPS)])
    assert adv.tolist() == pytest.approx(expected, abs=1e-6)
    assert adv[:4].tolist() == pytest.approx([1.4999970, -0.4999990, -0.4999990, -0.4999990], abs=1e-6)
    centred = group_advantages(scores, groups, norm="mean_norm")
    assert centred.tolist() == pytest.approx([0.75, -0.25, -0.25, -0.25] + [1.25] * 7 + [-8.75]
                                             + [-1 / 7] * 6 + [6 / 7], abs=1e-6)
    # the pooled values of the same mixed groups sum to 0 per group (float64 residue only)
    for g in range(3):
        assert abs(float(centred[groups == g].double().sum())) < 1e-5


# ------------------------------------------------------------- loss aggregation
X = [[1.0, 2.0, 3.0], [4.0, 9.0, 9.0]]
XMASK = [[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]]


@pytest.mark.parametrize("mode,expected", [
    ("token-mean", 10 / 4),                 # (1 + 2 + 3 + 4) / 4 tokens
    ("seq-mean-token-sum", 10 / 2),         # (6 + 4) / 2 rows
    ("seq-mean-token-mean", (2 + 4) / 2),   # (6/3 + 4/1) / 2 rows
    ("seq-mean-token-sum-norm", 10 / 8),    # (6 + 4) / Lmax = 8
])
def test_loss_aggregation_modes(mode, expected):
    x, m = torch.tensor(X), torch.tensor(XMASK)
    assert float(aggregate_loss(x, m, mode, norm_length=8)) == pytest.approx(expected)
    # micro-batches given the mini-batch's divisors add up to the mini-batch's value
    parts = [aggregate_loss(x[i:i + 1], m[i:i + 1], mode, num_tokens=4, num_seqs=2, norm_length=8) for i in range(2)]
    assert float(sum(parts)) == pytest.approx(expected)


def test_seq_mean_token_sum_norm_defaults_to_the_width_and_bad_modes_fail():
    assert float(aggregate_loss(torch.tensor(X), torch.tensor(XMASK), "seq-mean-token-sum-norm")) == pytest.approx(10 / 3)
    with pytest.raises(ValueError, match="loss_agg_mode"):
        aggregate_loss(torch.tensor(X), torch.tensor(XMASK), "seq-sum")
    with pytest.raises(ConfigError, match="loss_agg_mode"):
        LearnerConfig(loss_agg_mode="seq-sum")  # type: ignore[arg-type]


def test_policy_loss_follows_the_aggregation_mode():
    # ratio 1, A = 1 on row 0's three tokens and −1 on row 1's one token: per-token loss −1, −1, −1, +1
    logp = torch.zeros(2, 3, requires_grad=True)
    inputs = LossInputs(logp=logp, old_logp=torch.zeros(2, 3), mask=torch.tensor(XMASK),
                        advantages=torch.tensor([[1.0, 1.0, 1.0], [-1.0, 0.0, 0.0]]), num_tokens=4, num_seqs=2,
                        norm_length=8)
    want = {"token-mean": -2 / 4, "seq-mean-token-sum": -2 / 2, "seq-mean-token-mean": (-1 + 1) / 2,
            "seq-mean-token-sum-norm": -2 / 8}
    for mode, value in want.items():
        out = policy_loss(inputs, LearnerConfig(kl_coef=0.0, entropy_coef=0.0, loss_agg_mode=mode))
        assert out.metrics["loss/pg"] == pytest.approx(value), mode


# --------------------------------------------------------- asymmetric clipping
def test_asymmetric_clip_low_and_high():
    # ratios 1.3, 1.25 with A = 1 and 0.7 with A = −1 (one token each)
    logp = torch.log(torch.tensor([[1.3, 1.25, 0.7]]))
    old, adv = torch.zeros(1, 3), torch.tensor([[1.0, 1.0, -1.0]])
    sym, _, _ = ppo_dual_clip_loss(logp, old, adv, clip_eps=0.2)
    # ε = 0.2: max(−1.3, −1.2) = −1.2; max(−1.25, −1.2) = −1.2; A<0: max(0.7, 0.8) = 0.8
    assert sym[0].tolist() == pytest.approx([-1.2, -1.2, 0.8])
    higher, clipped, _ = ppo_dual_clip_loss(logp, old, adv, clip_eps=0.2, clip_high=0.28)
    # clip-higher 0.28: −1.28 (1.3 still clipped), −1.25 (inside), lower side unchanged 0.8
    assert higher[0].tolist() == pytest.approx([-1.28, -1.25, 0.8])
    assert clipped[0].tolist() == [1.0, 0.0, 1.0]
    lower, _, _ = ppo_dual_clip_loss(logp, old, adv, clip_eps=0.2, clip_low=0.4)
    # ε_low 0.4: the ratio 0.7 lies inside [0.6, 1.2] → 0.7
    assert lower[0].tolist() == pytest.approx([-1.2, -1.2, 0.7])
    out = policy_loss(LossInputs(logp=logp, old_logp=old, mask=torch.ones(1, 3), advantages=adv, num_tokens=3),
                      LearnerConfig(kl_coef=0.0, entropy_coef=0.0, clip_eps_high=0.28))
    assert out.metrics["loss/pg"] == pytest.approx((-1.28 - 1.25 + 0.8) / 3)


# -------------------------------------------------------------- KL estimators
def test_kl_estimators():
    # logp = log 0.25, ref = log 0.5: d = logp − ref = −ln 2 = −0.6931472
    logp, ref = torch.log(torch.tensor([[0.25]])), torch.log(torch.tensor([[0.5]]))
    ln2 = math.log(2)
    assert float(kl_penalty(logp, ref, "kl")) == pytest.approx(-ln2)
    assert float(kl_penalty(logp, ref, "abs")) == pytest.approx(ln2)
    assert float(kl_penalty(logp, ref, "mse")) == pytest.approx(0.5 * ln2 ** 2)       # 0.2402265
    assert float(kl_penalty(logp, ref, "low_var_kl")) == pytest.approx(2 - ln2 - 1)   # e^{ln 2} − ln 2 − 1 = 0.3068528
    assert float(kl_penalty(torch.tensor([[-30.0]]), torch.tensor([[0.0]]), "low_var_kl")) == 10.0  # clamped
    with pytest.raises(ValueError, match="KL estimator"):
        kl_penalty(logp, ref, "full")
    inputs = LossInputs(logp=logp, old_logp=logp, mask=torch.ones(1, 1), advantages=torch.zeros(1, 1),
                        num_tokens=1, ref_logp=ref)
    out = policy_loss(inputs, LearnerConfig(kl_coef=0.1, entropy_coef=0.0, kl_estimator="mse"))
    assert out.metrics["kl"] == pytest.approx(0.5 * ln2 ** 2)
    assert out.metrics["loss/kl"] == pytest.approx(0.05 * ln2 ** 2)


def test_new_loss_knobs_have_the_reference_defaults_and_set_keys():
    from opid_gym.config import resolve_config

    cfg = resolve_config("grpo", "alfworld-unseen").learner
    assert (cfg.loss_agg_mode, cfg.clip_eps_low, cfg.clip_eps_high, cfg.kl_estimator) == (
        "token-mean", None, None, "low_var_kl")
    cfg = resolve_config("grpo", "alfworld-unseen", set_items=[
        "learner.loss_agg_mode=seq-mean-token-mean", "clip_eps_low=0.2", "learner.clip_eps_high=0.28",
        "kl_estimator=mse"]).learner
    assert (cfg.loss_agg_mode, cfg.clip_eps_low, cfg.clip_eps_high, cfg.kl_estimator) == (
        "seq-mean-token-mean", 0.2, 0.28, "mse")
    with pytest.raises(ConfigError, match="kl_estimator"):
        resolve_config("grpo", "alfworld-unseen", set_items=["kl_estimator=k9"])


# ------------------------------------------------------------------ OPID terms
DELTA = [[1.0, 3.0, 9.0], [2.0, 0.0, 0.0], [5.0, 5.0, 5.0]]
DMASK = [[1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 1.0]]


def _teacher(**kw):
    return teacher_advantage(torch.tensor(DELTA), torch.tensor(DMASK), torch.tensor([True, True, False]),
                             torch.tensor([0.5, 0.5, 0.0]), **kw)


def test_teacher_advantage_default_normalize_and_clip():
    # default: λ·Δ·m on active rows → row 0: 0.5, 1.5, (pad) 0; row 1: 1; row 2 inactive → 0
    assert _teacher().tolist() == [[0.5, 1.5, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    # normalize: valid active values 1, 3, 2 → mean 2, population std √(2/3) = 0.8164966;
    # (1 − 2)/(0.8164966 + 1e-6) = −1.2247434, (3 − 2)/… = 1.2247434, 0 → × λ 0.5
    norm = _teacher(normalize=True)
    assert norm.tolist() == [pytest.approx([-0.6123717, 0.6123717, 0.0], abs=1e-6),
                             pytest.approx([0.0, 0.0, 0.0], abs=1e-9), [0.0, 0.0, 0.0]]
    # clip 1: Δ clamped to [−1, 1] → 1, 1, 1 → × 0.5
    assert _teacher(clip=1.0).tolist() == [[0.5, 0.5, 0.0], [0.5, 0.0, 0.0], [0.0, 0.0, 0.0]]
    # normalize then clip 1: −1.2247 → −1, 1.2247 → 1
    assert _teacher(normalize=True, clip=1.0)[0].tolist() == pytest.approx([-0.5, 0.5, 0.0], abs=1e-6)
    # equal values (std 0 <= eps): only the mean is removed → 0
    same = teacher_advantage(torch.full((2, 2), 2.0), torch.ones(2, 2), torch.tensor([True, True]), torch.ones(2),
                             normalize=True)
    assert same.tolist() == [[0.0, 0.0], [0.0, 0.0]]


def test_opd_loss_delta_and_importance_modes():
    # Δ = ℓ_T − ℓ_old = (−0.5 + 1.2, −2.4 + 2.0) = (0.7, −0.4); ratio = e^(logp − old) = (e^0.2, 1)
    old, teacher = torch.tensor([[-1.2, -2.0]]), torch.tensor([[-0.5, -2.4]])
    logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    loss, w = opd_loss(logp, old, teacher)  # delta: −Δ·logp = (0.7, −0.8), gradient −Δ
    assert loss[0].tolist() == pytest.approx([0.7, -0.8]) and w[0].tolist() == pytest.approx([0.7, 0.4])
    loss.sum().backward()
    assert logp.grad[0].tolist() == pytest.approx([-0.7, 0.4])
    logp.grad = None
    loss, _ = opd_loss(logp, old, teacher, clip=0.5)  # Δ clamped to 0.5
    assert loss[0].tolist() == pytest.approx([0.5, -0.8])
    loss, w = opd_loss(logp, old, teacher, mode="importance")  # −Δ·ratio = (−0.7·1.2214028, 0.4)
    assert loss[0].tolist() == pytest.approx([-0.8549820, 0.4], abs=1e-6)
    loss.sum().backward()
    assert logp.grad[0].tolist() == pytest.approx([-0.8549820, 0.4], abs=1e-6)
    logp.grad = None
    loss, _ = opd_loss(logp, old, teacher, mode="importance", clip=0.5)  # 0.855 clamped to 0.5: no gradient
    loss.sum().backward()
    assert loss[0].tolist() == pytest.approx([-0.5, 0.4]) and logp.grad[0].tolist() == pytest.approx([0.0, 0.4])
    with pytest.raises(ValueError, match="OPD weight mode"):
        opd_loss(logp, old, teacher, mode="kl")
