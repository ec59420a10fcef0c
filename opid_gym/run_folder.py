"""A run folder: where its files lie, and reading and writing them.

    <run>/config.json            the resolved, frozen config (it determines the run)
    <run>/metrics.jsonl          one JSON object per completed training step
    <run>/events/                TensorBoard events (when tensorboard is installed)
    <run>/checkpoints/step_N/    atomic checkpoints (``opid_gym.checkpoint``), ``latest``
    <run>/rollouts/step_N.jsonl  each step's trajectories with the learner's annotations
    <run>/eval/<tag>/            evaluations (trajectories + summary.json)
    <run>/summary.json           written when the run ends
    <run>/analyzer/              what a learner keeps of its own (OPID: analyzer cache)
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from opid_gym.config import RunConfig, config_from_dict
from opid_gym.learner import StepBatch
from opid_gym.types import Trajectory


class RunError(RuntimeError):
    """A run that cannot start or continue (printed as one line by the CLI)."""


@dataclass(frozen=True)
class RunPaths:
    """The files of a run folder (see the module docstring)."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def events(self) -> Path:
        return self.root / "events"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def rollouts(self) -> Path:
        return self.root / "rollouts"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    def eval_dir(self, tag: str) -> Path:
        return self.root / "eval" / tag


def step_tag(step: int) -> str:
    return f"step_{step:06d}"


def load_run_config(run_dir: Path) -> RunConfig:
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise RunError(f"{run_dir} is not a run folder (no config.json)")
    try:
        return config_from_dict(json.loads(path.read_text(encoding="utf-8")))
    except UnicodeDecodeError:
        raise RunError(f"{path} is not text (binary or damaged)") from None
    except json.JSONDecodeError as exc:
        raise RunError(f"{path} is not valid JSON: {exc}") from None


class MetricsLog:
    """metrics.jsonl (one object per step) + TensorBoard events when available."""

    def __init__(self, paths: RunPaths, *, tensorboard: bool, purge_step: int | None) -> None:
        self.paths = paths
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                warnings.warn("TensorBoard events are not written: pip install 'opid-gym[train]'", stacklevel=2)
            else:
                self.writer = SummaryWriter(str(paths.events), purge_step=purge_step)

    def write(self, record: dict[str, Any]) -> None:
        with open(self.paths.metrics, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if self.writer is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                    self.writer.add_scalar(key, value, record["step"])
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def read_metrics(path: Path, bad: list[str] | None = None) -> list[dict[str, Any]]:
    """The step records of ``metrics.jsonl``; a line that is not a JSON object (cut by a
    kill, damaged) is skipped with a warning and appended to ``bad`` when given."""
    if not path.is_file():
        return []
    out = []
    for n, line in enumerate(path.read_bytes().decode("utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or not isinstance(record.get("step", 0), int):
                raise ValueError("not a step record")
        except ValueError:
            warnings.warn(f"{path}: skipping line {n}, not a metrics record: {line[:60]!r}", stacklevel=2)
            if bad is not None:
                bad.append(line)
            continue
        out.append(record)
    return out


def rewrite_metrics(path: Path, records: list[dict[str, Any]], bad: Sequence[str] = ()) -> None:
    """Replace ``metrics.jsonl`` with ``records`` (atomic); ``bad`` lines are appended to
    ``metrics.jsonl.bad`` first, so nothing that was in the file is lost."""
    if bad:
        with open(path.with_name(path.name + ".bad"), "a", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in bad))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    os.replace(tmp, path)


def write_rollouts(path: Path, batch: StepBatch | None, trajs: Sequence[Trajectory]) -> None:
    """The step's trajectories (token ids dropped) with the learner's per-step annotations."""
    notes: dict[str, dict[str, dict[str, Any]]] = {}
    if batch is not None:
        for i, ann in enumerate(batch.annotations):
            if ann:
                traj = batch.trajectories[int(batch.traj_index[i])]
                notes.setdefault(traj.traj_id, {})[str(int(batch.step_index[i]))] = ann
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for t in trajs:
            d = t.to_dict()
            for s in d["steps"]:
                s["prompt_token_ids"] = s["response_token_ids"] = s["response_logprobs"] = None
            d["annotations"] = notes.get(t.traj_id, {})
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
