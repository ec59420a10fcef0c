"""Atomic checkpoints: a write cut short never spoils the previous checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from opid_gym.checkpoint import (
    CheckpointError,
    find_latest,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)

ROOT = Path(__file__).resolve().parents[1]


def test_save_load_round_trip_and_keep(tmp_path):
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, {"w": torch.full((3,), float(step))}, {"note": step}, keep=2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [2, 3]
    latest = find_latest(tmp_path)
    assert latest is not None and latest.name == "step_000003"
    assert (tmp_path / "latest").read_text().strip() == "step_000003"
    meta, objs = load_checkpoint(latest)
    assert meta["note"] == 3 and meta["step"] == 3
    assert torch.equal(objs["w"], torch.full((3,), 3.0))


def test_resaving_a_step_replaces_it(tmp_path):
    save_checkpoint(tmp_path, 1, {"w": torch.zeros(2)}, {})
    save_checkpoint(tmp_path, 1, {"w": torch.ones(2)}, {})
    _, objs = load_checkpoint(find_latest(tmp_path))
    assert torch.equal(objs["w"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_an_exception_mid_write_leaves_the_previous_checkpoint(tmp_path):
    save_checkpoint(tmp_path, 1, {"w": torch.zeros(2)}, {})

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint(tmp_path, 2, {"a": torch.ones(2), "b": Unpicklable()}, {})
    latest = find_latest(tmp_path)
    assert latest is not None and latest.name == "step_000001"
    _, objs = load_checkpoint(latest)
    assert torch.equal(objs["w"], torch.zeros(2))
    save_checkpoint(tmp_path, 2, {"w": torch.ones(2)}, {})  # the next save sweeps the leftovers
    assert not any(p.name.startswith(".tmp-") for p in tmp_path.iterdir())


def test_a_process_killed_mid_write_leaves_the_previous_checkpoint(tmp_path):
    """The writer dies (os._exit, like a SIGKILL) after half of checkpoint 2's bytes."""
    script = textwrap.dedent(f"""
        import os, sys, torch
        sys.path.insert(0, {str(ROOT)!r})
        from opid_gym import checkpoint
        root = {str(tmp_path)!r}
        checkpoint.save_checkpoint(root, 1, {{"w": torch.zeros(1000)}}, {{}})
        real_save = torch.save
        def dying_save(obj, f):
            import io
            buf = io.BytesIO(); real_save(obj, buf)
            data = buf.getvalue()
            f.write(data[: len(data) // 2]); f.flush()
            os._exit(9)
        checkpoint.torch.save = dying_save
        checkpoint.save_checkpoint(root, 2, {{"w": torch.ones(1000)}}, {{}})
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr
    assert any(p.name.startswith(".tmp-step_000002") for p in tmp_path.iterdir()), "the kill hit no write"
    latest = find_latest(tmp_path)
    assert latest is not None and latest.name == "step_000001"
    _, objs = load_checkpoint(latest)
    assert torch.equal(objs["w"], torch.zeros(1000))


def test_newest_complete_folder_wins_over_a_stale_pointer_and_incomplete_ones_are_ignored(tmp_path):
    save_checkpoint(tmp_path, 1, {"w": torch.zeros(1)}, {})
    save_checkpoint(tmp_path, 2, {"w": torch.ones(1)}, {}, keep=5)
    (tmp_path / "latest").write_text("step_000001\n")          # killed before the pointer moved
    assert find_latest(tmp_path).name == "step_000002"
    bad = tmp_path / "step_000003"                              # a folder whose file was cut short
    bad.mkdir()
    (bad / "w.pt").write_bytes(b"x")
    (bad / "meta.json").write_text(json.dumps({"step": 3, "files": {"w.pt": 100}}))
    assert find_latest(tmp_path).name == "step_000002"
    with pytest.raises(CheckpointError):
        load_checkpoint(bad)
    assert find_latest(tmp_path / "nothing") is None
