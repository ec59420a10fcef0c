"""GRPO on step batches, and a few real updates of the tiny model on the toy environment."""

from __future__ import annotations

import math

import pytest
import torch

from learners.grpo import GRPO
from opid_gym.learner import LearnerConfig, RunInfo, StepContext, build_step_batch
from opid_gym.types import Step, Trajectory
from tests.support import letters as toyenv


def _step(i, valid=True, reward=0.0, n_tokens=2):
    return Step(index=i, observation=f"obs{i}", prompt=[{"role": "user", "content": f"prompt {i}"}],
                response=f"resp{i}", action="a", valid=valid, next_observation="", reward=reward,
                terminated=False, truncated=False, prompt_token_ids=[1, 2, 3],
                response_token_ids=list(range(10, 10 + n_tokens)), response_logprobs=[-1.0] * n_tokens)


def _traj(tid, group, member, steps, won=False, error=None):
    return Trajectory(traj_id=tid, env_id="toy", task_index=0, task_id="t0", task_type="x", task="do x", seed=1,
                      group_id=group, member=member, steps=steps, won=won, error=error)


def _ctx(logs=None):
    from opid_gym.benchmark import Benchmark

    bench = Benchmark("t", "opid/x", "opid/x", max_steps=3)
    run = RunInfo(benchmark=bench, family="toy", template=toyenv.TOY_PROMPT, action_format="think_action")
    sink = logs if logs is not None else {}
    return StepContext(step=0, run=run, score_messages=lambda m, r=None: None, score_ids=lambda p, r=None: None,
                       log=sink.update)


def test_build_step_batch_layout():
    trajs = [
        _traj("a", "g0", 0, [_step(0, n_tokens=3), _step(1, valid=False), _step(2, reward=10.0, n_tokens=1)], won=True),
        _traj("b", "g0", 1, [_step(0)], error="worker died"),      # left out
        _traj("c", "g1", 0, [_step(0), _step(1)]),
    ]
    b = build_step_batch(trajs, gamma=0.5)
    assert len(b) == 5 and b.mask.shape == (5, 3)
    assert b.mask.sum(1).tolist() == [3, 2, 1, 2, 2]
    assert b.group_index.tolist() == [0, 0, 0, 1, 1]
    assert b.traj_index.tolist() == [0, 0, 0, 1, 1]
    assert b.step_index.tolist() == [0, 1, 2, 0, 1]
    assert b.invalid.tolist() == [False, True, False, False, False]
    assert b.episode_return.tolist() == [10.0, 10.0, 10.0, 0.0, 0.0]
    assert b.returns.tolist() == [2.5, 5.0, 10.0, 0.0, 0.0]      # gamma 0.5
    assert b.won.tolist() == [True, True, True, False, False]
    assert b.traj_length.tolist() == [3, 3, 3, 2, 2]
    assert [t.traj_id for t in b.trajectories] == ["a", "c"]
    assert b.sampler_logp is not None and b.sampler_logp[2].tolist() == [-1.0, 0.0, 0.0]
    assert b.prompt_text[1] == "prompt 1" and b.observation[2] == "obs2"


def test_grpo_advantages_on_a_batch():
    # group g0: a wins (3 steps, one invalid), b loses (1 step); group g1: all lose -> zero
    trajs = [
        _traj("a", "g0", 0, [_step(0), _step(1, valid=False), _step(2, reward=10.0)], won=True),
        _traj("b", "g0", 1, [_step(0)]),
        _traj("c", "g1", 0, [_step(0)]),
        _traj("d", "g1", 1, [_step(0)]),
    ]
    b = build_step_batch(trajs)
    learner = GRPO(LearnerConfig(invalid_penalty=0.1), _ctx().run)
    logs = {}
    adv = learner.advantages(b, _ctx(logs))
    assert adv.shape == b.mask.shape
    # g0 scores 10, 9.9, 10, 0 -> mean 7.475, unbiased std over 4 values
    std = math.sqrt((2 * 2.525**2 + 2.425**2 + 7.475**2) / 3)
    expected = [2.525 / std, 2.425 / std, 2.525 / std, -7.475 / std, 0.0, 0.0]
    assert torch.allclose(adv[:, 0], torch.tensor(expected), atol=1e-4)
    assert torch.equal(adv, adv[:, :1] * b.mask)  # the same value on every valid token, 0 at padding
    assert logs["grpo/zero_adv_frac"] == pytest.approx(2 / 6)


