"""``opid-bench run`` / ``resume`` end to end on the toy game with the tiny model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from opid_gym.cli import main
from tests.support import letters as toyenv

ROOT = Path(__file__).resolve().parents[1]
TOY_ARGS = ["--learner", "grpo", "--env", "letters", "--preset", "smoke", "--set", "rollout.max_new_tokens=8",
            "--set", "rollout.group_size=3", "--set", "optim.lr=1e-3", "--no-progress"]
CONTRACT_KEYS = [
    "step", "time", *(f"time/{p}" for p in ("rollout", "prepare", "advantage", "update", "sync", "eval")),
    "rollout/success_rate", "rollout/episode_length", "rollout/invalid_rate", "rollout/tokens_generated",
    "rollout/env_steps", "loss/pg", "kl", "clip_frac", "grad_norm",
]


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    toyenv.register()
    monkeypatch.setenv("OPID_GYM_RESULTS", str(tmp_path / "results.sqlite"))


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _without_times(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.startswith("time")} for r in records]


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("extra, message", [
    (["--set", "optim.lrr=1e-5"], "optim.lr"),
    (["--set", "rollout.group_size=many"], "rollout.group_size expects int"),
    (["--set", "steps"], "KEY=VALUE"),
    (["--preset", "fast"], "unknown preset"),
])
def test_bad_configuration_is_refused_before_any_work(tmp_path, capsys, extra, message):
    out = tmp_path / "run"
    code = main(["run", "--learner", "grpo", "--env", "alfworld-unseen", *extra, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and "Traceback" not in err
    assert not out.exists()


def test_bad_config_file_and_bad_resume_folder(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["run", "--learner", "grpo", "--env", "letters", "--config", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    bad.write_text(json.dumps({"optim": {"lr": "high"}}))
    assert main(["run", "--learner", "grpo", "--env", "letters", "--config", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert "optim.lr expects float" in capsys.readouterr().err
    assert main(["resume", str(tmp_path / "nowhere")]) == 2
    assert "not a run folder" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


# --------------------------------------------------------------- a whole run
def test_run_writes_the_run_folder(tmp_path, capsys):
    out = tmp_path / "run"
    # π_old from the sampler's log-probs: the same model, so the first ratios are 1
    assert main(["run", *TOY_ARGS, "--set", "rollout.old_logp=sampler", "--out", str(out)]) == 0
    records = _metrics(out)
    assert records[0]["ratio_mean"] == pytest.approx(1.0, abs=1e-4)
    assert [r["step"] for r in records] == [1, 2]
    for key in CONTRACT_KEYS:
        assert key in records[0], key
    assert records[0]["rollout/env_steps"] > 0 and records[0]["rollout/tokens_generated"] > 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["learner_name"] == "grpo" and cfg["env"]["benchmark"] == "letters" and cfg["steps"] == 2
    assert (out / "checkpoints" / "latest").read_text().strip() == "step_000002"
    assert any((out / "events").iterdir())
    lines = (out / "rollouts" / "step_000001.jsonl").read_text().splitlines()
    assert len(lines) == 2 * 3 and "annotations" in json.loads(lines[0])
    final = json.loads((out / "eval" / "final" / "summary.json").read_text())
    assert final["episodes"] == 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["budget"]["steps"] == 2 and summary["final_eval"]["episodes"] == 2
    assert summary["budget"]["tokens_generated"] >= records[0]["rollout/tokens_generated"]
    # the folder is a run now: a second `run` into it is refused, `resume` says it is done
    assert main(["run", *TOY_ARGS, "--set", "rollout.old_logp=sampler", "--out", str(out)]) == 2
    assert main(["resume", str(out)]) == 0
    assert "already complete" in capsys.readouterr().err


@pytest.mark.slow
def test_kill_and_resume_reaches_the_uninterrupted_state(tmp_path):
    args = [*TOY_ARGS, "--set", "steps=3", "--set", "checkpoint.every=1"]
    # 1. a run killed with SIGKILL after its first checkpoint (steps are slowed by the env's delay)
    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    code = ("import sys; from tests.support import letters as toyenv; toyenv.register(delay=0.3); "
            "from opid_gym.cli import main; sys.exit(main(sys.argv[1:]))")
    proc = subprocess.Popen([sys.executable, "-c", code, "run", *args, "--out", str(killed)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    marker = killed / "checkpoints" / "step_000001" / "meta.json"
    deadline = time.monotonic() + 300
    metrics = killed / "metrics.jsonl"
    while not (marker.exists() and metrics.exists() and metrics.read_text().count("\n") >= 1):
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert not (killed / "summary.json").exists()
    assert not (killed / "checkpoints" / "step_000003").exists()
    # lines of steps up to the newest checkpoint (the kill may come before its line is written)
    newest = max(int(p.name[5:]) for p in (killed / "checkpoints").glob("step_*"))
    kept = [r for r in _metrics(killed) if r["step"] <= newest]
    assert kept and newest < 3
    # 2. resume it, 3. an uninterrupted run of the same config
    assert main(["resume", str(killed), "--no-progress"]) == 0
    # the resumed run continued after the checkpoint: those steps were not trained again
    assert _metrics(killed)[: len(kept)] == kept
    clean = tmp_path / "clean"
    assert main(["run", *args, "--out", str(clean)]) == 0
    # same final weights and optimiser state, bit for bit
    a = torch.load(killed / "checkpoints" / "step_000003" / "trainer.pt", weights_only=False)
    b = torch.load(clean / "checkpoints" / "step_000003" / "trainer.pt", weights_only=False)
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["exp_avg"], sb["exp_avg"]) and torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
    # the same per-step metrics (times aside), one line per step, and the same final evaluation
    ma, mb = _metrics(killed), _metrics(clean)
    assert [r["step"] for r in ma] == [1, 2, 3]
    assert _without_times(ma) == _without_times(mb)
    sa = json.loads((killed / "summary.json").read_text())
    sb = json.loads((clean / "summary.json").read_text())
    for key in ("success_rate", "mean_reward", "mean_length", "invalid_rate", "generated_tokens"):
        assert sa["final_eval"][key] == sb["final_eval"][key]
    assert sa["budget"]["tokens_generated"] == sb["budget"]["tokens_generated"]
    assert sa["budget"]["env_steps"] == sb["budget"]["env_steps"]


@pytest.mark.slow
def test_smoke_preset_on_alfworld(tmp_path, alfworld_data):
    """The acceptance command: `opid-bench run --learner grpo --env alfworld-unseen --preset smoke`."""
    out = tmp_path / "run"
    code = main(["--data-root", str(alfworld_data), "run", "--learner", "grpo", "--env", "alfworld-unseen",
                 "--preset", "smoke", "--out", str(out), "--no-progress"])
    assert code == 0
    records = _metrics(out)
    assert [r["step"] for r in records] == [1, 2]
    assert all(r["rollout/episodes"] == 4 and r["rollout/env_steps"] > 0 for r in records)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final_eval"]["benchmark"] == "alfworld-unseen" and summary["final_eval"]["episodes"] == 2
    assert (out / "eval" / "final" / "trajectories.jsonl").is_file()


def test_resume_before_the_first_checkpoint_starts_over(tmp_path):
    """A run killed before its first checkpoint: resume trains from step 1 and drops stale lines."""
    from opid_gym.config import config_to_dict, resolve_config

    cfg = resolve_config("grpo", "letters", preset="smoke", set_items=["rollout.max_new_tokens=8"])
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text(json.dumps(config_to_dict(cfg)))
    (out / "metrics.jsonl").write_text('{"step": 1, "stale": true}\n{"step": 2, "cut')
    assert main(["resume", str(out), "--no-progress"]) == 0
    records = _metrics(out)
    assert [r["step"] for r in records] == [1, 2] and not any("stale" in r for r in records)
    assert (out / "summary.json").is_file()


def test_dynamic_sampling_refills_the_step_with_groups_that_have_reward_variance(tmp_path):
    out = tmp_path / "run"
    assert main(["run", *TOY_ARGS, "--set", "steps=1", "--set", "rollout.filter_groups=true",
                 "--set", "rollout.max_gen_batches=4", "--set", "eval.final=false", "--out", str(out)]) == 0
    record = _metrics(out)[0]
    tries = record["rollout/gen_batches"]
    print("dynamic sampling:", {k: v for k, v in record.items() if k.startswith("rollout/")})
    assert 1 <= tries <= 4 and record["rollout/kept_groups"] == 2  # B = 2 groups, the last try fills up
    assert record["rollout/episodes"] == 2 * 3 * tries  # every generated episode counts in the rollout metrics
    lines = [json.loads(x) for x in (out / "rollouts" / "step_000001.jsonl").read_text().splitlines()]
    assert len(lines) == 2 * 3  # the kept groups are what the step trains on
    groups: dict[str, set] = {}
    for t in lines:
        groups.setdefault(t["group_id"], set()).add(sum(s["reward"] for s in t["steps"]))
    if tries < 4:  # before the last allowed try only groups with reward variance are kept
        assert all(len(rewards) > 1 for rewards in groups.values())
    assert record["rollout/kept_groups"] + record["rollout/dropped_groups"] <= 2 * tries
    assert (record["rollout/dropped_groups"] >= 1) == (tries > 1)  # a refill follows a dropped group
