"""Overlapped rollouts and prefetched resets give exactly the sequential path's trajectories."""

from __future__ import annotations

from typing import Any, Sequence

import pytest

import opid_gym
from opid_gym.agent import make_agent
from opid_gym.history import WindowHistory
from opid_gym.rollout import ResetPrefetch, RolloutStats, make_groups, run_episodes
from opid_gym.workers import InProcessPool, ProcessPool
from tests.support.envs import PROMPT

ENV_ID = "opid-test/counting-v0"
if ENV_ID not in opid_gym.env_ids():
    opid_gym.register_env(ENV_ID, "tests.support.envs:CountingEnv", kwargs={"tasks": 4})


class CountingPool:
    """A pool that passes every call through and counts them (the pool is not under test)."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.resets: list[list[tuple]] = []
        self.steps = 0

    def reset(self, items: Sequence[tuple]) -> list[Any]:
        self.resets.append(list(items))
        return self.pool.reset(items)

    def step(self, items: Sequence[tuple]) -> list[Any]:
        self.steps += 1
        return self.pool.step(items)

    def close(self) -> None:
        self.pool.close()

    def __getattr__(self, name: str) -> Any:  # what else the rollout asks (``in_process``)
        return getattr(self.pool, name)


def _run(pool, specs, **kw):
    # the random agent samples from each request's own seed: episodes differ and end at
    # different steps (wins, step limits), so waves split and refill unevenly
    return run_episodes(pool, make_agent("random"), specs, env_id=ENV_ID, template=PROMPT,
                        action_format="think_action_lower", history=WindowHistory(2), **kw)


def _dicts(trajs):
    return [t.to_dict() for t in trajs]


@pytest.mark.parametrize("max_concurrent", [None, 3])
def test_overlapped_rollout_is_bit_identical_to_the_sequential_one(max_concurrent) -> None:
    specs = make_groups([0, 1, 2, 3, 1], group_size=2, seed=11)
    with ProcessPool(ENV_ID, {"max_steps": 6}, workers=2) as raw:
        pool = CountingPool(raw)
        sequential = _run(pool, specs, max_concurrent=max_concurrent, overlap=False)
        seq_steps = pool.steps
        stats = RolloutStats()
        overlapped = _run(pool, specs, max_concurrent=max_concurrent, overlap=True, stats=stats)
    assert _dicts(overlapped) == _dicts(sequential)
    assert len({len(t.steps) for t in sequential}) > 1 and any(t.won for t in sequential)
    assert pool.steps > 2 * seq_steps - 2  # the overlapped run really stepped in two waves
    assert stats.env_steps == sum(len(t.steps) for t in sequential)


def test_overlap_defaults_on_for_worker_pools_and_off_in_process() -> None:
    specs = make_groups([0, 2], group_size=2, seed=3)
    with InProcessPool(ENV_ID) as raw:
        pool = CountingPool(raw)
        a = _run(pool, specs)
        assert pool.steps == max(len(t.steps) for t in a)  # one step call per turn: no waves
        b = _run(pool, specs, overlap=True)
    assert _dicts(a) == _dicts(b)


def test_prefetched_resets_are_used_and_change_nothing() -> None:
    specs = make_groups([3, 0, 1], group_size=2, seed=5)
    with ProcessPool(ENV_ID, workers=2) as raw:
        pool = CountingPool(raw)
        plain = _run(pool, specs, max_concurrent=4)
        pool.resets.clear()
        prefetch = ResetPrefetch(pool, specs, max_concurrent=4)
        used = _run(pool, specs, max_concurrent=4, prefetched=prefetch)
        # the first 4 resets came from the prefetch; the rollout reset only the other 2
        assert pool.resets[0] == [(i, specs[i].seed, {"task_index": specs[i].task_index}) for i in range(4)]
        assert sum(len(r) for r in pool.resets) == len(specs)
        assert _dicts(used) == _dicts(plain)
        # a prefetch of other episodes is not used: the rollout resets its own
        pool.resets.clear()
        other = ResetPrefetch(pool, make_groups([2], group_size=2, seed=99), max_concurrent=4)
        again = _run(pool, specs, max_concurrent=4, prefetched=other)
        assert sum(len(r) for r in pool.resets) == 2 + len(specs)
        assert _dicts(again) == _dicts(plain)


def test_worker_killed_during_an_overlapped_rollout() -> None:
    """Only the killed worker's episodes fail; the rest, and later episodes, finish."""
    import os
    import signal

    from opid_gym.agent import AgentReply
    from opid_gym.rollout import EpisodeSpec

    specs = [EpisodeSpec(2, 100 + i, f"g{i}") for i in range(4)] + [EpisodeSpec(1, 7, "late")]
    with ProcessPool(ENV_ID, workers=2) as pool:
        killed: list[int] = []

        class Up:
            name, needs_expert = "up", False

            def act(self, requests):
                if not killed and any(r.step == 1 for r in requests):
                    killed.append(pool.worker_pid(0))
                    os.kill(killed[0], signal.SIGKILL)
                return [AgentReply("<think>t</think><action>up</action>") for _ in requests]

        stats = RolloutStats()
        trajs = run_episodes(pool, Up(), specs, env_id=ENV_ID, template=PROMPT, action_format="think_action_lower",
                             history=WindowHistory(2), max_concurrent=4, stats=stats, overlap=True)
        assert pool.restarts == 1
    by_group = {t.group_id: t for t in trajs}
    for g in ("g0", "g2"):  # slots 0 and 2 lived in worker 0: one wave was in the killed
        # worker's message ("died"), the other is stepped later on the restarted worker ("lost")
        assert by_group[g].error and ("worker process died" in by_group[g].error
                                      or "lost: its worker process died" in by_group[g].error)
    for g in ("g1", "g3", "late"):
        assert by_group[g].error is None and by_group[g].won
    assert stats.errors == 2 and len(trajs) == 5


