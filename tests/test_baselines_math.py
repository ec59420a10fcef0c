"""The baselines' math on fixed small batches, against values computed by hand.

Every expected number is derived in the comments from the spec §3 formulas
(algorithms.md), with exp/sigmoid evaluated by a calculator:
    sigmoid(2.5) = 0.9241418, sigmoid(−2) = 0.1192029, e^0.2 = 1.2214028, e^0.5 = 1.6487213,
    e^−0.4 = 0.6703200, e^0.1 = 1.1051709, e^−0.1 = 0.9048374, e^−0.5 = 0.6065307, e^−0.3 = 0.7408182.
"""

from __future__ import annotations

import math

import pytest
import torch

from learners.distill import TEACHER_LOGP, LibraryConfig, library_messages, library_teacher_logp
from learners.gigpo import GiGPO, GiGPOConfig, anchor_advantages, anchor_groups
from learners.grpo_opsd import GRPOOPSD, GRPOOPSDConfig
from learners.opsd import OPSD
from learners.rlsd import RLSD, RLSDConfig, first_token_advantage, rlsd_lambda, rlsd_weights
from learners.sdar import SDAR, SDARConfig, sdar_gate
from learners.skill_sd import SkillSD, SkillSDConfig, skill_sd_term
from learners.skills.library import SKILLS_HEADER, load_library
from opid_gym.benchmark import Benchmark
from opid_gym.learner import ConfigError, LossInputs, RunInfo, StepContext, build_step_batch
from opid_gym.types import Step, Trajectory
from tests.support import letters as toyenv

# One sample, two valid tokens and one padding column (values there must not matter).
LOGP = [[-1.0, -2.0, -7.0]]
TEACHER = [[-0.5, -2.4, 0.0]]
MASK = [[1.0, 1.0, 0.0]]
SIG_2_5, SIG_M2 = 0.9241418, 0.1192029


def _run(family: str = "toy") -> RunInfo:
    bench = Benchmark("t", "opid/x", "opid/x", max_steps=3)
    return RunInfo(benchmark=bench, family=family, template=toyenv.TOY_PROMPT, action_format="think_action")


def _inputs(adv: float = 1.0, *, old=None, teacher=None, ref=None):
    logp = torch.tensor(LOGP, requires_grad=True)
    old = torch.tensor(old if old is not None else LOGP)
    inputs = LossInputs(logp=logp, old_logp=old, mask=torch.tensor(MASK), advantages=adv * torch.tensor(MASK),
                        num_tokens=2.0, ref_logp=None if ref is None else torch.tensor(ref),
                        extras={TEACHER_LOGP: torch.tensor(teacher if teacher is not None else TEACHER)})
    return logp, inputs


NO_REG = {"kl_coef": 0.0, "entropy_coef": 0.0}


# ------------------------------------------------------------------------ SDAR
def test_sdar_gate():
    # g = sigmoid(5·(ℓ_T − logπθ)): token 1: 5·0.5 = 2.5; token 2: 5·(−0.4) = −2
    g = sdar_gate(torch.tensor(TEACHER), torch.tensor(LOGP, requires_grad=True), 5.0)
    assert not g.requires_grad
    assert g[0, :2].tolist() == pytest.approx([SIG_2_5, SIG_M2], abs=1e-6)


def test_sdar_loss_and_gradient():
    learner = SDAR(SDARConfig(**NO_REG), _run())
    logp, inputs = _inputs(adv=1.0)
    out = learner.loss(inputs)
    # distill: token_mean(g·(ℓ_T − logπθ)) = (0.9241418·0.5 + 0.1192029·(−0.4)) / 2 = 0.2071949; ×λ=0.01
    # pg: ratio 1, A = 1 → −1 per token → token mean −1
    assert out.metrics["loss/distill"] == pytest.approx(0.002071949, abs=1e-8)
    assert out.metrics["loss/pg"] == pytest.approx(-1.0)
    assert float(out.loss.detach()) == pytest.approx(-1.0 + 0.002071949, abs=1e-7)
    out.loss.backward()
    # ∂/∂logπθ: pg −A·ratio/2 = −0.5; distill −λ·g/2 = −0.0046207 and −0.0005960; padding 0
    assert logp.grad[0].tolist() == pytest.approx([-0.5 - 0.0046207, -0.5 - 0.0005960, 0.0], abs=1e-6)


