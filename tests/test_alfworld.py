"""ALFWorld on the real games in the data root."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import opid_gym
from environments.alfworld.games import list_games
from opid_gym.agent import make_agent
from opid_gym.checker import check_env
from opid_gym.data import DataNotFoundError
from opid_gym.evaluate import evaluate

ROOT = Path(__file__).resolve().parents[1]


def test_split_sizes_and_task_type_counts(alfworld_data: Path) -> None:
    unseen = list_games("valid_unseen", alfworld_data)
    seen = list_games("valid_seen", alfworld_data)
    assert len(unseen) == 134 and len(seen) == 140
    counts = Counter(g.task_type for g in unseen)
    assert [counts[t] for t in ("pick", "clean", "heat", "cool", "look", "pick2")] == [24, 31, 23, 21, 18, 17]
    train = list_games("train", alfworld_data)  # no traj_data.json: type from the folder name
    assert Counter(g.task_type for g in train) == {t: 5 for t in ("pick", "clean", "heat", "cool", "look", "pick2")}
    assert [g.task_id for g in unseen] == sorted(g.task_id for g in unseen)


def test_joined_splits_list_each_split_in_order_and_the_demo_trains_on_them(alfworld_data: Path) -> None:
    train, valid_train = list_games("train", alfworld_data), list_games("valid_train", alfworld_data)
    joined = list_games("train+valid_train", alfworld_data)
    assert [g.task_id for g in joined] == [g.task_id for g in train + valid_train]
    bench = opid_gym.BENCHMARKS.get("alfworld-unseen-short")
    assert bench.train_env_id == "opid/alfworld-train-all"
    env = opid_gym.make(bench.train_env_id, data_root=str(alfworld_data), **bench.train_env_kwargs)
    try:  # the demo's warm start: the training scenes' games whose plan fits the step limit, no eval split
        games = env.unwrapped.games
        assert [g.task_id for g in games] == [g.task_id for g in joined if g.plan_length <= bench.max_steps]
        assert len(games) > sum(g.plan_length <= bench.max_steps for g in train)
        assert {g.task_id.split("/")[0] for g in games} == {"train", "valid_train"}
    finally:
        env.close()
    for bad in ("train+train", "train+nosuch"):
        with pytest.raises(ValueError, match="split"):
            list_games(bad, alfworld_data)


def test_missing_data_root_names_the_download_and_the_setting(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as err:
        opid_gym.make("alfworld-unseen", data_root=str(tmp_path / "nowhere"))
    msg = str(err.value)
    assert "opid-bench data download alfworld" in msg and "OPID_GYM_DATA" in msg and "--data-root" in msg


def test_cli_missing_data_is_one_clear_line(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "opid_gym", "--data-root", str(tmp_path), "eval", "--agent", "random",
         "--env", "alfworld-unseen", "--episodes", "1", "--no-progress"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert out.returncode == 2
    assert out.stderr.startswith("opid-bench: error: ALFWorld (valid_unseen) data not found")
    assert "Traceback" not in out.stderr


def test_env_exposes_task_metadata_and_rewards_the_winning_step(alfworld_data: Path) -> None:
    env = opid_gym.make("alfworld-unseen", data_root=str(alfworld_data))
    obs, info = env.reset(seed=0, options={"task_index": 0})
    # the engine's first feedback as the reference passes it: banner kept, task at the end
    assert obs.startswith("-= Welcome to TextWorld, ALFRED! =-\n\nYou are in the middle of a room.")
    assert obs.endswith("\n\nYour task is to: examine the alarmclock with the desklamp.")
    assert info["task"] == "examine the alarmclock with the desklamp."
    assert info["task_type"] == "look" and info["task_id"].startswith("valid_unseen/look_at_obj_in_light")
    assert "help" not in info["admissible_actions"] and "go to desk 1" in info["admissible_actions"]
    plan = info["expert_plan"]
    rewards = []
    for i, action in enumerate(plan):
        assert env.unwrapped.expert_action() == action
        obs, reward, terminated, truncated, info = env.step(action)
        rewards.append(reward)
    assert terminated and not truncated and info["won"]
    assert rewards == [0.0] * (len(plan) - 1) + [10.0]
    env.close()


def test_expert_leaving_the_plan_returns_none(alfworld_data: Path) -> None:
    env = opid_gym.make("alfworld-unseen", data_root=str(alfworld_data)).unwrapped
    env.reset(seed=0, options={"task_index": 0})
    env.step("look")
    assert env.expert_action() is None
    env.close()


def test_check_env_passes(alfworld_data: Path) -> None:
    results = check_env("alfworld-unseen", data_root=str(alfworld_data))
    assert all(r.ok for r in results), [(r.name, r.detail) for r in results if not r.ok]


def test_expert_beats_random_on_a_fixed_subset(alfworld_data: Path) -> None:
    bench = opid_gym.BENCHMARKS.get("alfworld-unseen")
    kwargs = {"data_root": str(alfworld_data)}
    expert, trajs = evaluate(bench, make_agent("expert"), env_kwargs=kwargs, limit=6, workers=2)
    assert expert.success_rate == 1.0 and expert.episodes == 6 and expert.errors == 0
    assert sum(s["episodes"] for s in expert.per_type.values()) == 6
    assert all(t.steps[-1].reward == 10.0 for t in trajs)
    random, rtrajs = evaluate(bench.with_overrides(max_steps=8), make_agent("random"), env_kwargs=kwargs,
                              limit=6, workers=0)
    assert random.success_rate < expert.success_rate
    assert all(t.truncated and not t.terminated for t in rtrajs if not t.won)


def test_cli_eval_writes_trajectories_and_json_summary(alfworld_data: Path, tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "opid_gym", "--data-root", str(alfworld_data), "eval", "--agent", "expert",
         "--env", "alfworld-unseen", "--episodes", "2", "--out", str(tmp_path), "--json", "--no-progress"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"success_rate", "episodes", "errors", "per_type"} <= set(summary)
    assert summary["episodes"] == 2 and summary["success_rate"] == 1.0
    lines = (tmp_path / "trajectories.jsonl").read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["steps"][0]["valid"] is True
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
