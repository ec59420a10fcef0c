"""``opid-bench compare``: differences with intervals, computed as documented."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.compare import compare_runs
from opid_gym.cli import main


def _traj(i: int, won: bool, ttype: str, length: int = 3, invalid: int = 0, score: float | None = None) -> dict:
    steps = [{"index": k, "observation": "o", "prompt": [], "response": "r", "action": "a", "valid": k >= invalid,
              "next_observation": "o", "reward": 10.0 if (won and k == length - 1) else 0.0,
              "terminated": won and k == length - 1, "truncated": (not won) and k == length - 1}
             for k in range(length)]
    return {"traj_id": f"t{i}", "env_id": "opid/x", "task_index": i, "task_id": f"task-{i}", "task_type": ttype,
            "task": "t", "seed": i, "group_id": f"g{i}", "member": 0, "steps": steps, "won": won,
            "metrics": {} if score is None else {"score": score}}


def _eval_dir(path: Path, trajs: list[dict], *, phash: str = "h" * 12, bench: str = "alfworld-unseen",
              success: float | None = None) -> Path:
    path.mkdir(parents=True)
    (path / "trajectories.jsonl").write_text("".join(json.dumps(t) + "\n" for t in trajs))
    n = len(trajs)
    summary = {"benchmark": bench, "agent": "x", "episodes": n, "errors": 0,
               "success_rate": success if success is not None else sum(t["won"] for t in trajs) / n,
               "per_type": {}, "protocol_id": f"{bench}@v1", "protocol_hash": phash}
    (path / "summary.json").write_text(json.dumps(summary))
    return path


def _newcombe_case(tmp_path: Path, **kw) -> tuple[Path, Path]:
    # Newcombe's example: A 48/80, B 56/70 (B - A = 0.2, interval 0.0524 to 0.3339)
    a = [_traj(i, i < 48, "pick", length=4) for i in range(80)]
    b = [_traj(i, i < 56, "pick", length=2, invalid=1) for i in range(70)]
    return _eval_dir(tmp_path / "a", a, **kw), _eval_dir(tmp_path / "b", b, **kw)


def test_success_difference_uses_newcombe(tmp_path):
    a, b = _newcombe_case(tmp_path)
    c = compare_runs(a, b)
    rows = {r.metric: r for r in c.rows}
    s = rows["success %"]
    assert (s.a, s.b, s.diff) == pytest.approx((60.0, 80.0, 20.0))
    assert (s.low, s.high) == pytest.approx((5.24, 33.39), abs=0.01)
    assert s.method.startswith("Newcombe")
    assert rows["success % [pick]"].diff == pytest.approx(20.0)
    # lengths are constant within each run: the bootstrap interval has no width
    ln = rows["mean episode length"]
    assert (ln.a, ln.b, ln.diff, ln.low, ln.high) == (4.0, 2.0, -2.0, -2.0, -2.0)
    inv = rows["invalid-action rate"]  # B: 1 invalid of 2 steps per episode
    assert (inv.a, inv.b) == pytest.approx((0.0, 0.5)) and inv.low == pytest.approx(0.5)


def test_types_average_is_bootstrapped_within_types(tmp_path):
    # search QA averages over data sets: A nq 1/2, hotpot 0/4 -> 25 %; B nq 2/2, hotpot 0/4 -> 50 %
    a = [_traj(0, True, "nq"), _traj(1, False, "nq")] + [_traj(2 + i, False, "hotpotqa") for i in range(4)]
    b = [_traj(0, True, "nq"), _traj(1, True, "nq")] + [_traj(2 + i, False, "hotpotqa") for i in range(4)]
    da = _eval_dir(tmp_path / "a", a, bench="searchqa", success=0.25)
    db = _eval_dir(tmp_path / "b", b, bench="searchqa", success=0.5)
    (row, *_) = compare_runs(da, db, resamples=300).rows
    assert row.metric == "success % (mean over types)"
    assert (row.a, row.b, row.diff) == pytest.approx((25.0, 50.0, 25.0))
    assert row.low == pytest.approx(0.0) and row.high == pytest.approx(50.0)  # only A's nq pair varies: 0/2..2/2


def test_env_metrics_are_compared(tmp_path):
    a = [_traj(i, False, "x", score=0.5) for i in range(5)]
    b = [_traj(i, False, "x", score=0.75) for i in range(5)]
    rows = {r.metric: r for r in compare_runs(_eval_dir(tmp_path / "a", a), _eval_dir(tmp_path / "b", b)).rows}
    assert rows["score"].diff == pytest.approx(0.25)


def test_cli_compare_refuses_mixed_protocols(tmp_path, capsys):
    a, b = _newcombe_case(tmp_path)
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "success %" in out and "+20.0" in out and "[+5.2, +33.4]" in out
    summary = json.loads((b / "summary.json").read_text())
    summary["protocol_hash"] = "other0000000"
    (b / "summary.json").write_text(json.dumps(summary))
    assert main(["compare", str(a), str(b)]) == 2
    assert "--allow-mixed" in capsys.readouterr().err
    assert main(["compare", str(a), str(b), "--allow-mixed", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["b_protocol"].endswith("#other0000000") and data["rows"][0]["diff"] == pytest.approx(20.0)
    assert main(["compare", str(a), str(tmp_path / "nope")]) == 2


def test_compare_run_folders_uses_final_eval(tmp_path):
    for name, wins in [("ra", 1), ("rb", 3)]:
        trajs = [_traj(i, i < wins, "pick") for i in range(4)]
        _eval_dir(tmp_path / name / "eval" / "step_000002", [_traj(i, False, "pick") for i in range(4)])
        _eval_dir(tmp_path / name / "eval" / "final", trajs)
    c = compare_runs(tmp_path / "ra", tmp_path / "rb")
    assert c.rows[0].diff == pytest.approx(50.0)
    c2 = compare_runs(tmp_path / "ra", tmp_path / "rb", tag_a="step_000002")
    assert c2.rows[0].diff == pytest.approx(75.0)