def test_grpo_defaults_follow_the_benchmark_family():
    from opid_gym.benchmark import Benchmark

    from opid_gym.family import family_of

    bench = Benchmark("w", "opid/x", "opid/x", max_steps=3, invalid_penalty=0.01)
    assert GRPO.default_config(bench, family_of("webshop-train")).adv_norm == "mean_norm"
    search = GRPO.default_config(bench, family_of("searchqa-train"))
    assert (search.kl_coef, search.entropy_coef, search.invalid_penalty) == (0.001, 0.0, 0.01)
    alf = GRPO.default_config(bench, family_of("alfworld-train"))
    assert (alf.adv_norm, alf.kl_coef, alf.entropy_coef, alf.clip_eps, alf.dual_clip) == (
        "mean_std_norm", 0.01, 0.001, 0.2, 3.0)


@pytest.fixture(scope="module")
def tiny_policy():
    pytest.importorskip("transformers")
    from agents.hf import HFOptions, HFPolicy

    return HFPolicy.from_pretrained("tiny", HFOptions(device="cpu"))


def test_updates_change_parameters_and_raise_the_rewarded_responses_logprob(tiny_policy, tmp_path):
    """Roll out the tiny model on the toy game, then a few GRPO updates on that batch."""
    from agents.model_agent import ModelAgent
    from opid_gym.backend import SamplingParams
    from opid_gym.benchmark import Benchmark
    from opid_gym.config import OptimConfig
    from opid_gym.history import WindowHistory
    from opid_gym.rollout import make_groups, run_episodes
    from opid_gym.trainer import LocalTrainer
    from opid_gym.workers import InProcessPool

    toyenv.register()
    agent = ModelAgent(tiny_policy, SamplingParams(temperature=1.0, max_new_tokens=6, max_prompt_tokens=256))
    with InProcessPool("letters-train", {"max_steps": 1}) as pool:
        trajs = run_episodes(pool, agent, make_groups([0, 1], 6, seed=3), env_id="letters-train",
                             template=toyenv.TOY_PROMPT, action_format="think_action", history=WindowHistory(1))
    batch = build_step_batch(trajs)
    won = batch.won
    assert won.any() and (~won).any(), "the toy game should give mixed outcomes"
    bench = Benchmark("toy", "opid/letters-eval", "opid/letters-train", max_steps=1)
    run = RunInfo(benchmark=bench, family="toy", template=toyenv.TOY_PROMPT, action_format="think_action")
    learner = GRPO(LearnerConfig(kl_coef=0.0, entropy_coef=0.0), run)
    trainer = LocalTrainer(tiny_policy, OptimConfig(lr=3e-3, weight_decay=0.0, micro_batch_size=5),
                           total_steps=4, keep_ref=False)
    before = {k: v.detach().clone() for k, v in tiny_policy.module.state_dict().items()}
    batch.old_logp = trainer.score(batch.prompt_ids, batch.response_ids)
    # the trainer's scoring agrees with the sampler's own log-probs
    assert torch.allclose(batch.old_logp, batch.sampler_logp, atol=1e-4)
    adv = learner.advantages(batch, _ctx())
    start = (batch.old_logp * batch.mask).sum(1)
    for step in range(3):
        metrics = trainer.update(batch, adv, learner, step=step)
        assert math.isfinite(metrics["grad_norm"]) and metrics["grad_norm"] > 0
    after = (trainer.score(batch.prompt_ids, batch.response_ids) * batch.mask).sum(1)
    changed = [k for k, v in tiny_policy.module.state_dict().items() if not torch.equal(v, before[k])]
    assert changed, "no parameter changed"
    pos, neg = adv[:, 0] > 0, adv[:, 0] < 0
    assert (after[pos] - start[pos]).mean() > 0, "rewarded responses did not become more likely"
    assert (after[neg] - start[neg]).mean() < 0, "unrewarded responses did not become less likely"