def test_sdar_paper_text_settings_are_a_config_away():
    cfg = SDARConfig(distill_coef=0.1, gate_beta=10.0, **NO_REG)
    _, inputs = _inputs(adv=0.0)
    out = SDAR(cfg, _run()).loss(inputs)
    # g = sigmoid(10·0.5) = 0.9933071, sigmoid(10·(−0.4)) = 0.0179862
    expected = 0.1 * (0.9933071 * 0.5 + 0.0179862 * (-0.4)) / 2
    assert out.metrics["loss/distill"] == pytest.approx(expected, abs=1e-7)
    with pytest.raises(ConfigError, match="gate_beta"):
        SDARConfig(gate_beta=0.0)


# ------------------------------------------------------------------------ OPSD
def test_opsd_has_no_policy_gradient_term():
    learner = OPSD(SDARConfig(**NO_REG), _run())
    logp, inputs = _inputs(adv=1.0)  # a large advantage that must not matter
    out = learner.loss(inputs)
    assert "loss/pg" not in out.metrics
    assert float(out.loss.detach()) == pytest.approx(0.002071949, abs=1e-8)  # the SDAR term only (see above)
    out.loss.backward()
    assert logp.grad[0].tolist() == pytest.approx([-0.0046207, -0.0005960, 0.0], abs=1e-6)


def test_opsd_keeps_the_kl_term_and_reports_zero_advantages():
    learner = OPSD(SDARConfig(kl_coef=0.1, entropy_coef=0.0), _run())
    # ref = logπθ + 0.5 on token 1: k3 = e^0.5 − 0.5 − 1 = 0.1487213; token 2: 0 → token mean 0.0743606
    _, inputs = _inputs(adv=1.0, ref=[[-0.5, -2.0, 0.0]])
    out = learner.loss(inputs)
    assert float(out.loss.detach()) == pytest.approx(0.002071949 + 0.1 * 0.0743606, abs=1e-6)
    batch = _batch()
    assert torch.equal(learner.advantages(batch, _ctx()), torch.zeros_like(batch.mask))


# ------------------------------------------------------------------- GRPO+OPSD
def test_grpo_opsd_at_gate_one_half():
    learner = GRPOOPSD(GRPOOPSDConfig(**NO_REG), _run())
    logp, inputs = _inputs(adv=1.0)
    out = learner.loss(inputs)
    # 0.01 · token_mean(0.5·(ℓ_T − logπθ)) = 0.01 · (0.5·0.5 + 0.5·(−0.4)) / 2 = 0.01 · 0.025 = 0.00025
    assert out.metrics["loss/distill"] == pytest.approx(0.00025, abs=1e-9)
    assert float(out.loss.detach()) == pytest.approx(-1.0 + 0.00025, abs=1e-7)
    out.loss.backward()
    # every valid token: −0.5 (pg) − 0.01·0.5/2 = −0.5025
    assert logp.grad[0].tolist() == pytest.approx([-0.5025, -0.5025, 0.0], abs=1e-7)


# -------------------------------------------------------------------- Skill-SD
def test_skill_sd_rho_k3_term():
    old = [[-1.2, -2.0, 0.0]]
    term, rho, k3 = skill_sd_term(torch.tensor(LOGP), torch.tensor(old), torch.tensor(TEACHER))
    # token 1: ρ = e^(−1.0+1.2) = e^0.2 = 1.2214028; d = −1.0+0.5 = −0.5, k3 = e^0.5 − 1 − 0.5 = 0.1487213
    # token 2: ρ = e^0 = 1; d = −2.0+2.4 = 0.4, k3 = e^−0.4 − 1 + 0.4 = 0.0703200
    assert rho[0, :2].tolist() == pytest.approx([1.2214028, 1.0], abs=1e-6)
    assert k3[0, :2].tolist() == pytest.approx([0.1487213, 0.0703200], abs=1e-6)
    assert term[0, :2].tolist() == pytest.approx([1.2214028 * 0.1487213, 0.0703200], abs=1e-6)
    learner = SkillSD(SkillSDConfig(**NO_REG), _run())
    _, inputs = _inputs(adv=0.0, old=old)
    out = learner.loss(inputs)
    # 0.001 · (0.1816486 + 0.0703200) / 2 = 0.000125984
    assert out.metrics["loss/distill"] == pytest.approx(0.000125984, abs=1e-9)
    # seq-mean-token-sum over the one row: 0.001 · (0.1816486 + 0.0703200) / 1 = 0.000251969
    seq = SkillSD(SkillSDConfig(**NO_REG, loss_agg_mode="seq-mean-token-sum"), _run()).loss(inputs)
    assert seq.metrics["loss/distill"] == pytest.approx(0.000251969, abs=1e-9)