@pytest.mark.slow
def test_overlap_with_the_tiny_model_gives_the_same_tokens(tmp_path) -> None:
    pytest.importorskip("transformers")
    agent = make_agent("hf:tiny", max_new_tokens=8, cache_dir=str(tmp_path), device="cpu")
    specs = make_groups([0, 1, 2], group_size=2, seed=7)

    def run(overlap: bool):
        with ProcessPool(ENV_ID, {"max_steps": 3}, workers=2) as pool:
            return run_episodes(pool, agent, specs, env_id=ENV_ID, template=PROMPT,
                                action_format="think_action_lower", history=WindowHistory(2), overlap=overlap)

    seq, ovl = run(False), run(True)
    key = lambda ts: [[(s.response_token_ids, s.action, s.next_observation) for s in t.steps] for t in ts]  # noqa: E731
    assert key(ovl) == key(seq)
    for a, b in zip(ovl, seq):
        for sa, sb in zip(a.steps, b.steps):
            assert sa.response_logprobs == pytest.approx(sb.response_logprobs, abs=1e-5)


@pytest.mark.slow
def test_training_with_worker_pool_overlap_and_prefetch_matches_in_process(tmp_path, monkeypatch) -> None:
    """Two toy GRPO steps: in-process (sequential) vs 2 workers (overlapped rollouts, the
    second step's resets prefetched during the first update) give the same run."""
    import json

    pytest.importorskip("transformers")
    from opid_gym.cli import main
    from tests.support import letters as toyenv

    toyenv.register()
    monkeypatch.setenv("OPID_GYM_RESULTS", str(tmp_path / "results.sqlite"))
    args = ["--learner", "grpo", "--env", "letters", "--preset", "smoke", "--set", "rollout.max_new_tokens=8",
            "--set", "rollout.group_size=3", "--set", "optim.lr=1e-3", "--set", "eval.final=false",
            "--no-progress"]
    runs = {}
    for workers in (0, 2):
        out = tmp_path / f"w{workers}"
        assert main(["run", *args, "--set", f"env.workers={workers}", "--out", str(out)]) == 0
        metrics = [{k: v for k, v in json.loads(line).items() if not k.startswith("time")}
                   for line in (out / "metrics.jsonl").read_text().splitlines()]
        rollouts = [json.loads(line) for line in (out / "rollouts" / "step_000002.jsonl").read_text().splitlines()]
        steps = [[(s["response"], s["action"], s["next_observation"]) for s in t["steps"]] for t in rollouts]
        runs[workers] = (metrics, steps)
    assert len(runs[0][0]) == 2
    assert runs[2] == runs[0]


def test_auto_pool_steps_cheap_environments_in_process() -> None:
    from opid_gym.workers import make_pool, probe_step_seconds

    seconds = probe_step_seconds(ENV_ID)
    assert 0 < seconds < float("inf")
    # the probe's time against the threshold decides; the thresholds here make it certain
    with make_pool(ENV_ID, workers=2, kind="auto", auto_threshold=10.0) as pool:
        assert isinstance(pool, InProcessPool)
    with make_pool(ENV_ID, workers=2, kind="auto", auto_threshold=0.0) as pool:
        assert isinstance(pool, ProcessPool) and pool.num_workers == 2
    # an environment that cannot be probed is treated as expensive
    assert probe_step_seconds(ENV_ID, {"tasks": 0}) == float("inf")