def test_the_step_context_scores_the_batch_responses_under_other_prompts(tiny_policy):
    """ctx.score_messages: π_old log-probs of the batch's own response tokens, aligned rows."""
    from agents.model_agent import ModelAgent
    from opid_gym.backend import SamplingParams
    from opid_gym.config import OptimConfig
    from opid_gym.history import WindowHistory
    from opid_gym.rollout import make_groups, run_episodes
    from opid_gym.train import make_step_context
    from opid_gym.trainer import LocalTrainer
    from opid_gym.workers import InProcessPool

    toyenv.register()
    agent = ModelAgent(tiny_policy, SamplingParams(temperature=1.0, max_new_tokens=5, max_prompt_tokens=256))
    with InProcessPool("letters-train", {"max_steps": 1}) as pool:
        trajs = run_episodes(pool, agent, make_groups([2], 3, seed=5), env_id="letters-train",
                             template=toyenv.TOY_PROMPT, action_format="think_action", history=WindowHistory(1))
    batch = build_step_batch(trajs)
    trainer = LocalTrainer(tiny_policy, OptimConfig(micro_batch_size=2), total_steps=1, keep_ref=False)
    logs = {}
    ctx = make_step_context(0, _ctx().run, trainer, batch, 256, logs.update)
    same = ctx.score_messages(batch.messages)                      # the prompts the policy saw
    assert same.shape == batch.mask.shape
    assert torch.allclose(same, batch.sampler_logp, atol=1e-4)     # = the sampler's own log-probs
    hinted = [[{"role": "user", "content": "Hint: use the letter o. " + m[-1]["content"]}] for m in batch.messages]
    other = ctx.score_messages(hinted[1:], rows=[1, 2])            # a subset of rows, in that order
    assert other.shape == (2, batch.mask.shape[1])
    assert torch.equal(other == 0, batch.mask[1:] == 0)            # zero exactly at padding
    assert not torch.allclose(other, same[1:])                     # another prompt, other log-probs
    assert torch.allclose(other, ctx.score_ids([ctx.encode_messages(m) for m in hinted[1:]], [1, 2]))
    strings = ctx.token_strings(batch.response_ids[0])
    assert len(strings) == len(batch.response_ids[0]) and all(isinstance(x, str) for x in strings)
    with pytest.raises(ValueError, match="prompts for"):
        ctx.score_messages(hinted, rows=[0])


def test_the_first_minibatch_ratio_is_one_and_reported_apart(tiny_policy):
    """PPO check (issue 14.6): before any update the ratio is 1 up to numerics; drift between the
    log-probs the batch carries and the trainer's shows in ``ppo/first_ratio_mean``."""
    from agents.model_agent import ModelAgent
    from opid_gym.backend import SamplingParams
    from opid_gym.benchmark import Benchmark
    from opid_gym.config import OptimConfig
    from opid_gym.history import WindowHistory
    from opid_gym.rollout import make_groups, run_episodes
    from opid_gym.trainer import LocalTrainer
    from opid_gym.workers import InProcessPool

    toyenv.register()
    agent = ModelAgent(tiny_policy, SamplingParams(temperature=1.0, max_new_tokens=5, max_prompt_tokens=256))
    with InProcessPool("letters-train", {"max_steps": 1}) as pool:
        trajs = run_episodes(pool, agent, make_groups([0, 1], 4, seed=5), env_id="letters-train",
                             template=toyenv.TOY_PROMPT, action_format="think_action", history=WindowHistory(1))
    batch = build_step_batch(trajs)
    bench = Benchmark("toy", "opid/letters-eval", "opid/letters-train", max_steps=1)
    run = RunInfo(benchmark=bench, family="toy", template=toyenv.TOY_PROMPT, action_format="think_action")
    learner = GRPO(LearnerConfig(kl_coef=0.0, entropy_coef=0.0), run)
    trainer = LocalTrainer(tiny_policy, OptimConfig(lr=1e-2, weight_decay=0.0, micro_batch_size=4, mini_batch_size=3,
                                                    epochs=2), total_steps=1, keep_ref=False)
    snapshot = {k: v.detach().clone() for k, v in tiny_policy.module.state_dict().items()}
    try:
        old = trainer.score(batch.prompt_ids, batch.response_ids)
        adv = torch.ones_like(batch.mask) * batch.mask  # every token pushed up: later ratios move away from 1
        # simulated sampler/trainer drift: old log-probs 0.1 too high → first ratio e^−0.1 = 0.9048374
        batch.old_logp = (old + 0.1) * batch.mask
        drift = trainer.update(batch, adv, learner, step=0)
        assert drift["ppo/first_ratio_mean"] == pytest.approx(0.9048374, abs=1e-4)
        tiny_policy.module.load_state_dict(snapshot)
        batch.old_logp = old
        metrics = trainer.update(batch, adv, learner, step=0)
        assert metrics["optim/steps"] > 1
        assert metrics["ppo/first_ratio_mean"] == pytest.approx(1.0, abs=1e-5)
        assert metrics["ppo/first_clip_frac"] == 0.0
        assert abs(metrics["ppo/rest_ratio_mean"] - 1.0) > 1e-3  # after updates the ratio moved
        n = metrics["optim/steps"]  # the overall mean is the first and the rest, weighted by steps
        assert metrics["ratio_mean"] == pytest.approx(
            (metrics["ppo/first_ratio_mean"] + (n - 1) * metrics["ppo/rest_ratio_mean"]) / n, abs=1e-6)
    finally:
        tiny_policy.module.load_state_dict(snapshot)


