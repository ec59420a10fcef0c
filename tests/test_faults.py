"""Faults injected on purpose, and what the project guarantees under each (docs/faults.md).

Every test reproduces one fault of issue 17 and checks the outcome the fault table
promises: a worker killed mid-evaluation, a dead model endpoint, an unwritable or
foreign ``eval --out``, Ctrl-C and continue, damaged checkpoints (changed bytes,
damaged header, none intact), a non-finite update, a bad ``metrics.jsonl`` line,
concurrent creation of the results store, a damaged store, and bad invocations (one
line, exit 2). Cheap by design: the door-guessing toy env (``tests/support/faulty.py``),
the expert and random agents, the tiny model for the two training runs.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import sqlite3
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

from opid_gym.checkpoint import CheckpointError, load_latest, save_checkpoint
from opid_gym.cli import main
from opid_gym.results import ResultsStore, ResultsStoreError, new_record
from tests.support import faulty

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("OPID_GYM_RESULTS", str(tmp_path / "results.sqlite"))
    yield
    faulty.register()  # later tests see the benchmark without crash settings


def _cli(args: list[str], capsys) -> tuple[int, str, str]:
    """``opid-bench ARGS`` in this process: (exit code, stdout, stderr)."""
    try:
        code = main(args)
    except SystemExit as exc:  # argparse's own errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _eval(out: Path | None = None, *extra: str) -> list[str]:
    return ["eval", "--agent", "expert", "--env", faulty.BENCH, "--no-progress",
            *(["--out", str(out)] if out else []), *extra]


# ------------------------------------------------ 1. crashed episodes: retried, never scored
def test_worker_killed_mid_evaluation_is_retried_on_a_fresh_worker(tmp_path, capsys):
    """kill -9 of a worker (twice, two tasks): the episodes run again and the expert scores 100%."""
    crash = tmp_path / "crash"
    crash.mkdir()
    faulty.register(crash_dir=str(crash), crash_tasks=[1, 4])
    code, out, err = _cli(_eval(tmp_path / "ev", "--workers", "2"), capsys)
    assert code == 0, err
    assert sorted(p.name for p in crash.iterdir()) == ["crashed-1", "crashed-4"]  # the kills did happen
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert summary["success_rate"] == 1.0 and summary["errors"] == 0 and summary["complete"]
    assert summary["episodes"] == 6 and summary["retried"] >= 2
    (record,) = ResultsStore(os.environ["OPID_GYM_RESULTS"]).query()
    assert record.success_rate == 1.0 and record.errors == 0


def test_episode_that_keeps_failing_is_left_out_of_the_score(tmp_path, capsys):
    """A task whose worker dies every time: counted as an error of its task type, not as a
    failure; the result is incomplete (exit 1 unless --allow-errors) and the leaderboard
    leaves it out unless asked."""
    crash = tmp_path / "crash"
    crash.mkdir()
    faulty.register(crash_dir=str(crash), crash_tasks=[1], crash_once=False)
    code, out, err = _cli(_eval(None, "--workers", "2", "--retries", "1"), capsys)
    assert code == 1 and "incomplete" in err and "Traceback" not in err
    assert (crash / "crashed-1").read_text() == "2"  # the first try and one retry
    (record,) = ResultsStore(os.environ["OPID_GYM_RESULTS"]).query()
    assert record.errors == 1 and record.episodes == 5 and record.success_rate == 1.0  # the expert's true rate
    assert record.per_type["odd"]["errors"] == 1 and "unknown" not in record.per_type  # task 1 is "odd"
    assert _cli(_eval(None, "--workers", "2", "--retries", "0", "--allow-errors"), capsys)[0] == 0
    code, out, _ = _cli(["leaderboard", "--env", faulty.BENCH, "--references", "none"], capsys)
    assert code == 0 and "2 incomplete record(s) left out" in out and "expert" not in out.split("note:")[0]
    code, out, _ = _cli(["leaderboard", "--env", faulty.BENCH, "--references", "none", "--include-incomplete",
                         "--format", "csv"], capsys)
    rows = out.strip().splitlines()
    # the row is seed 0's latest record: without retries the episodes that shared the dead
    # worker's batch (tasks 1, 3, 5) are errors too
    assert rows[0].split(",")[5] == "errors" and [r.split(",")[5] for r in rows[1:]] == ["3"]


def test_dead_model_endpoint_with_on_error_empty_is_not_a_zero_score(tmp_path, capsys):
    """``--agent-opt on_error=empty`` against a dead endpoint: every episode is an error,
    nothing is scored as the model's failure (never 0% with errors=0)."""
    faulty.register()
    code, out, err = _cli(["eval", "--agent", "openai:some-model", "--env", faulty.BENCH, "--episodes", "2",
                           "--base-url", "http://127.0.0.1:9/v1", "--api-key", "k", "--retries", "1",
                           "--agent-opt", "on_error=empty", "--agent-opt", "max_retries=0",
                           "--agent-opt", "timeout=2", "--no-progress"], capsys)
    assert code == 1 and "Traceback" not in err
    (record,) = ResultsStore(os.environ["OPID_GYM_RESULTS"]).query()
    assert record.errors == 2 and record.episodes == 0