def test_skill_sd_ratio_is_capped_at_e10():
    _, rho, _ = skill_sd_term(torch.tensor([[0.0]]), torch.tensor([[-15.0]]), torch.tensor([[0.0]]))
    assert float(rho) == pytest.approx(math.exp(10.0), rel=1e-6)


def test_skill_sd_k3_is_not_clamped_only_minus_d_is_capped_at_20():
    # As SDAR's skillsd_utils: k3 = exp(min(−d, 20)) − 1 + d, d = logπθ − ℓ_T, no clamp on the value.
    logp = torch.tensor([[-13.0, -26.0, 0.0]])
    teacher = torch.tensor([[-1.0, -1.0, -3.0]])
    _, _, k3 = skill_sd_term(logp, logp, teacher)
    # token 1: d = −12, −d = 12 < 20: e^12 − 1 − 12 = 162754.791419 − 13 = 162741.791419 (not clamped to 10)
    # token 2: d = −25, −d capped at 20: e^20 − 1 − 25 = 485165195.40979 − 26 = 485165169.40979
    # token 3: d = 3: e^−3 − 1 + 3 = 0.0497871 + 2 = 2.0497871
    assert k3[0].tolist() == pytest.approx([162741.791419, 485165169.40979, 2.0497871], rel=1e-6)


# ------------------------------------------------------------------------ RLSD
def test_rlsd_lambda_schedule():
    assert [rlsd_lambda(s) for s in (0, 50, 100, 150)] == pytest.approx([0.5, 0.25, 0.0, 0.0])