def test_micro_batches_take_rows_of_like_length_and_the_update_stays_the_same(tiny_policy):
    """A mini-batch is cut into micro-batches of rows sorted by length (less padding): the
    optimiser step equals the one-forward step of the whole mini-batch."""
    from agents.model_agent import ModelAgent
    from opid_gym.backend import SamplingParams
    from opid_gym.benchmark import Benchmark
    from opid_gym.config import OptimConfig
    from opid_gym.history import WindowHistory
    from opid_gym.rollout import make_groups, run_episodes
    from opid_gym.trainer import LocalTrainer, by_length
    from opid_gym.workers import InProcessPool

    toyenv.register()
    trajs = []
    with InProcessPool("letters-train", {"max_steps": 1}) as pool:
        for k, limit in enumerate((3, 12, 6)):  # responses of three lengths
            agent = ModelAgent(tiny_policy, SamplingParams(temperature=1.0, max_new_tokens=limit, max_prompt_tokens=256))
            trajs += run_episodes(pool, agent, make_groups([k], 2, seed=7, tag=f"g{k}"), env_id="letters-train",
                                  template=toyenv.TOY_PROMPT, action_format="think_action", history=WindowHistory(1))
    batch = build_step_batch(trajs)
    lengths = [len(p) + len(r) for p, r in zip(batch.prompt_ids, batch.response_ids)]
    assert len(set(lengths)) > 2, "the rows should differ in length"
    assert [lengths[i] for i in by_length(batch, range(len(batch)))] == sorted(lengths)
    bench = Benchmark("toy", "opid/letters-eval", "opid/letters-train", max_steps=1)
    run = RunInfo(benchmark=bench, family="toy", template=toyenv.TOY_PROMPT, action_format="think_action")
    learner = GRPO(LearnerConfig(kl_coef=0.0, entropy_coef=0.0), run)
    snapshot = {k: v.detach().clone() for k, v in tiny_policy.module.state_dict().items()}
    adv = torch.linspace(-1.0, 1.0, len(batch))[:, None] * batch.mask
    calls: list[list[int]] = []
    forward = tiny_policy.forward_logprobs

    def recording(prompts, responses, **kw):  # what each micro-batch holds, then the real forward
        calls.append([len(p) + len(r) for p, r in zip(prompts, responses)])
        return forward(prompts, responses, **kw)

    after = {}
    try:
        for micro in (len(batch), 2):
            tiny_policy.module.load_state_dict(snapshot)
            trainer = LocalTrainer(tiny_policy, OptimConfig(lr=1e-2, weight_decay=0.0, micro_batch_size=micro,
                                                            mini_batch_size=len(batch)), total_steps=1, keep_ref=False)
            batch.old_logp = trainer.score(batch.prompt_ids, batch.response_ids)
            calls.clear()
            tiny_policy.forward_logprobs = recording
            trainer.update(batch, adv, learner, step=0)
            del tiny_policy.forward_logprobs
            # the step's gradient, as AdamW's first moment holds it after one step: (1 - β1)·g
            after[micro] = [trainer.optimizer.state[p]["exp_avg"].clone() for p in trainer.params]
            if micro == 2:
                assert all(len(c) <= 2 for c in calls) and len(calls) == math.ceil(len(batch) / 2)
                assert [n for c in calls for n in c] == sorted(lengths)  # like lengths share a micro-batch
    finally:
        tiny_policy.__dict__.pop("forward_logprobs", None)
        tiny_policy.module.load_state_dict(snapshot)
    assert any(g.abs().sum() > 0 for g in after[2])
    for sorted_micro, whole in zip(after[2], after[len(batch)]):
        assert torch.allclose(sorted_micro, whole, rtol=1e-4, atol=1e-8)