# ------------------------------------------------------------------------ 2. eval --out
def test_unwritable_out_is_found_before_any_episode(tmp_path, capsys):
    faulty.register()
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    start = time.perf_counter()
    code, out, err = _cli(_eval(blocker / "ev"), capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and str(blocker / "ev") in err
    assert "episodes=" not in out  # nothing ran
    assert time.perf_counter() - start < 30


def test_eval_of_a_run_folder_writes_its_own_folder(tmp_path, capsys):
    faulty.register()
    run = tmp_path / "run"
    run.mkdir()
    files = {"config.json": "{}", "metrics.jsonl": '{"step": 1}\n', "summary.json": '{"run": true}'}
    for name, text in files.items():
        (run / name).write_text(text)
    code, _, err = _cli(_eval(run), capsys)
    assert code == 0, err
    assert {n: (run / n).read_text() for n in files} == files  # the run's files are untouched
    (sub,) = (run / "eval").iterdir()
    assert json.loads((sub / "summary.json").read_text())["success_rate"] == 1.0


def test_out_holding_another_evaluation_is_refused(tmp_path, capsys):
    faulty.register()
    assert _cli(_eval(tmp_path / "ev"), capsys)[0] == 0
    before = (tmp_path / "ev" / "summary.json").read_text()
    code, _, err = _cli(_eval(tmp_path / "ev", "--seed", "5"), capsys)
    assert code == 2 and "seed" in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "ev" / "summary.json").read_text() == before


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_keeps_finished_episodes_and_the_rerun_continues(tmp_path):
    """SIGINT to the whole process group (a terminal's Ctrl-C) during ``eval --workers 2``:
    no traceback, exit 130, the finished episodes are on disk; the same command again runs
    only the missing episodes and gives the full result."""
    out = tmp_path / "ev"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           "FAULTY_ENV_KWARGS": json.dumps({"num_tasks": 10, "slow": 1.0})}
    cmd = [sys.executable, "-m", "tests.support.faulty", "eval", "--agent", "expert", "--env", faulty.BENCH,
           "--workers", "2", "--max-concurrent", "2", "--out", str(out)]
    # a terminal's Ctrl-C reaches a process whose SIGINT is at its default; a suite started
    # in the background of a script (`cmd &`) runs with SIGINT ignored, and so would the child
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, preexec_fn=_default_sigint)
    lines = out / "trajectories.jsonl"
    deadline = time.monotonic() + 120
    while not (lines.exists() and lines.read_text().count("\n") >= 3):
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        assert time.monotonic() < deadline, "no finished episodes within 120 s"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    err = err.decode()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "run the same command to continue" in err
    kept = [json.loads(line) for line in lines.read_text().splitlines()]
    assert 3 <= len(kept) < 10 and all(t["error"] is None and t["won"] for t in kept)
    rerun = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    ran = [line for line in rerun.stderr.splitlines() if line.startswith("episode ")]
    assert len(ran) == 10 - len(kept)  # only the missing episodes ran
    summary = json.loads((out / "summary.json").read_text())
    assert summary["episodes"] == 10 and summary["success_rate"] == 1.0
    final = [json.loads(line) for line in lines.read_text().splitlines()]
    assert sorted(t["task_index"] for t in final) == list(range(10))
    by_id = {t["traj_id"]: t for t in final}
    assert all(by_id[k["traj_id"]] == k for k in kept)  # the kept episodes, as they were


# ----------------------------------------------------------------------- 3. checkpoints
def _three_checkpoints(root: Path) -> None:
    for step in (1, 2, 3):
        save_checkpoint(root, step, {"trainer": {"w": torch.full((64,), float(step))}}, {"note": step}, keep=3)


def test_changed_bytes_of_the_same_size_fall_back_with_a_warning(tmp_path):
    _three_checkpoints(tmp_path)
    f = tmp_path / "step_000003" / "trainer.pt"
    data = bytearray(f.read_bytes())
    data[-200] ^= 0xFF  # same size, other bytes (inside the tensor data)
    f.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="step_000003.*sha256"):
        folder, meta, objects = load_latest(tmp_path)
    assert folder.name == "step_000002" and torch.equal(objects["trainer"]["w"], torch.full((64,), 2.0))


