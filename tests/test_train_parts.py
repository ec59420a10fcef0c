"""Pieces of the loop: data order, mini-batch order, learning-rate schedule, rollout metrics."""

from __future__ import annotations

import math

import pytest
import torch

from opid_gym.config import OptimConfig
from opid_gym.rollout import RolloutStats
from opid_gym.train import TaskSampler, rollout_metrics
from opid_gym.trainer import adamw, clip_and_step, fused_adamw_ok, lr_at, minibatch_rows, ppo_epochs
from opid_gym.types import Step, Trajectory


def test_task_sampler_deals_every_task_once_per_epoch_and_is_a_function_of_seed_and_step():
    s = TaskSampler(num_tasks=5, per_step=2, seed=3)
    first_epoch = s.tasks(0) + s.tasks(1) + s.tasks(2)[:1]          # positions 0..4
    assert sorted(first_epoch) == [0, 1, 2, 3, 4]
    assert TaskSampler(5, 2, 3).tasks(7) == s.tasks(7)                # no hidden state
    assert any(TaskSampler(5, 2, 4).tasks(k) != s.tasks(k) for k in range(5))
    assert len(TaskSampler(num_tasks=1, per_step=3, seed=0).tasks(0)) == 3   # B > tasks: repeats


def test_minibatches_cover_the_batch_once_in_a_seeded_order():
    parts = minibatch_rows(10, 4, seed=1, step=2, epoch=0)
    assert [len(p) for p in parts] == [4, 3, 3]                       # ceil(10/4) nearly equal parts
    assert sorted(torch.cat(parts).tolist()) == list(range(10))
    again = minibatch_rows(10, 4, seed=1, step=2, epoch=0)
    assert all(torch.equal(a, b) for a, b in zip(parts, again))
    assert minibatch_rows(0, 4, 1, 0, 0) == []


def test_learning_rate_warms_up_linearly_then_stays():
    cfg = OptimConfig(lr=1e-6, warmup_ratio=0.1)
    assert [lr_at(s, 150, cfg) for s in (0, 7, 14, 15, 149)] == pytest.approx(
        [1e-6 / 15, 8e-6 / 15, 1e-6, 1e-6, 1e-6])
    assert lr_at(0, 150, OptimConfig(lr=1e-6)) == 1e-6


def test_rollout_metrics():
    def step(valid):
        return Step(index=0, observation="", prompt=[], response="", action="", valid=valid, next_observation="",
                    reward=0.0, terminated=False, truncated=False)

    def traj(won, steps, error=None):
        return Trajectory(traj_id="t", env_id="e", task_index=0, task_id="", task_type="", task="", seed=0,
                          group_id="g", member=0, steps=steps, won=won, error=error)

    trajs = [traj(True, [step(True), step(False)]), traj(False, [step(True)] * 4), traj(True, [], error="died")]
    m = rollout_metrics(trajs, RolloutStats(env_steps=6, generated_tokens=60))
    assert m["rollout/success_rate"] == pytest.approx(1 / 3)          # an errored episode is no success
    assert m["rollout/episode_length"] == pytest.approx(6 / 3)
    assert m["rollout/invalid_rate"] == pytest.approx(1 / 6)
    assert (m["rollout/env_steps"], m["rollout/tokens_generated"], m["rollout/errors"]) == (6.0, 60.0, 1.0)


def test_trainers_take_the_fused_adamw_where_it_applies_and_it_updates_as_the_plain_one():
    torch.manual_seed(0)
    cfg = OptimConfig(lr=1e-2, weight_decay=0.1)
    start = [torch.randn(7, 5), torch.randn(5)]
    fused = [torch.nn.Parameter(t.clone()) for t in start]
    plain = [torch.nn.Parameter(t.clone()) for t in start]
    opt = adamw(fused, cfg)
    assert opt.defaults["fused"] is True
    ref = torch.optim.AdamW(plain, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps,
                            weight_decay=cfg.weight_decay, foreach=False)
    for _ in range(5):
        grads = [torch.randn_like(t) for t in start]
        for ps, o in ((fused, opt), (plain, ref)):
            for p, g in zip(ps, grads):
                p.grad = g.clone()
            o.step()
    for a, b, s in zip(fused, plain, start):
        assert not torch.equal(a.detach(), s)  # it moved
        assert torch.allclose(a.detach(), b.detach(), atol=1e-6, rtol=1e-5)
    # integer tensors, no parameters or several devices: the default implementation
    assert not fused_adamw_ok([])
    assert not fused_adamw_ok([torch.zeros(2, dtype=torch.int64)])
    assert adamw([torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))], cfg).defaults["fused"] is True
    meta = [torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(3, device="meta"))]
    assert not fused_adamw_ok(meta)
    assert adamw(meta, cfg).defaults["fused"] is None


