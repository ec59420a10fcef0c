"""``saved:<path>``: replay trajectories saved by ``eval --out`` or a run, as an agent.

``path`` is a ``.jsonl`` file of trajectories (``eval --out``'s ``trajectories.jsonl``,
a run's ``rollouts/step_NNNNNN.jsonl``) or a folder searched for them. For each task
id the agent keeps one saved trajectory (a won one when there is one) and answers
step t of an episode of that task with that trajectory's step-t response, so the
environment goes through the same states while the prompts are rendered afresh by the
current rollout (template, history manager). Tasks without a saved trajectory, and
steps past its end, get an empty response (no action; ``sft`` has nothing to learn
from them). The main use: ``opid-bench sft --agent saved:runs/x/rollouts --only-won``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from opid_gym.agent import AgentReply, AgentRequest


class ReplayAgent:
    needs_expert = False

    def __init__(self, responses: dict[str, list[str]], name: str) -> None:
        self.responses = responses
        self.name = name

    def act(self, requests: Sequence[AgentRequest]) -> list[AgentReply]:
        out = []
        for req in requests:
            saved = self.responses.get(str(req.info.get("task_id", "")), [])
            out.append(AgentReply(saved[req.step] if req.step < len(saved) else ""))
        return out


def saved_files(path: Path) -> list[Path]:
    """The trajectory files of ``path`` (itself, or every ``*.jsonl`` below it, sorted)."""
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.rglob("*.jsonl") if p.name != "metrics.jsonl")
    raise FileNotFoundError(f"no saved trajectories at {path}")


def make_agent(path: str, **_: Any) -> ReplayAgent:
    """Load every saved trajectory under ``path`` (see the module docstring)."""
    import json

    from opid_gym.types import Trajectory

    best: dict[str, Trajectory] = {}
    for file in saved_files(Path(path).expanduser()):
        with open(file, encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    traj = Trajectory.from_dict(json.loads(line))
                except (ValueError, KeyError, TypeError):
                    raise ValueError(f"{file} does not hold saved trajectories (one JSON object per line)") from None
                kept = best.get(traj.task_id)
                if traj.error is None and traj.steps and (kept is None or (traj.won and not kept.won)):
                    best[traj.task_id] = traj
    if not best:
        raise FileNotFoundError(f"no saved trajectories with steps at {path}")
    return ReplayAgent({k: [s.response for s in t.steps] for k, t in best.items()}, name=f"saved:{path}")
