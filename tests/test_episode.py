"""One episode wiring for training and evaluation (``opid_gym.episode``)."""

from __future__ import annotations

from pathlib import Path

import pytest

import opid_gym
from opid_gym.data import resolve_data_root
from opid_gym.episode import data_kwargs, episode_setup
from opid_gym.history import WindowHistory
from opid_gym.registry import env_class


def test_data_root_reaches_only_constructors_that_take_it(tmp_path: Path) -> None:
    assert data_kwargs("alfworld-unseen", tmp_path) == {"data_root": str(resolve_data_root(tmp_path))}
    assert data_kwargs("keypad-train", tmp_path) == {}


def test_training_and_evaluation_wire_the_same_family_parts(tmp_path: Path) -> None:
    bench = opid_gym.BENCHMARKS.get("webshop")
    train = episode_setup(bench, train=True, data_root=tmp_path)
    evaluation = episode_setup(bench, data_root=tmp_path)
    assert (train.env_id, evaluation.env_id) == (bench.train_env_id, bench.env_id)
    cls = env_class(bench.env_id)
    for setup in (train, evaluation):
        assert setup.template is cls.prompt and setup.action_format == cls.action_format
        assert setup.family is cls.family and setup.episode_args()["metric_keys"] == ("score",)
        assert setup.env_kwargs["data_root"] == str(resolve_data_root(tmp_path))
        assert setup.env_kwargs["max_steps"] == bench.max_steps
    history = train.history()
    assert isinstance(history, WindowHistory) and history.length == bench.history_length
    assert train.history() is not history  # a fresh manager each time


def test_caller_kwargs_win_and_injection_can_be_left_to_the_caller(tmp_path: Path) -> None:
    bench = opid_gym.BENCHMARKS.get("alfworld-unseen-short")
    setup = episode_setup(bench, env_kwargs={"max_steps": 2, "data_root": "elsewhere"}, data_root=tmp_path)
    assert setup.env_kwargs["max_steps"] == 2 and setup.env_kwargs["data_root"] == "elsewhere"
    assert setup.env_kwargs["max_plan_length"] == 4  # the benchmark's own env kwargs
    bare = episode_setup(bench, inject_data_root=False)
    assert "data_root" not in bare.env_kwargs


def test_a_benchmark_without_training_split_says_so() -> None:
    bench = opid_gym.Benchmark("eval-only", "opid/keypad-eval", None, max_steps=1)
    with pytest.raises(ValueError, match="no training split"):
        episode_setup(bench, train=True)


def test_validation_sampling_is_the_protocols_settings() -> None:
    bench = opid_gym.BENCHMARKS.get("keypad")
    assert bench.validation_sampling() == {"temperature": bench.temperature, "top_p": bench.top_p,
                                           "max_new_tokens": bench.max_new_tokens,
                                           "max_prompt_tokens": bench.max_prompt_tokens}