def test_clip_and_step_clips_to_the_norm_and_skips_non_finite_gradients():
    p = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([p], lr=1.0)
    p.grad = torch.tensor([3.0, 4.0])                 # norm 5, clipped to 1
    assert clip_and_step([p], opt, grad_clip=1.0) == pytest.approx(5.0)
    assert torch.allclose(p.detach(), torch.tensor([-0.6, -0.8]), atol=1e-5) and p.grad is None
    p.grad = torch.tensor([3.0, 4.0])                 # grad_clip 0: no clipping
    assert clip_and_step([p], opt, grad_clip=0.0) == pytest.approx(5.0)
    assert torch.allclose(p.detach(), torch.tensor([-3.6, -4.8]), atol=1e-5)
    p.grad = torch.tensor([float("nan"), 1.0])         # not finite: the step is skipped
    assert not math.isfinite(clip_and_step([p], opt, grad_clip=1.0))
    assert torch.allclose(p.detach(), torch.tensor([-3.6, -4.8]), atol=1e-5) and p.grad is None


def test_ppo_epochs_reports_the_first_minibatch_apart_from_the_rest():
    calls = []

    def minibatch(rows):  # the k-th optimiser step reports ratio 1 + k/10 and clip fraction k/10
        k = len(calls)
        calls.append(rows)
        return {"ratio_mean": 1.0 + k / 10, "clip_frac": k / 10, "grad_norm": 1.0}

    batch = type("B", (), {"old_logp": torch.zeros(5, 1), "__len__": lambda self: 5})()
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    cfg = OptimConfig(epochs=2, mini_batch_size=2)  # 3 mini-batches × 2 epochs = 6 steps
    out = ppo_epochs(cfg, opt, batch, step=0, total_steps=1, seed=0, minibatch=minibatch)
    assert len(calls) == 6 and out["optim/steps"] == 6.0
    # first: 1.0 / 0.0; rest: ratios 1.1 … 1.5 → mean 1.3, clip 0.1 … 0.5 → 0.3; all: 1.25 / 0.25
    assert out["ppo/first_ratio_mean"] == 1.0 and out["ppo/first_clip_frac"] == 0.0
    assert out["ppo/rest_ratio_mean"] == pytest.approx(1.3) and out["ppo/rest_clip_frac"] == pytest.approx(0.3)
    assert out["ratio_mean"] == pytest.approx(1.25) and out["clip_frac"] == pytest.approx(0.25)
    calls.clear()
    single = ppo_epochs(OptimConfig(), opt, batch, step=0, total_steps=1, seed=0, minibatch=minibatch)
    assert single["ppo/first_ratio_mean"] == 1.0 and "ppo/rest_ratio_mean" not in single  # one step: no rest


def _group(gid, rewards):
    return [Trajectory(traj_id=f"{gid}-{m}", env_id="toy", task_index=0, task_id="t", task_type="x", task="t",
                       seed=0, group_id=gid, member=m,
                       steps=[Step(index=0, observation="", prompt=[], response="", action="", valid=True,
                                   next_observation="", reward=r, terminated=True, truncated=False)])
            for m, r in enumerate(rewards)]


def test_dynamic_sampling_keeps_groups_with_reward_variance_and_refills():
    from opid_gym.train import select_groups

    first = _group("a", [1.0, 1.0, 1.0]) + _group("b", [0.0, 10.0, 0.0]) + _group("c", [0.0, 0.0, 0.0])
    kept, dropped = select_groups([], first, 3, last=False)
    # a (all 1) and c (all 0) have zero variance: only b is kept
    assert [g[0].group_id for g in kept] == ["b"] and dropped == 2
    second = _group("d", [10.0, 0.0, 0.0]) + _group("e", [5.0, 5.0, 5.0]) + _group("f", [0.0, 1.0, 0.0])
    kept, dropped = select_groups(kept, second, 3, last=False)
    assert [g[0].group_id for g in kept] == ["b", "d", "f"] and dropped == 1  # e dropped; full at 3 groups
    third = _group("g", [2.0, 2.0, 2.0]) + _group("h", [0.0, 1.0, 0.0])
    kept, dropped = select_groups([kept[0]], third, 3, last=True)  # the last try keeps every group
    assert [g[0].group_id for g in kept] == ["b", "g", "h"] and dropped == 0
    assert select_groups(kept, third, 3, last=False) == (kept, 0)  # already full: nothing added
