"""The ALFWorld translation cache: the same games, the translation done once."""

from __future__ import annotations

from pathlib import Path

import pytest

import opid_gym
from environments.alfworld import reset_cache


def _play(env, task_index: int) -> list:
    """Reset, then follow the first three expert steps; everything the agent would see."""
    obs, info = env.reset(seed=0, options={"task_index": task_index})
    seen = [obs, info["admissible_actions"], info["expert_plan"]]
    for action in info["expert_plan"][:3]:
        o, r, term, trunc, step_info = env.step(action)
        seen += [o, r, term, trunc, step_info["admissible_actions"]]
    return seen


def test_cached_resets_give_the_same_games_and_skip_translation(alfworld_data: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPID_GYM_CACHE", str(tmp_path))
    plain = opid_gym.make("alfworld-unseen", data_root=str(alfworld_data), translation_cache=False)
    expected = _play(plain, 3)
    plain.close()

    reset_cache.clear_memory()
    before = dict(reset_cache.stats)
    cached = opid_gym.make("alfworld-unseen", data_root=str(alfworld_data))
    assert _play(cached, 3) == expected  # first time: translated, written to disk
    misses = reset_cache.stats["misses"] - before["misses"]
    assert misses >= 2  # at least the plain and the optimised translation
    files = list((tmp_path / "alfworld-translations").glob("*.pkl.z"))
    assert len(files) == misses
    # load() and reset() translate the same problem: the second is a memory hit
    assert reset_cache.stats["hits"] > before["hits"]

    reset_cache.clear_memory()  # as a fresh process would: everything comes from disk
    before = dict(reset_cache.stats)
    assert _play(cached, 3) == expected
    assert reset_cache.stats["misses"] == before["misses"]
    assert reset_cache.stats["disk_hits"] - before["disk_hits"] == misses
    cached.close()


def test_unreadable_cache_file_is_recomputed(alfworld_data: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPID_GYM_CACHE", str(tmp_path))
    env = opid_gym.make("alfworld-unseen", data_root=str(alfworld_data), translation_cache="disk")
    reset_cache.clear_memory()
    expected = _play(env, 5)
    for f in (tmp_path / "alfworld-translations").glob("*.pkl.z"):
        f.write_bytes(b"not a cache entry")
    reset_cache.clear_memory()
    before = dict(reset_cache.stats)
    assert _play(env, 5) == expected
    assert reset_cache.stats["misses"] > before["misses"]
    env.close()


def test_cache_setting_is_checked() -> None:
    assert reset_cache.resolve_mode(False) == "off"
    assert reset_cache.resolve_mode("memory") == "memory"
    with pytest.raises(ValueError, match="disk, memory or off"):
        reset_cache.resolve_mode("sometimes")