def test_damaged_header_falls_back_to_the_newest_intact(tmp_path):
    _three_checkpoints(tmp_path)
    for step in (2, 3):
        f = tmp_path / f"step_00000{step}" / "trainer.pt"
        data = bytearray(f.read_bytes())
        data[:16] = b"\x00" * 16
        f.write_bytes(bytes(data))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        folder, _, objects = load_latest(tmp_path)
    assert folder.name == "step_000001" and objects["trainer"]["w"][0] == 1.0
    assert [m for m in ("step_000003", "step_000002") if any(m in str(w.message) for w in caught)] == \
        ["step_000003", "step_000002"]


def test_damaged_header_with_the_meta_rewritten_to_match_is_still_caught(tmp_path):
    """A header that no longer unpickles, its checksum updated too: still a fallback, no traceback."""
    import hashlib

    _three_checkpoints(tmp_path)
    folder = tmp_path / "step_000003"
    f = folder / "trainer.pt"
    f.write_bytes(b"\x80\x02garbage" + f.read_bytes()[10:])
    meta = json.loads((folder / "meta.json").read_text())
    meta["files"]["trainer.pt"] = f.stat().st_size
    meta["sha256"]["trainer.pt"] = hashlib.sha256(f.read_bytes()).hexdigest()
    (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="step_000003.*cannot be loaded"):
        found, _, _ = load_latest(tmp_path)
    assert found.name == "step_000002"


