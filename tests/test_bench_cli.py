"""The benchmark commands end to end: list benchmarks, results list, leaderboard after real evals."""

from __future__ import annotations

import json
import re

import pytest

import opid_gym
from benchmarks.protocols import FileHashCache, protocol_for
from opid_gym.cli import main
from opid_gym.results import ResultsStore, record_run


def test_list_benchmarks_shows_protocol_and_hash(alfworld_data, capsys):
    assert main(["--data-root", str(alfworld_data), "list", "benchmarks"]) == 0
    out = capsys.readouterr().out
    expected = protocol_for(opid_gym.BENCHMARKS.get("alfworld-unseen"), env_kwargs={"data_root": str(alfworld_data)},
                            cache=FileHashCache(None))
    line = next(l for l in out.splitlines() if l.startswith("alfworld-unseen "))
    assert re.search(rf"alfworld-unseen@v2\s+{expected.hash}\s+134\s+30", line)
    line50 = next(l for l in out.splitlines() if l.startswith("alfworld-unseen-50 "))
    assert expected.hash not in line50 and " 50 " in line50
    for name in opid_gym.BENCHMARKS:  # every benchmark is listed, hashed or with the reason it is not
        assert any(l.startswith(name + " ") for l in out.splitlines())


@pytest.mark.slow
def test_leaderboard_after_evals_and_a_run(alfworld_data, tmp_path, capsys):
    """Acceptance: results recorded by `eval` (2 seeds) and by a run beside the paper rows, with CIs."""
    db = tmp_path / "r.sqlite"
    summaries = []
    for seed in (0, 1):
        out = tmp_path / f"ev{seed}"
        assert main(["--data-root", str(alfworld_data), "--results-db", str(db), "eval", "--agent", "random",
                     "--env", "alfworld-unseen", "--episodes", "2", "--max-steps", "3", "--seed", str(seed),
                     "--out", str(out), "--no-progress"]) == 0
        summaries.append(json.loads((out / "summary.json").read_text()))
    # what `opid-bench run` records at its end (two seeds of a learner, same protocol as the evals)
    for seed, success in ((0, 0.5), (1, 1.0)):
        record_run(db, summary={**summaries[seed], "success_rate": success}, config={"learner": "grpo"},
                   model="tiny", learner="grpo", seed=seed, wall_seconds=600, device_kind="cpu", devices=1,
                   tokens_generated=5000, train_steps=3, train_tokens=4000)
    capsys.readouterr()
    assert main(["leaderboard", "--env", "alfworld-unseen", "--results-db", str(db)]) == 0
    out = capsys.readouterr().out
    assert f"alfworld-unseen@v2+max_steps=3/subset-2#{summaries[0]['protocol_hash']}" in out.splitlines()[0]
    grpo = next(l for l in out.splitlines() if " grpo " in l and "measured" in l)
    # seeds 50 % and 100 %: mean 75, s = 35.36, t(1) = 12.706 -> +- 317.7, clipped to [0, 100]
    assert "75.0 ± 317.7" in grpo and "[0.0, 100.0]" in grpo and re.search(r"\s2\s", grpo)
    rnd = next(l for l in out.splitlines() if " random " in l)
    assert "— (eval only)" in rnd
    assert "published (OPID paper, unseen-split figure)" in out and "published (OPID paper, Table 1)" in out
    assert main(["results", "list", "--results-db", str(db)]) == 0
    assert "4 record(s)" in capsys.readouterr().out
    assert len(ResultsStore(db).query(kind="eval")) == 2
