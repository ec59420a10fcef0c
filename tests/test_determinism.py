"""Acceptance: evaluations with different worker counts / batch sizes give identical
per-episode results (seeded) and so identical protocol scores."""

from __future__ import annotations

import json

import pytest

import opid_gym
from opid_gym.agent import make_agent
from opid_gym.cli import main
from opid_gym.evaluate import evaluate
from tests.toyenv import register_toy


def _episodes(trajs):
    return [(t.task_id, t.seed, [s.action for s in t.steps], t.won, t.total_reward) for t in trajs]


def test_toy_eval_identical_across_workers_and_batch_sizes(tmp_path):
    bench = register_toy()
    (tmp_path / "doors.txt").write_text("x")
    runs = {}
    for workers, batch in [(0, None), (0, 1), (0, 3), (2, None), (2, 1)]:
        summary, trajs = evaluate(bench, make_agent("random"), env_kwargs={"data_root": str(tmp_path)},
                                  workers=workers, max_concurrent=batch, seed=7)
        runs[(workers, batch)] = (summary, _episodes(trajs))
    ref_summary, ref_eps = runs[(0, None)]
    assert len(ref_eps) == 8
    assert 0 < ref_summary.success_rate < 1  # the agent really samples: some wins, some losses
    for key, (summary, eps) in runs.items():
        assert eps == ref_eps, key
        assert summary.success_rate == ref_summary.success_rate
        assert summary.per_type == ref_summary.per_type
        assert summary.metrics == ref_summary.metrics
        assert (summary.protocol_id, summary.protocol_hash) == (ref_summary.protocol_id, ref_summary.protocol_hash)
    # a different run seed samples different episodes (the comparison above is not vacuous)
    _, other = evaluate(bench, make_agent("random"), env_kwargs={"data_root": str(tmp_path)}, seed=8)
    assert _episodes(other) != ref_eps


@pytest.mark.slow
def test_alfworld_cli_eval_identical_across_workers_and_batch_sizes(alfworld_data, tmp_path):
    """Two `opid-bench eval` runs of the random agent on real ALFWorld games: in-process with
    every episode in one batch, and 2 worker processes with one episode at a time."""
    db = tmp_path / "results.sqlite"
    outs = []
    for name, extra in [("a", ["--workers", "0"]), ("b", ["--workers", "2", "--max-concurrent", "1"])]:
        out = tmp_path / name
        rc = main(["--data-root", str(alfworld_data), "--results-db", str(db), "eval", "--agent", "random",
                   "--env", "alfworld-unseen", "--episodes", "2", "--max-steps", "4", "--seed", "3",
                   "--out", str(out), "--no-progress", *extra])
        assert rc == 0
        outs.append(out)
    trajs = [[json.loads(line) for line in (o / "trajectories.jsonl").read_text().splitlines()] for o in outs]
    acts = [[(t["task_id"], [s["action"] for s in t["steps"]], [s["next_observation"] for s in t["steps"]], t["won"])
             for t in ts] for ts in trajs]
    assert acts[0] == acts[1] and len(acts[0]) == 2
    assert all(len(a[1]) == 4 for a in acts[0])
    sums = [json.loads((o / "summary.json").read_text()) for o in outs]
    for key in ("success_rate", "per_type", "mean_length", "invalid_rate", "protocol_id", "protocol_hash"):
        assert sums[0][key] == sums[1][key], key
    assert sums[0]["protocol_id"] == "alfworld-unseen@v2+max_steps=4/subset-2"
    from opid_gym.results import ResultsStore

    records = ResultsStore(db).query(benchmark="alfworld-unseen")
    assert len(records) == 2
    assert records[0].config_hash == records[1].config_hash  # workers / batch size are not config
    assert records[0].protocol_hash == records[1].protocol_hash == sums[0]["protocol_hash"]
    assert opid_gym.BENCHMARKS.get("alfworld-unseen").max_steps == 30  # the override did not leak
