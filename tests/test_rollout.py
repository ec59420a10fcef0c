"""Group stepping: seeds shared inside groups, worker crashes and hangs survived.

The multi-worker tests run against both worker pools: local processes (``ProcessPool``)
and Ray actors (``RayPool``, on a local Ray instance started once for this module).
"""

from __future__ import annotations

import os
import signal
from typing import Sequence

import pytest

import opid_gym
from opid_gym.agent import AgentReply, AgentRequest
from opid_gym.history import WindowHistory
from opid_gym.rollout import EpisodeSpec, RolloutStats, make_groups, run_episodes
from opid_gym.workers import EnvError, InProcessPool, ProcessPool
from tests.support.envs import PROMPT

ENV_ID = "opid-test/counting-v0"
if f"{ENV_ID}" not in opid_gym.env_ids():
    opid_gym.register_env(ENV_ID, "tests.support.envs:CountingEnv", kwargs={"tasks": 4})


@pytest.fixture(scope="module")
def _ray(tmp_path_factory):
    ray = pytest.importorskip("ray", reason="the Ray pool needs pip install 'opid-gym[ray]'")
    ray.init(num_cpus=2, _temp_dir=str(tmp_path_factory.mktemp("ray")), include_dashboard=False,
             log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(params=["process", "ray"])
def workers(request):
    """The multi-worker pool under test, as a factory ``workers(env_id, **options)``."""
    if request.param == "ray":
        request.getfixturevalue("_ray")
        from opid_gym.ray_pool import RayPool

        def make(env_id, **kw):
            return RayPool(env_id, num_cpus=0.5, **kw)
    else:
        def make(env_id, **kw):
            return ProcessPool(env_id, **kw)
    make.kind = request.param
    return make


class ScriptAgent:
    """Says "up" (or what ``plan`` says for a step), recording every request it saw."""

    name = "script"
    needs_expert = False

    def __init__(self, plan: dict[int, str] | None = None, on_step=None) -> None:
        self.plan = plan or {}
        self.on_step = on_step
        self.requests: list[AgentRequest] = []

    def act(self, requests: Sequence[AgentRequest]) -> list[AgentReply]:
        self.requests.extend(requests)
        if self.on_step is not None:
            self.on_step(requests)
        return [AgentReply(f"<think>t</think><action>{self.plan.get(r.step, 'up')}</action>") for r in requests]


def _run(pool, agent, specs, **kw):
    return run_episodes(pool, agent, specs, env_id=ENV_ID, template=PROMPT, action_format="think_action_lower",
                        history=WindowHistory(2), **kw)


def test_groups_share_task_and_seed_and_members_get_distinct_agent_seeds() -> None:
    specs = make_groups([0, 3], group_size=3, seed=11)
    assert [s.task_index for s in specs] == [0, 0, 0, 3, 3, 3]
    assert len({s.seed for s in specs[:3]}) == 1 and specs[0].seed != specs[3].seed
    agent = ScriptAgent()
    with InProcessPool(ENV_ID) as pool:
        trajs = _run(pool, agent, specs)
    first_obs = [t.steps[0].observation for t in trajs]
    assert len(set(first_obs[:3])) == 1 and len(set(first_obs[3:])) == 1
    assert first_obs[0] != first_obs[3]
    step0_seeds = [r.seed for r in agent.requests if r.step == 0]
    assert len(set(step0_seeds)) == 6  # members sample differently from the same state
    assert all(t.won and t.terminated and not t.truncated for t in trajs)
    assert [t.length for t in trajs] == [2, 2, 2, 5, 5, 5]


def test_step_limit_is_truncation_in_the_trajectory() -> None:
    agent = ScriptAgent(plan={i: "down" for i in range(20)})
    with InProcessPool(ENV_ID, {"max_steps": 3}) as pool:
        (traj,) = _run(pool, agent, [EpisodeSpec(0, 1, "g")])
    assert traj.truncated and not traj.terminated and not traj.won and traj.length == 3


def test_results_do_not_depend_on_concurrency_or_workers(workers) -> None:
    specs = make_groups([0, 1, 2, 3], group_size=2, seed=5)
    with InProcessPool(ENV_ID) as pool:
        a = _run(pool, ScriptAgent(), specs, max_concurrent=1)
    with workers(ENV_ID, workers=2) as pool:
        b = _run(pool, ScriptAgent(), specs)
    assert [t.to_dict() for t in a] == [t.to_dict() for t in b]


def test_worker_killed_mid_episode_is_restarted_and_only_its_episodes_fail(workers) -> None:
    specs = [EpisodeSpec(2, 100 + i, f"g{i}") for i in range(4)] + [EpisodeSpec(1, 7, "late")]
    with workers(ENV_ID, workers=2) as pool:
        killed: list[int] = []

        def kill_worker0(requests: Sequence[AgentRequest]) -> None:
            if not killed and requests[0].step == 1:
                pid = pool.worker_pid(0)
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

        stats = RolloutStats()
        # sequential stepping: the kill lands between two known steps (overlapped: see
        # test_rollout_overlap.py::test_worker_killed_during_an_overlapped_rollout)
        trajs = _run(pool, ScriptAgent(on_step=kill_worker0), specs, max_concurrent=4, stats=stats, overlap=False)
        assert pool.restarts == 1 and pool.worker_pid(0) != killed[0]
    by_group = {t.group_id: t for t in trajs}
    # slots 0 and 2 lived in worker 0: their episodes failed by error, with the reason
    for g in ("g0", "g2"):
        assert by_group[g].error and "worker process died" in by_group[g].error and not by_group[g].won
        assert by_group[g].length == 1  # the step before the kill is kept
    for g in ("g1", "g3"):
        assert by_group[g].error is None and by_group[g].won and by_group[g].length == 4
    # the episode started after the crash ran on the restarted worker
    assert by_group["late"].error is None and by_group["late"].won
    assert stats.errors == 2 and len(trajs) == 5


def test_hung_worker_times_out_and_is_restarted(workers) -> None:
    with workers(ENV_ID, workers=1, timeout=3) as pool:
        pool.reset([(0, 1, {"task_index": 0}), (1, 1, {"task_index": 0})])
        res = pool.step([(0, "hang"), (1, "up")])
        assert all(isinstance(r, EnvError) and "did not answer" in r.message for r in res)
        assert pool.restarts == 1
        (again,) = pool.reset([(0, 1, {"task_index": 0})])
        assert not isinstance(again, EnvError)


def test_env_exception_is_an_error_result_not_a_crash() -> None:
    with InProcessPool(ENV_ID) as pool:
        (res,) = pool.reset([(0, 1, {"task_index": 99})])
        assert isinstance(res, EnvError) and "out of range" in res.message
        pool.reset([(0, 1, {"task_index": 0})])
        (res,) = pool.step([(0, "up")])
        assert not isinstance(res, EnvError)


def test_crashing_environment_process_is_reported_with_its_exit_code(workers) -> None:
    with workers(ENV_ID, workers=2) as pool:
        pool.reset([(0, 1, {"task_index": 0}), (1, 1, {"task_index": 0})])
        res = pool.step([(0, "crash"), (1, "up")])
        assert isinstance(res[0], EnvError) and "worker process died" in res[0].message
        # Ray does not report a dead actor's exit code; local processes do
        assert ("exit code 3" if workers.kind == "process" else "exit code unknown") in res[0].message
        assert not isinstance(res[1], EnvError)
        (again,) = pool.reset([(0, 1, {"task_index": 0})])  # the slot works again on the new worker
        assert not isinstance(again, EnvError) and pool.restarts == 1
