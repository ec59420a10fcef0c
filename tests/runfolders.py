"""Run folders built by hand for the report / compare tests, in the layout of the brief.

The trajectories are real rollouts through the core's pool and rollout code: two short
ALFWorld episodes (the expert on a 3-step game, the random agent on another for 4
steps), or, for the fast tests, two episodes of the toy env (``tests/toyenv.py``).
``metrics.jsonl`` and the OPID annotations are written here with known values, so the
tests do not depend on the training loop.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import opid_gym
from opid_gym.evaluate import summarize, write_trajectories
from opid_gym.history import make_history
from opid_gym.rollout import EpisodeSpec, run_episodes
from opid_gym.types import Trajectory
from opid_gym.workers import make_pool

EXPERT_TASK = 2  # valid_unseen game 2: a 3-step walkthrough ("look" task)
RANDOM_TASK = 0

METRICS = [
    {"step": s, "time": 10.0 * s, "time/rollout": 6.0 + s, "time/update": 2.0, "rollout/success_rate": sr,
     "rollout/episode_length": ln, "rollout/invalid_rate": inv, "rollout/tokens_generated": 1000 * s,
     "loss/policy": -0.1 * s, "loss/kl": 0.01 * s, "kl": 0.002 * s, "clip_frac": 0.05, "grad_norm": 1.0 / s,
     "opid/skill_adv_mean": 0.1 * s, "opid/skill_adv_std": 0.5}
    for s, sr, ln, inv in [(1, 0.10, 25.0, 0.30), (2, 0.25, 21.0, 0.20), (3, 0.40, 18.0, 0.10), (4, 0.55, 15.5, 0.05)]
]


@lru_cache(maxsize=None)
def _real_trajectories(data_root: str) -> tuple[str, ...]:
    bench = opid_gym.BENCHMARKS.get("alfworld-unseen").with_overrides(max_steps=4)
    cls = opid_gym.registry.env_class(bench.env_id)
    out: list[Trajectory] = []
    for agent, task in [("expert", EXPERT_TASK), ("random", RANDOM_TASK)]:
        a = opid_gym.agent.make_agent(agent)
        with make_pool(bench.env_id, {"data_root": data_root, "max_steps": 4}, with_expert=a.needs_expert) as pool:
            out += run_episodes(pool, a, [EpisodeSpec(task, 1234 + task, f"g-t{task}", 0)], env_id=bench.env_id,
                                template=cls.prompt, action_format=cls.action_format,
                                history=make_history("window", length=5))
    return tuple(json.dumps(t.to_dict()) for t in out)


def real_trajectories(data_root: Path) -> list[Trajectory]:
    return [Trajectory.from_dict(json.loads(s)) for s in _real_trajectories(str(data_root))]


def toy_trajectories(data_root: Path) -> list[Trajectory]:
    """A won episode of at least two steps and a lost one, from the random agent on the toy env."""
    from tests.toyenv import register_toy

    bench = register_toy()
    cls = opid_gym.registry.env_class(bench.env_id)
    with make_pool(bench.env_id, {"data_root": str(data_root), "max_steps": 3}) as pool:
        trajs = run_episodes(pool, opid_gym.agent.make_agent("random"),
                             [EpisodeSpec(i % 8, 100 + i, f"g{i}", 0) for i in range(32)], env_id=bench.env_id,
                             template=cls.prompt, action_format=cls.action_format, history=make_history("window"))
    won = next(t for t in trajs if t.won and t.length >= 2)
    lost = next(t for t in trajs if not t.won)
    return [won, lost]


def tokens_of(text: str) -> list[str]:
    """Words and the whitespace between them: joined, they give the text back."""
    return re.findall(r"\S+|\s+", text)


def skill_adv(n: int, step: int) -> list[float]:
    return [round(((i % 5) - 2) * 0.1 * (step + 1), 4) for i in range(n)]


def annotate(t: Trajectory) -> dict[str, Any]:
    d = t.to_dict()
    d["annotations"] = {
        str(s.index): {"routed_skill": f"step skill #{s.index}: check the receptacle before acting",
                       "skill_adv": skill_adv(len(tokens_of(s.response)), s.index),
                       "response_tokens": tokens_of(s.response)}
        for s in t.steps
    }
    return d


def eval_summary(trajs: list[Trajectory], *, protocol_hash: str = "0123456789ab") -> dict[str, Any]:
    bench = next(opid_gym.BENCHMARKS.get(n) for n in opid_gym.BENCHMARKS
                 if opid_gym.BENCHMARKS.get(n).env_id == trajs[0].env_id)
    s = summarize(trajs, benchmark=bench, agent="hf:tiny").to_dict()
    s.update(protocol_id=f"{bench.name}@v1/subset-{len(trajs)}", protocol_hash=protocol_hash)
    return s


def write_eval_folder(path: Path, trajs: list[Trajectory], **kw: Any) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    write_trajectories(path / "trajectories.jsonl", trajs)
    (path / "summary.json").write_text(json.dumps(eval_summary(trajs, **kw)))
    return path


def build_run_dir(root: Path, trajs: list[Trajectory]) -> Path:
    """A complete run folder: config, metrics, two rollout steps, two evals, summary."""
    run = root / "run-opid"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"learner": "opid", "model": "tiny", "benchmark": "alfworld-unseen",
                                                 "seed": 0, "steps": 4, "group_size": 2,
                                                 "learner_config": {"lambda_skill": 0.5}}))
    with open(run / "metrics.jsonl", "w") as f:
        for row in METRICS:
            f.write(json.dumps(row) + "\n")
        f.write('{"step": 5, "rollout/succ')  # a run killed mid-write: the reader must cope
    (run / "rollouts").mkdir()
    for step in (1, 4):
        with open(run / "rollouts" / f"step_{step:06d}.jsonl", "w") as f:
            for t in trajs:
                f.write(json.dumps(annotate(t)) + "\n")
    write_eval_folder(run / "eval" / "step_000002", trajs[1:])
    write_eval_folder(run / "eval" / "final", trajs)
    (run / "summary.json").write_text(json.dumps({**eval_summary(trajs), "train_steps": 4, "tokens": 4000,
                                                  "seconds": 40.0}))
    return run