def test_rlsd_reads_a_at_the_rows_first_valid_token():
    adv = torch.tensor([[3.0, 5.0, 0.0], [9.0, 2.0, 4.0], [7.0, 7.0, 7.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    # row 1: first valid token 0 → 3; row 2 (left padding): token 1 → 2; row 3: no valid token → 0
    assert first_token_advantage(adv, mask).tolist() == [[3.0], [2.0], [0.0]]


def test_rlsd_weights_at_half_and_after_decay():
    adv = torch.tensor([[2.0, 2.0], [-1.0, -1.0], [0.0, 0.0]])
    delta = torch.tensor([[0.1, -0.5], [0.1, 0.3], [0.4, 0.0]])
    w = rlsd_weights(adv, delta, 0.5)
    # A>0: e^0.1 = 1.1051709 (inside [0.8, 1.2]) → 0.5 + 0.5·1.1051709 = 1.0525855
    #      e^−0.5 = 0.6065 → clipped to 0.8 → 0.5 + 0.4 = 0.9
    # A<0: e^−0.1 = 0.9048374 → 0.9524187;  e^−0.3 = 0.7408 → 0.8 → 0.9
    # A=0: sign 0 → e^0 = 1 → weight 1
    assert w.tolist() == [pytest.approx([1.0525855, 0.9], abs=1e-6), pytest.approx([0.9524187, 0.9], abs=1e-6),
                          pytest.approx([1.0, 1.0])]
    assert (adv * w).tolist()[0] == pytest.approx([2.1051709, 1.8], abs=1e-6)
    assert torch.equal(rlsd_weights(adv, delta, rlsd_lambda(100)), torch.ones_like(adv))  # decayed: plain A


def test_rlsd_learner_reweights_grpo_advantages_with_the_teacher_gap():
    batch = _batch()
    teacher = batch.old_logp + torch.tensor([[0.1, -0.5], [0.1, 0.3], [0.0, 0.0]]) * batch.mask
    learner = RLSD(RLSDConfig(), _run())
    learner.prepare(batch, _ctx(teacher))
    # GRPO: scores 10 (won) and 0 in one group → mean 5, std √50 → A = ±5/(7.0710678+1e-6) = ±0.7071067
    a = 5 / (math.sqrt(50) + 1e-6)
    # loop step 0 is the reference's global step 1: λ = 0.5·(1 − 1/100) = 0.495, so
    # w = 0.505 + 0.495·clip(e^(sign(A)·Δ)): e^0.1 → 0.505 + 0.5470596 = 1.0520596; 0.8 → 0.901;
    # e^−0.1 → 0.505 + 0.4478945 = 0.9528945
    adv0 = learner.advantages(batch, _ctx(teacher, step=0))
    assert adv0[0].tolist() == pytest.approx([a * 1.0520596, a * 0.901], abs=1e-6)
    assert adv0[1].tolist() == pytest.approx([-a * 0.9528945, -a * 0.901], abs=1e-6)
    # loop step 98 = global step 99: λ = 0.005 → w = 0.995 + 0.005·0.8 = 0.999 at the clipped token
    adv98 = learner.advantages(batch, _ctx(teacher, step=98))
    assert adv98[0, 1].item() == pytest.approx(a * 0.999, abs=1e-6)
    adv99 = learner.advantages(batch, _ctx(teacher, step=99))  # global step 100: λ = 0, plain A
    assert adv99[:2].tolist() == [pytest.approx([a, a], abs=1e-6), pytest.approx([-a, -a], abs=1e-6)]


# ------------------------------------------------------------ library teacher
def test_library_teacher_scores_the_library_prompt_and_stores_it():
    batch = _batch(task_type="heat")
    seen = {}

    def score(messages, rows=None):
        seen["messages"] = messages
        return torch.full((len(messages), batch.mask.shape[1]), -0.25)

    ctx = _ctx(run=_run("alfworld"))
    ctx.score_messages = score
    teacher = library_teacher_logp(batch, ctx, load_library())
    heat = load_library().select("alfworld", "heat an egg", "heat").text
    assert len(seen["messages"]) == len(batch)
    for sent, original in zip(seen["messages"], batch.messages):
        assert sent[-1]["content"] == f"{SKILLS_HEADER}\n{heat}\n\n{original[-1]['content']}"
    assert "microwave" in heat
    assert torch.equal(batch.extras[TEACHER_LOGP], teacher)
    assert torch.equal(teacher, -0.25 * batch.mask)  # 0 at padding
    assert batch.messages[0][-1]["content"] == "prompt 0"  # the policy's own prompt is untouched


def test_skill_library_setting_is_checked(tmp_path):
    with pytest.raises(ConfigError, match="skill library folder"):
        LibraryConfig(skill_library=str(tmp_path))
    (tmp_path / "general.md").write_text("Be brief.")
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "x.md").write_text("Write the letter.")
    lib = load_library(LibraryConfig(skill_library=str(tmp_path)).skill_library)
    msgs = library_messages(_batch(), lib, "toy")  # kind = task_type "x" for an unknown family
    assert msgs[0][-1]["content"].startswith(f"{SKILLS_HEADER}\nWrite the letter.\nBe brief.\n\n")


# ----------------------------------------------------------------------- GiGPO
def test_gigpo_anchor_grouping():
    group = torch.tensor([0, 0, 0, 0, 0, 1])
    obs = ["start", "room", "room2", "start", "room", "start"]
    # identical observations in one group share an anchor; "start" in group 1 is another anchor
    assert anchor_groups(group, obs).tolist() == [0, 1, 2, 0, 1, 3]
    assert anchor_groups(torch.tensor([0, 0]), ["a", "a "]).tolist() == [0, 1]  # text must be identical


def test_gigpo_similarity_based_anchor_grouping():
    # SequenceMatcher ratio = 2·M / (|a| + |b|): "abcdefghij" vs "abcdefghik" share 9 of 10 → 18/20 = 0.9;
    # "abcdefghij" vs "xyzxyzxyzx" share 0 → 0.0
    group = torch.tensor([0, 0, 0, 0, 1])
    obs = ["abcdefghij", "abcdefghik", "xyzxyzxyzx", "abcdefghij", "abcdefghik"]
    assert anchor_groups(group, obs, similarity_thresh=0.85).tolist() == [0, 0, 1, 0, 2]  # 0.9 >= 0.85
    assert anchor_groups(group, obs, similarity_thresh=0.95).tolist() == [0, 1, 2, 0, 3]  # 0.9 < 0.95
    # the step advantage follows the merged anchors: returns (4, 2, 1, 0) in anchor 0 of group 0
    batch = build_step_batch([_traj("a", "g0", ["abcdefghij"], [4.0], won=True),
                              _traj("b", "g0", ["abcdefghik"], [2.0])], gamma=0.5)
    ctx = _ctx()
    plain = GiGPO(GiGPOConfig(gamma=0.5, step_weight=1.0, adv_norm="mean_norm"), _run()).advantages(batch, ctx)
    merged = GiGPO(GiGPOConfig(gamma=0.5, adv_norm="mean_norm", similarity_thresh=0.85), _run()).advantages(batch, ctx)
    # episode (mean_norm): 4 − 3 = 1, 2 − 3 = −1; merged anchor adds 4 − 3 = 1 and 2 − 3 = −1
    assert plain[:, 0].tolist() == pytest.approx([1.0, -1.0])
    assert merged[:, 0].tolist() == pytest.approx([2.0, -2.0])
    with pytest.raises(ConfigError, match="similarity_thresh"):
        GiGPOConfig(similarity_thresh=1.0)


def test_gigpo_step_advantages_and_total():
    # group g0: a = start → room → room2 (reward 10 at the end), b = start → room (lost); g1: c = start (lost)
    trajs = [_traj("a", "g0", ["start", "room", "room2"], [0.0, 0.0, 10.0], won=True),
             _traj("b", "g0", ["start", "room"], [0.0, 0.0]),
             _traj("c", "g1", ["start"], [0.0])]
    batch = build_step_batch(trajs, gamma=0.5)
    # returns with γ = 0.5: a [2.5, 5, 10], b [0, 0], c [0]
    assert batch.returns.tolist() == [2.5, 5.0, 10.0, 0.0, 0.0, 0.0]
    anchors = anchor_groups(batch.group_index, batch.observation)
    # "start" (2.5, 0): mean 1.25, std √(2·1.25²) → ±0.7071064; "room" (5, 0) → ±0.7071066; singletons → 0
    step = anchor_advantages(batch.returns, anchors)
    assert step.tolist() == pytest.approx([0.7071064, 0.7071066, 0.0, -0.7071064, -0.7071066, 0.0], abs=1e-6)
    assert anchor_advantages(batch.returns, anchors, norm="mean_norm").tolist() == [1.25, 2.5, 0.0, -1.25, -2.5, 0.0]
    # A_ep (step pooling): g0 scores 10,10,10,0,0 → mean 6, std √30 → +0.7302966 / −1.0954449; g1 alone → 0
    total = GiGPO(GiGPOConfig(gamma=0.5), _run()).advantages(batch, _ctx())
    assert total[:, 0].tolist() == pytest.approx(
        [0.7302966 + 0.7071064, 0.7302966 + 0.7071066, 0.7302966, -1.0954449 - 0.7071064,
         -1.0954449 - 0.7071066, 0.0], abs=1e-5)
    assert torch.equal(total, total[:, :1] * batch.mask)
    half = GiGPO(GiGPOConfig(gamma=0.5, step_weight=0.5), _run()).advantages(batch, _ctx())
    assert half[0, 0].item() == pytest.approx(0.7302966 + 0.5 * 0.7071064, abs=1e-5)


# --------------------------------------------------------------------- helpers
def _step(i, obs=None, reward=0.0, n_tokens=2):
    return Step(index=i, observation=obs if obs is not None else f"obs{i}",
                prompt=[{"role": "user", "content": f"prompt {i}"}], response=f"resp{i}", action="a", valid=True,
                next_observation="", reward=reward, terminated=False, truncated=False, prompt_token_ids=[1, 2, 3],
                response_token_ids=list(range(10, 10 + n_tokens)), response_logprobs=[-1.0] * n_tokens)


def _traj(tid, group, observations, rewards, won=False, task_type="x"):
    steps = [_step(i, obs, r) for i, (obs, r) in enumerate(zip(observations, rewards))]
    return Trajectory(traj_id=tid, env_id="toy", task_index=0, task_id="t0", task_type=task_type, task="heat an egg",
                      seed=1, group_id=group, member=0, steps=steps, won=won)


def _batch(task_type="x"):
    """Two one-step trajectories of one group (won: R = 10, lost: R = 0) and one lone group."""
    trajs = [_traj("a", "g0", ["o"], [10.0], won=True, task_type=task_type),
             _traj("b", "g0", ["o"], [0.0], task_type=task_type), _traj("c", "g1", ["o"], [0.0], task_type=task_type)]
    batch = build_step_batch(trajs)
    batch.old_logp = torch.tensor([[-1.0, -2.0], [-1.5, -0.5], [-1.0, -1.0]]) * batch.mask
    return batch


def _ctx(teacher=None, *, step=0, run=None):
    def score(messages, rows=None):
        return teacher.clone()

    return StepContext(step=step, run=run or _run(), score_messages=score, score_ids=lambda p, r=None: None,
                       log=lambda d: None)