def test_no_intact_checkpoint_is_an_error_not_a_fresh_start(tmp_path):
    _three_checkpoints(tmp_path)
    for step in (1, 2, 3):
        (tmp_path / f"step_00000{step}" / "trainer.pt").write_bytes(b"\x00" * 10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(CheckpointError, match="no intact checkpoint"):
            load_latest(tmp_path)
    assert load_latest(tmp_path / "nothing-here") is None  # killed before the first checkpoint: start over


def test_a_non_finite_update_is_never_saved(tmp_path):
    save_checkpoint(tmp_path, 1, {"trainer": {"model": {"w": torch.ones(4)}}}, {})
    with pytest.raises(CheckpointError, match=r"model\.w.*NaN or infinity"):
        save_checkpoint(tmp_path, 2, {"trainer": {"model": {"w": torch.tensor([1.0, float("nan"), 0, 0])}}}, {})
    folder, _, objects = load_latest(tmp_path)
    assert folder.name == "step_000001" and not (tmp_path / "step_000002").exists()
    assert (tmp_path / "latest").read_text().strip() == "step_000001"


@pytest.mark.slow
def test_resume_with_damaged_checkpoints_end_to_end(tmp_path, capsys):
    """``opid-bench resume``: the newest checkpoint changed on disk → warning, resumes from
    the one before; every checkpoint damaged → one-line error, exit 2, nothing retrained."""
    pytest.importorskip("transformers")
    from tests.support import letters

    letters.register()
    run = tmp_path / "run"
    args = ["run", "--learner", "grpo", "--env", "letters", "--preset", "smoke", "--set", "rollout.max_new_tokens=8",
            "--set", "checkpoint.keep=3", "--set", "eval.final=false", "--no-progress", "--out", str(run)]
    assert _cli(args, capsys)[0] == 0
    f = run / "checkpoints" / "step_000002" / "trainer.pt"
    data = bytearray(f.read_bytes())
    data[-300] ^= 0x01
    f.write_bytes(bytes(data))
    (run / "summary.json").unlink()  # the run must train again from the fallback
    with pytest.warns(UserWarning, match="step_000002"):
        code, _, err = _cli(["resume", str(run), "--no-progress"], capsys)
    assert code == 0, err
    assert [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    for step in (1, 2):
        (run / "checkpoints" / f"step_00000{step}" / "trainer.pt").write_bytes(b"\x00" * 10)
    (run / "summary.json").unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code, _, err = _cli(["resume", str(run), "--no-progress"], capsys)
    # one line from us (the model loader may draw its own progress bar before it)
    assert code == 2 and "Traceback" not in err and "no intact checkpoint" in err.strip().splitlines()[-1]
    assert not (run / "summary.json").exists()


# ---------------------------------------------------------------------- 4. metrics.jsonl
def test_a_bad_metrics_line_is_skipped_and_no_good_line_is_removed(tmp_path):
    from opid_gym.persistence import truncate_metrics
    from opid_gym.run_folder import RunPaths

    lines = ['{"step": 1, "a": 1}', '{"step": 2, "a": 2}', "\x00\x00garbage{", '{"step": 3, "a": 3}',
             '{"step": 4, "a": 4}', '{"step": 5, "a": 5}']
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.warns(UserWarning, match="line 3"):
        truncate_metrics(RunPaths(tmp_path), 4, None)  # resuming from the checkpoint of step 4
    kept = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert kept == lines[:2] + lines[3:5]  # steps 1-4 all kept; step 5 is retrained
    assert (tmp_path / "metrics.jsonl.bad").read_text() == lines[2] + "\n"


# ------------------------------------------------------------------------ 5. results store
def _append_five(path: str, k: int, barrier) -> None:
    barrier.wait()  # all twelve create the store at once
    for i in range(5):
        ResultsStore(path).append(new_record(
            kind="eval", benchmark="b", protocol_id="p", protocol_hash="h", model="m", agent="a", learner=None,
            seed=k, config_hash="c", metrics={"success_rate": i / 5}, per_type={}, episodes=1, errors=0, cost={}))


def test_twelve_processes_creating_the_store_lose_nothing(tmp_path):
    ctx = mp.get_context("fork")
    for trial in range(3):
        path = str(tmp_path / f"r{trial}.sqlite")
        barrier = ctx.Barrier(12)
        procs = [ctx.Process(target=_append_five, args=(path, k, barrier)) for k in range(12)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
        assert [p.exitcode for p in procs] == [0] * 12
        assert len(ResultsStore(path)) == 60


def test_damaged_store_is_one_line_and_the_eval_files_are_still_written(tmp_path, capsys):
    faulty.register()
    db = tmp_path / "results.sqlite"
    db.write_bytes(b"SQLite format 3\x00" + os.urandom(3000))  # a truncated, garbled database
    for args in (["results", "list"], ["leaderboard", "--env", faulty.BENCH]):
        code, _, err = _cli(["--results-db", str(db), *args], capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1 and str(db) in err and "mv " in err
    code, out, err = _cli(["--results-db", str(db), *_eval(tmp_path / "ev")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and str(db) in err
    assert json.loads((tmp_path / "ev" / "summary.json").read_text())["success_rate"] == 1.0


def test_garbled_record_is_one_line(tmp_path, capsys):
    db = tmp_path / "results.sqlite"
    ResultsStore(db)
    con = sqlite3.connect(db)
    con.execute("INSERT INTO results VALUES ('x','2026','eval','b','p','h','m',NULL,0,'c',0.5,1,'{not json')")
    con.commit()
    con.close()
    with pytest.raises(ResultsStoreError, match="damaged"):
        ResultsStore(db).query()
    code, _, err = _cli(["--results-db", str(db), "results", "list"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------ 6. bad invocations
def _bad_invocations(tmp: Path) -> list[list[str]]:
    garbage = tmp / "garbage.json"
    garbage.write_bytes(b"\x00\xff\xfe\x89garbage\x80")
    run = tmp / "garbage-run"
    run.mkdir()
    (run / "config.json").write_bytes(garbage.read_bytes())
    blocker = tmp / "a-file"
    blocker.write_text("x")
    damaged = tmp / "damaged.sqlite"
    damaged.write_bytes(b"not a database at all" * 100)
    train = ["run", "--learner", "grpo", "--env", "letters", "--out", str(tmp / "r")]
    ev = ["eval", "--agent", "random", "--env", faulty.BENCH, "--no-record"]
    return [
        [],  # no command
        ["frobnicate"],
        ["eval", "--agent", "randon", "--env", faulty.BENCH],
        [*ev, "--episodes", "-3"],
        [*ev, "--episodes", "0"],
        [*ev, "--episodes", "abc"],
        [*ev, "--max-steps", "0"],
        [*ev, "--workers", "-1"],
        [*ev, "--max-concurrent", "0"],
        [*ev, "--retries", "-1"],
        [*ev, "--agent-opt", "novalue"],
        [*ev, "--api-key", "k"],
        [*ev, "--out", str(blocker / "x")],
        [*ev, "--skills", str(tmp / "no-library")],
        ["eval", "--agent", "random", "--env", "alfworld-unsen"],
        ["eval", "--agent", "run:" + str(tmp / "no-run"), "--env", faulty.BENCH],
        [*train, "--set", "model.device=tpu9"],
        [*train, "--set", "optim.lr=inf"],
        [*train, "--set", "optim.lr=nan"],
        [*train, "--set", "optim.lrr=1e-5"],
        [*train, "--set", "steps=-1"],
        [*train, "--preset", "fast"],
        [*train, "--config", str(garbage)],
        [*train, "--config", str(tmp / "missing.json")],
        [*train, "--config", str(tmp)],
        ["run", "--learner", "nope", "--env", "letters"],
        ["run", "--learner", "grpo", "--env", faulty.BENCH],  # no training split
        ["resume", str(run)],
        ["resume", str(tmp / "nowhere")],
        ["report", str(tmp / "nowhere")],
        ["compare", str(tmp / "nowhere"), str(tmp / "nowhere2")],
        ["--results-db", str(damaged), "results", "list"],
        ["--results-db", str(damaged), "leaderboard"],
        ["--results-db", str(tmp / "none.sqlite"), "leaderboard"],
        ["leaderboard", "--env", "alfworld-unsen", "--results-db", str(damaged)],
        ["data", "download"],
        ["check-env", "no-such-env"],
        ["list", "things"],
    ]


def test_bad_invocations_are_one_line_exit_2_never_a_traceback(tmp_path, capsys):
    pytest.importorskip("transformers")
    from tests.support import letters

    letters.register()
    faulty.register()
    failures = []
    for args in _bad_invocations(tmp_path):
        code, out, err = _cli(args, capsys)
        lines = err.strip().splitlines()
        if code != 2 or len(lines) != 1 or "Traceback" in err or "episodes=" in out:
            failures.append(f"opid-bench {' '.join(args)} -> exit {code}, stderr: {err[-500:]!r}")
    assert not failures, "\n".join(failures)
    assert not (tmp_path / "r").exists()  # no run folder was started by a bad invocation


# ------------------------------------------------------------------ 7. provenance
def test_record_keeps_the_command_as_typed(tmp_path, capsys):
    faulty.register()
    sys_argv = sys.argv[:]
    try:
        assert _cli(_eval(None, "--episodes", "1"), capsys)[0] == 0
    finally:
        sys.argv = sys_argv
    (record,) = ResultsStore(os.environ["OPID_GYM_RESULTS"]).query()
    assert record.command.startswith("opid-bench eval --agent expert --env faulty-doors")


def test_the_command_line_is_captured_before_libraries_rewrite_sys_argv(monkeypatch):
    """TextWorld's planner sets ``sys.argv = ['translate.py', domain, task]`` mid-command."""
    from opid_gym import results

    monkeypatch.setattr(results, "_COMMAND_LINE", None)
    monkeypatch.setattr(sys, "argv", ["opid-bench", "eval", "--agent", "expert"])
    results.set_command_line(sys.argv)
    sys.argv[:] = ["translate.py", "domain.pddl", "task.pddl"]
    assert results.command_line() == "opid-bench eval --agent expert"
    assert new_record(kind="eval", benchmark="b", protocol_id="p", protocol_hash="h", model="m", agent="a",
                      learner=None, seed=0, config_hash="c", metrics={}, per_type={}, episodes=0, errors=0,
                      cost={}).command == "opid-bench eval --agent expert"


# ------------------------------------------------------ 9. check-env, by package folders
def test_check_env_classifies_warnings_by_package_folder_not_by_name():
    """A checkout in a folder named ``opid-gym`` with its venv inside: TextWorld's warnings
    are not ours; a warning from the project's packages is."""
    from opid_gym.checker import is_own_file, project_dirs

    checkout = Path("/home/me/opid-gym")
    own = [checkout / p for p in ("opid_gym", "environments", "agents", "learners", "benchmarks")]
    venv_file = checkout / ".venv/lib/python3.11/site-packages/textworld/envs/pddl/pddl.py"
    assert not is_own_file(str(venv_file), own)
    assert not is_own_file("/home/me/opid-gym/opid_gym_extra/x.py", own)  # a sibling, not inside
    assert is_own_file("/home/me/opid-gym/environments/alfworld/env.py", own)
    assert is_own_file("/home/me/opid-gym/opid_gym/env.py", own)
    here = project_dirs()
    assert ROOT / "opid_gym" in here and ROOT / "environments" in here
    assert is_own_file(str(ROOT / "opid_gym" / "checker.py"), here)


# ------------------------------------------------------ 11. the WebShop missing-data message
def test_webshop_missing_data_names_the_folder_searched(tmp_path):
    from environments.webshop.catalogue import find_catalogue_files
    from opid_gym.data import DataNotFoundError

    (tmp_path / "webshop").mkdir()
    with pytest.raises(DataNotFoundError) as info:
        find_catalogue_files(tmp_path)
    first = str(info.value).splitlines()[0]
    assert f"under {tmp_path / 'webshop'} " in first
    assert "holds 'webshop/'" in str(info.value)
