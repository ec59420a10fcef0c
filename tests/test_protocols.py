"""Protocol hashes change with everything that changes a score, and only with that."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

import opid_gym
from benchmarks import protocols
from benchmarks.protocols import FileHashCache, ProtocolMismatchError, protocol_for, require_same_protocol
from tests.toyenv import register_toy, toy_kwargs


@pytest.fixture()
def toy(tmp_path: Path):
    bench = register_toy()
    data = tmp_path / "doors.txt"
    data.write_text("red blue green black\n")
    return bench, data, FileHashCache(tmp_path / "cache.json")


def _hash(bench, data, cache, **kw) -> str:
    return protocol_for(bench, env_kwargs=toy_kwargs(data), cache=cache, **kw).hash


def test_same_inputs_same_hash_and_id(toy):
    bench, data, cache = toy
    p1 = protocol_for(bench, env_kwargs=toy_kwargs(data), cache=cache)
    p2 = protocol_for(bench, env_kwargs=toy_kwargs(data), cache=FileHashCache(None))
    assert p1.hash == p2.hash and len(p1.hash) == protocols.HASH_LENGTH
    assert p1.id == "toy-guess@v1"
    assert p1.task_ids == tuple(f"door-{i}" for i in range(8))


def test_data_file_content_changes_hash(toy):
    bench, data, cache = toy
    before = _hash(bench, data, cache)
    data.write_text("red blue green white\n")
    assert _hash(bench, data, cache) != before
    data.write_text("red blue green black\n")  # restoring the content restores the hash
    assert _hash(bench, data, cache) == before


def test_touching_or_moving_data_keeps_hash(toy, tmp_path):
    bench, data, cache = toy
    before = _hash(bench, data, cache)
    os.utime(data, ns=(1, 1))
    assert _hash(bench, data, cache) == before
    moved = tmp_path / "elsewhere" / "doors.txt"
    moved.parent.mkdir()
    shutil.copy(data, moved)
    assert _hash(bench, moved, cache) == before  # the data's location is not part of it


@pytest.mark.parametrize("change", [
    {"max_steps": 4}, {"history_length": 3}, {"temperature": 0.7}, {"num_seeds": 2}, {"top_p": 0.9},
    {"max_new_tokens": 256}, {"history": "chat"}, {"overall": "types"}, {"version": "2"},
])
def test_every_protocol_field_changes_hash(toy, change):
    bench, data, cache = toy
    assert _hash(bench.with_overrides(**change), data, cache) != _hash(bench, data, cache)


def test_description_does_not_change_hash(toy):
    bench, data, cache = toy
    assert _hash(bench.with_overrides(description="other words"), data, cache) == _hash(bench, data, cache)


def test_task_list_and_subset_change_hash(toy):
    bench, data, cache = toy
    full = protocol_for(bench, env_kwargs=toy_kwargs(data), cache=cache)
    more = protocol_for(bench, env_kwargs=toy_kwargs(data, num_tasks=9), cache=cache)
    sub = protocol_for(bench, env_kwargs=toy_kwargs(data), cache=cache, limit=3)
    assert len({full.hash, more.hash, sub.hash}) == 3
    assert sub.id == "toy-guess@v1/subset-3" and len(sub.task_ids) == 3
    assert set(sub.task_ids) < set(full.task_ids)
    # a limit that covers every task is the full protocol
    assert protocol_for(bench, env_kwargs=toy_kwargs(data), cache=cache, limit=8).hash == full.hash


def test_package_version_changes_hash(toy, monkeypatch):
    bench, data, cache = toy
    before = _hash(bench, data, cache)
    real = protocols.package_version
    monkeypatch.setattr(protocols, "package_version", lambda name: "0.0.1" if name == "numpy" else real(name))
    assert _hash(bench, data, cache) != before


def test_file_hash_cache_keys_on_size_and_mtime(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("abc")
    cache_file = tmp_path / "c.json"
    cache = FileHashCache(cache_file)
    first = cache.sha256(f)
    cache.save()
    st = f.stat()
    f.write_text("xyz")  # same size; put the old mtime back: the cache cannot tell
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert FileHashCache(cache_file).sha256(f) == first  # served from the saved cache
    assert FileHashCache(None).sha256(f) != first  # a fresh hash sees the new content
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert FileHashCache(cache_file).sha256(f) != first  # a new mtime invalidates the entry


def test_broken_cache_file_is_ignored(tmp_path):
    (tmp_path / "c.json").write_text("{not json")
    f = tmp_path / "a.txt"
    f.write_text("abc")
    assert FileHashCache(tmp_path / "c.json").sha256(f) == FileHashCache(None).sha256(f)


def test_require_same_protocol():
    require_same_protocol([("a", "x"), ("b", "x")])
    with pytest.raises(ProtocolMismatchError, match="--allow-mixed"):
        require_same_protocol([("a", "x"), ("b", "y")])
    with pytest.raises(ProtocolMismatchError, match="unknown"):
        require_same_protocol([("a", "x"), ("b", None)])
    require_same_protocol([("a", "x"), ("b", "y")], allow_mixed=True)


# -------------------------------------------------------------------- ALFWorld
def _copy_games(src_root: Path, dst_root: Path, split: str, n: int) -> None:
    split_dir = src_root / "alfworld" / "json_2.1.1" / split
    games = sorted(split_dir.glob("*/*/game.tw-pddl"))[:n]
    for g in games:
        dst = dst_root / "alfworld" / "json_2.1.1" / split / g.parent.relative_to(split_dir)
        dst.mkdir(parents=True)
        for f in g.parent.iterdir():
            shutil.copy2(f, dst / f.name)


def test_alfworld_hash_changes_with_a_data_file_and_the_step_limit(alfworld_data, tmp_path):
    """Acceptance: changing a data file or the step limit changes the protocol hash."""
    root = tmp_path / "data"
    _copy_games(alfworld_data, root, "valid_unseen", 4)
    bench = opid_gym.BENCHMARKS.get("alfworld-unseen")
    cache = FileHashCache(tmp_path / "cache.json")
    kw = {"data_root": str(root)}
    base = protocol_for(bench, env_kwargs=kw, cache=cache)
    assert base.id == "alfworld-unseen@v2" and len(base.task_ids) == 4
    assert base.document["data"]["files"] == 8  # game.tw-pddl + traj_data.json per game
    assert set(base.document["packages"]) >= {"alfworld", "textworld"}

    longer = protocol_for(bench.with_overrides(max_steps=31), env_kwargs=kw, cache=cache)
    assert longer.hash != base.hash and longer.id == "alfworld-unseen@v2+max_steps=31"

    game = sorted(root.glob("alfworld/json_2.1.1/valid_unseen/*/*/game.tw-pddl"))[1]
    doc = json.loads(game.read_text())
    doc["walkthrough"] = doc["walkthrough"] + ["look"]
    game.write_text(json.dumps(doc))
    assert protocol_for(bench, env_kwargs=kw, cache=cache).hash != base.hash


def test_alfworld_real_split_has_134_tasks_and_stable_hash(alfworld_data, tmp_path):
    bench = opid_gym.BENCHMARKS.get("alfworld-unseen")
    a = protocol_for(bench, cache=FileHashCache(tmp_path / "c.json"))
    b = protocol_for(bench, cache=FileHashCache(tmp_path / "c.json"))  # second time from the cache
    assert len(a.task_ids) == 134 and a.hash == b.hash
    seen = protocol_for(opid_gym.BENCHMARKS.get("alfworld-seen"), cache=FileHashCache(None))
    assert len(seen.task_ids) == 140 and seen.hash != a.hash
