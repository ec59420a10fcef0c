"""The keypad toy (environments/toy), the expert plumbing the oracle analyzer reads, and a
learning check: GRPO makes the tiny model read the prompt (slow)."""

from __future__ import annotations

import pytest

import opid_gym
from environments.toy.env import ITEMS, KEYPAD_PROMPT, KeypadEnv, opened
from opid_gym.registry import make


def test_the_keypad_reads_the_first_letter():
    assert [opened(w) for w in ITEMS] == list(ITEMS)
    assert opened("  <think>x</think>") == "towel"          # the first letter counts, tags included
    assert opened("Apple pie") == "book" and opened("GRAPE") == "lamp" and opened("sun") == "plate"
    assert opened("318 !?") is None


def test_a_fixed_string_wins_a_quarter_and_the_expert_wins_everything():
    env = KeypadEnv("eval", max_steps=1)
    assert env.num_tasks == 120 and len(set(env.task_ids())) == 120
    assert not set(env.task_ids()) & set(KeypadEnv("train").task_ids())   # disjoint splits
    for fixed in ("plate", "lamp for sure", "xylophone"):
        wins = 0
        for i in range(env.num_tasks):
            env.reset(seed=i, options={"task_index": i})
            wins += env.step(fixed)[4]["won"]
        assert wins == 30, fixed                             # each item is asked for by 30 of the 120 tasks
    wins, types = 0, set()
    for i in range(env.num_tasks):
        obs, info = env.reset(seed=i, options={"task_index": i})
        assert info["expert_plan"] == [env.expert_action()] and info["admissible_actions"] == list(ITEMS)
        assert f"You need the {info['task_type']}" in obs and info["task"].startswith(info["task_type"])
        types.add(info["task_type"])
        _, reward, terminated, truncated, info = env.step(env.expert_action())
        wins += info["won"]
        assert reward == 10.0 and terminated and not truncated
    assert wins == 120 and types == set(ITEMS)
    env.reset(seed=0, options={"task_index": 1})
    obs, reward, terminated, truncated, info = env.step("book")   # task 1 asks for the lamp
    assert (reward, terminated, truncated, info["won"]) == (0.0, False, True, False)
    assert obs == "The book cupboard opens, but you need the lamp."


def test_the_keypad_is_a_registered_benchmark_that_passes_the_checks():
    from opid_gym.checker import check_env

    bench = opid_gym.BENCHMARKS.get("keypad")
    assert (bench.env_id, bench.train_env_id, bench.max_steps) == ("opid/keypad-eval", "opid/keypad-train", 1)
    assert make(bench.env_id).unwrapped.num_tasks >= 100
    results = check_env(bench.train_env_id)
    assert all(r.ok for r in results), [r for r in results if not r.ok]


class Babbler:
    """Always the same unreadable text (the fallback acts: 'zz' opens the towel cupboard)."""

    name, needs_expert = "babbler", False

    def act(self, requests):
        from opid_gym.agent import AgentReply

        return [AgentReply("zz") for _ in requests]


@pytest.mark.parametrize("with_expert", [True, False])
def test_rollouts_record_the_experts_action_only_when_asked(with_expert):
    from opid_gym.history import WindowHistory
    from opid_gym.rollout import make_groups, run_episodes
    from opid_gym.workers import InProcessPool

    with InProcessPool("opid/keypad-train", {"max_steps": 2}, with_expert=with_expert) as pool:
        trajs = run_episodes(pool, Babbler(), make_groups([0, 1, 3], 1, seed=0), env_id="opid/keypad-train",
                             template=KEYPAD_PROMPT, action_format="think_action", history=WindowHistory(1))
    for t in trajs:
        expected = t.task_type if with_expert else None      # the expert types the asked-for item
        assert [s.expert_action for s in t.steps] == [expected] * t.length
        assert t.won == (t.task_type == "towel")


def test_opid_asks_for_the_expert_only_with_the_oracle_analyzer():
    from learners.opid import OPID, OPIDConfig
    from opid_gym.learner import RunInfo

    run = RunInfo(benchmark=opid_gym.BENCHMARKS.get("keypad"), family="toy", template=KEYPAD_PROMPT,
                  action_format="think_action")
    assert OPID(OPIDConfig(analyzer="oracle"), run).needs_expert
    assert not OPID(OPIDConfig(), run).needs_expert


@pytest.mark.slow
def test_grpo_teaches_the_tiny_model_to_read_the_prompt(tmp_path):
    """Deterministic (seed 0): eval success rises far outside its 95% interval (~1.5 min on a CPU)."""
    pytest.importorskip("transformers")
    from benchmarks.learning import train_once
    from benchmarks.stats import newcombe_diff_interval

    o = train_once("grpo", 0, tmp_path / "run", steps=30)
    gain = newcombe_diff_interval(o.before, o.n, o.after, o.n)
    assert o.n == 120 and o.before / o.n < 0.3          # untrained: about chance (a quarter) or below
    assert gain.low > 0.15, gain                         # the whole 95% interval of the gain is above 15 points
