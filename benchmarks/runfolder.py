"""Reading run folders (written by ``opid-bench run``) and eval folders (``eval --out``).

Run folder layout (the contract in the project brief)::

    config.json  metrics.jsonl  summary.json
    rollouts/step_NNNNNN.jsonl        Trajectory.to_dict() + "annotations" per line
    eval/<tag>/summary.json + trajectories.jsonl     tag = step_NNNNNN or final

An eval folder (``opid-bench eval --out DIR``) holds ``summary.json`` and
``trajectories.jsonl`` directly; it reads as a run folder with one eval tagged ``eval``.
Missing pieces are simply absent (a run that crashed early still gets a report).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

_STEP = re.compile(r"step_(\d+)")


class RunFolderError(ValueError):
    """The folder is neither a run folder nor an eval folder."""


@dataclass
class EvalResult:
    tag: str
    step: int | None
    """Training step of the eval (None for ``final`` and plain eval folders)."""
    summary: dict[str, Any]
    trajectories_path: Path | None

    def trajectories(self) -> list[dict[str, Any]]:
        return list(read_jsonl(self.trajectories_path)) if self.trajectories_path else []


@dataclass
class RunFolder:
    path: Path
    config: dict[str, Any] | None
    metrics: list[dict[str, Any]]
    summary: dict[str, Any] | None
    evals: dict[str, EvalResult]
    """By tag, in training order (step tags by step, ``final`` last)."""
    rollouts: list[tuple[int, Path]] = field(default_factory=list)
    """(training step, file), by step."""

    @property
    def name(self) -> str:
        return self.path.name

    def main_eval(self, tag: str | None = None) -> EvalResult:
        """The eval a comparison uses: ``tag``, else ``final``, else the last one."""
        if tag is not None:
            if tag not in self.evals:
                raise RunFolderError(f"{self.path} has no eval tagged {tag!r}; it has: {', '.join(self.evals) or 'none'}")
            return self.evals[tag]
        if not self.evals:
            raise RunFolderError(f"{self.path} holds no evaluation (eval/<tag>/summary.json or summary.json)")
        return self.evals.get("final") or list(self.evals.values())[-1]


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """The JSON objects of a .jsonl file; a truncated last line (a run killed mid-write) is skipped."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RunFolderError(f"{path} is not valid JSON: {exc}") from exc
    return data if isinstance(data, dict) else None


def _step_of(name: str) -> int | None:
    m = _STEP.fullmatch(name)
    return int(m.group(1)) if m else None


def load_run(path: str | Path) -> RunFolder:
    """Read what exists of a run folder or an eval folder."""
    path = Path(path)
    if not path.is_dir():
        raise RunFolderError(f"{path} is not a folder")
    config = _read_json(path / "config.json")
    metrics = list(read_jsonl(path / "metrics.jsonl")) if (path / "metrics.jsonl").is_file() else []
    summary = _read_json(path / "summary.json")
    evals: dict[str, EvalResult] = {}
    eval_dir = path / "eval"
    if eval_dir.is_dir():
        tagged = []
        for d in eval_dir.iterdir():
            s = _read_json(d / "summary.json") if d.is_dir() else None
            if s is not None:
                t = d / "trajectories.jsonl"
                tagged.append(EvalResult(d.name, _step_of(d.name), s, t if t.is_file() else None))
        tagged.sort(key=lambda e: (e.step is None, e.step or 0, e.tag))
        evals = {e.tag: e for e in tagged}
    if not evals and summary is not None and "episodes" in summary and (path / "trajectories.jsonl").is_file():
        evals["eval"] = EvalResult("eval", None, summary, path / "trajectories.jsonl")
    rollouts = []
    if (path / "rollouts").is_dir():
        for f in (path / "rollouts").glob("step_*.jsonl"):
            step = _step_of(f.stem)
            if step is not None:
                rollouts.append((step, f))
    rollouts.sort()
    if config is None and not metrics and not evals and not rollouts:
        raise RunFolderError(
            f"{path} is neither a run folder (config.json, metrics.jsonl, eval/, rollouts/) "
            "nor an eval folder (summary.json + trajectories.jsonl)"
        )
    return RunFolder(path, config, metrics, summary, evals, rollouts)
