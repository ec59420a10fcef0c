"""Experiments: files, the grid, training-data fractions, kill and resume, paired statistics, the page.

The end-to-end test runs a small grid on the in-test ``letters`` benchmark (tiny model,
smoke preset, 2 steps): it kills the experiment mid-grid, reruns it, and checks that
finished cells were not trained again; the page of that experiment is then opened in
headless Chromium.
"""

from __future__ import annotations

import html
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks.experiment import (
    ExperimentError, cell_config, load_experiment, parse_experiment, shipped_names, status_lines, store_records,
)
from benchmarks.experiment_report import (
    MAX_SERIES, CellResult, build_experiment_report, chunks, method_rows, paired_bootstrap, paired_rows,
    write_experiment_report,
)
from benchmarks.runfolder import RunFolder
from opid_gym.cli import main
from opid_gym.train import training_subset
from tests.browser import _run, needs_chromium
from tests.support import experiment_cli

ROOT = Path(__file__).resolve().parents[1]
DELAY = "0.25"

GRID = """
description = "letters grid (tests)"
benchmark = "letters"
preset = "smoke"
learners = ["grpo", "opid"]
seeds = [0, 1]
fractions = [0.5, 1.0]
baseline = "grpo"
figures = ["curves", "data-fraction", "task-types"]
tables = ["methods", "paired"]

[budget]
steps = 2

[set]
"rollout.max_new_tokens" = 8
"eval.limit" = 3

[learner_set.opid]
analyzer = "hindsight-rules"
"""


@pytest.fixture(autouse=True)
def _letters(monkeypatch):
    monkeypatch.setenv("OPID_TEST_LETTERS_DELAY", DELAY)
    experiment_cli.register()
    yield
    from benchmarks import experiment

    experiment.CELL_MODULE = "opid_gym"


# ----------------------------------------------------------------- data fraction
def test_training_subset_is_seeded_nested_and_learner_free():
    full = training_subset(100, 1.0, 3)
    assert full == list(range(100))
    a = training_subset(100, 0.2, 3)
    assert len(a) == 20 and a == sorted(a) and a == training_subset(100, 0.2, 3)  # a pure function
    assert set(a) <= set(training_subset(100, 0.6, 3))  # nested across fractions
    assert a != training_subset(100, 0.2, 4)  # another seed, another subset
    assert training_subset(3, 0.01, 0) and len(training_subset(3, 0.01, 0)) == 1  # never empty
    with pytest.raises(ValueError):
        training_subset(10, 0.0, 0)


def test_train_fraction_is_checked_and_part_of_the_config(tmp_path, capsys):
    from opid_gym.config import ConfigError, config_to_dict, resolve_config

    cfg = resolve_config("grpo", "letters", preset="smoke", set_items=["env.train_fraction=0.5"])
    assert config_to_dict(cfg)["env"]["train_fraction"] == 0.5
    with pytest.raises(ConfigError, match="train_fraction"):
        resolve_config("grpo", "letters", preset="smoke", set_items=["env.train_fraction=1.5"])


# ------------------------------------------------------------------------- files
def test_shipped_experiments_have_cpu_twins_that_resolve():
    names = shipped_names()
    expected = {"paper-table1-alfworld", "paper-table1-webshop", "paper-table1-searchqa",
                "paper-fig4-data-efficiency", "paper-table2-hierarchy", "paper-table3-routing"}
    assert expected | {f"{n}-cpu" for n in expected} <= set(names)
    for name in expected:
        gpu, cpu = load_experiment(name), load_experiment(f"{name}-cpu")
        assert gpu.gpu and not cpu.gpu and gpu.twin == cpu.name and cpu.twin == gpu.name
        assert gpu.steps == 150 and gpu.model == "Qwen/Qwen2.5-3B-Instruct" and len(gpu.seeds) >= 3
        # the twin runs the same grid shape and draws the same page, on the tiny model for 2 steps
        assert [m.key for m in cpu.methods] == [m.key for m in gpu.methods]
        assert (cpu.benchmark, cpu.figures, cpu.tables, cpu.baseline) == \
               (gpu.benchmark, gpu.figures, gpu.tables, gpu.baseline)
        assert set(cpu.fractions) <= set(gpu.fractions) and (len(cpu.fractions) > 1) == (len(gpu.fractions) > 1)
        assert cpu.steps is not None and cpu.steps <= 3 and len(cpu.seeds) >= 2
        for cell in cpu.cells():
            cfg = cell_config(cpu, cell)
            assert cfg.model.name == "tiny" and cfg.steps == cpu.steps and cfg.seed == cell.seed
            assert cfg.experiment == f"{cpu.name}/{cell.id}" and cfg.env.train_fraction == cell.fraction
    ablation = load_experiment("paper-table2-hierarchy-cpu")
    cfgs = {c.id: cell_config(ablation, c) for c in ablation.cells() if c.seed == 0}
    assert cfgs["opid-no-episode-skills-s0"].learner.episode_skill_weight == 0.0
    assert cfgs["opid-no-step-skills-s0"].learner.route == "episode_only"
    assert cfgs["opid-s0"].learner.route == "critical_first" and cfgs["opid-s0"].learner.episode_skill_weight > 0


def test_bad_experiment_files_fail_in_one_line_before_any_work(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(GRID.replace("seeds =", "sedes ="))
    assert main(["experiment", "run", str(bad), "--root", str(tmp_path / "runs")]) == 2
    assert "unknown key 'sedes'" in capsys.readouterr().err
    bad.write_text(GRID.replace('baseline = "grpo"', 'baseline = "sdar"'))
    assert main(["experiment", "status", str(bad)]) == 2
    assert "baseline 'sdar' is not a method" in capsys.readouterr().err
    bad.write_text(GRID.replace('"eval.limit" = 3', '"eval.limt" = 3'))
    assert main(["experiment", "run", str(bad), "--root", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'eval.limt'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()  # nothing was started
    assert main(["experiment", "run", "paper-table1-alfwrld"]) == 2
    assert "Did you mean: `paper-table1-alfworld`" in capsys.readouterr().err


# --------------------------------------------------------------- paired statistics
def test_paired_bootstrap_pairs_tasks_and_seeds():
    a = np.array([1.0, 0, 1, 0, 1, 0, 1, 0])
    same = paired_bootstrap([(a, a.copy(), ["x"] * 8)] * 2, by_types=False, resamples=400)
    assert same == (0.0, 0.0, 0.0)  # identical per-task outcomes: a difference of exactly 0, no spread
    b = np.ones(8)
    d, lo, hi = paired_bootstrap([(a, b, ["x"] * 8)], by_types=False, resamples=400)
    assert d == pytest.approx(50.0) and lo < 50.0 < hi and 0 <= lo and hi <= 100
    # by types: the mean of per-type differences (type y has 2 episodes, type x 6)
    types = ["x"] * 6 + ["y"] * 2
    a2, b2 = np.zeros(8), np.array([0, 0, 0, 0, 0, 0, 1, 1.0])
    assert paired_bootstrap([(a2, b2, types)], by_types=True, resamples=400)[0] == pytest.approx(50.0)
    assert paired_bootstrap([(a2, b2, types)], by_types=False, resamples=400)[0] == pytest.approx(25.0)


def _fake(exp, key, fraction, seed, success, steps, tokens=1000, wins=None):
    cell = next(c for c in exp.cells() if c.method.key == key and c.fraction == fraction and c.seed == seed)
    run = RunFolder(Path("."), None, [], None, {})
    wins = wins if wins is not None else [1] * round(4 * success) + [0] * (4 - round(4 * success))
    eps = [{"task_id": f"t{i}", "task_type": "x", "won": bool(w)} for i, w in enumerate(wins)]
    return CellResult(cell, run, success, {"x": success},
                      {"steps": steps, "tokens_generated": tokens, "env_steps": 10}, eps, "tiny")


def test_unequal_budgets_are_flagged_and_never_paired():
    exp = parse_experiment({**_grid(), "fractions": [1.0]}, "t")
    results = [_fake(exp, "grpo", 1.0, 0, 0.25, 2), _fake(exp, "grpo", 1.0, 1, 0.5, 2),
               _fake(exp, "opid", 1.0, 0, 0.75, 2, tokens=2000), _fake(exp, "opid", 1.0, 1, 1.0, 3)]
    rows = {r.method.key: r for r in method_rows(exp, results)}
    assert rows["grpo"].flags == []
    flags = " | ".join(rows["opid"].flags)
    assert "trained [2, 3] steps, not the declared 2" in flags and "tokens +" in flags
    (paired,) = paired_rows(exp, results)
    assert paired.seeds == [0] and "seeds [1] left out: unequal training budget" in paired.note
    assert paired.diff == pytest.approx(50.0) and paired.t_low is None  # one pair: no t interval invented
    assert paired.boot_low is not None and paired.boot_low <= 50.0 <= paired.boot_high


def test_charts_never_hold_more_than_max_series():
    assert all(len(c) <= MAX_SERIES for c in chunks(list(range(25))))
    assert sum(chunks(list(range(25))), []) == list(range(25))
    from benchmarks.report import curve_groups

    metrics = [{"step": 1, **{f"opid/metric_{i}_frac": 0.1 for i in range(10)},
                **{f"opid/count_{i}": 1.0 for i in range(12)}, "opid/skill_adv_mean": 0.1,
                "opid/teacher_seconds": 1.0, "rollout/success_rate": 0.5}]
    groups = curve_groups(metrics)
    assert all(len(keys) <= MAX_SERIES for _, _, keys in groups)
    shown = [k for _, _, keys in groups for k in keys]
    assert sorted(k for k in shown if k.startswith("opid/")) == sorted(k for k in metrics[0] if k.startswith("opid/"))
    titles = [t for t, _, keys in groups if keys and keys[0].startswith("opid/")]
    assert "Skill advantage: fractions 1/2" in titles and "Skill advantage: seconds" in titles


def _grid() -> dict:
    import tomllib

    return tomllib.loads(GRID)


# -------------------------------------------------------------- run, kill, resume
def _cli(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "OPID_TEST_LETTERS_DELAY": DELAY}
    return subprocess.Popen([sys.executable, "-m", "tests.support.experiment_cli", *args], cwd=ROOT, env=env,
                            start_new_session=True, **kw)


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory):
    """The letters grid killed (SIGKILL to the whole process group) while its second cell
    trains, then run again to the end."""
    os.environ["OPID_TEST_LETTERS_DELAY"] = DELAY
    experiment_cli.register()
    tmp = tmp_path_factory.mktemp("experiment")
    spec = tmp / "letters-grid.toml"
    spec.write_text(GRID)
    db = tmp / "results.sqlite"
    root = tmp / "runs"
    folder = root / "letters-grid"
    common = ["--results-db", str(db), "experiment", "run", str(spec), "--root", str(root)]
    proc = _cli(*common, "--jobs", "1", stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    first, second = folder / "grpo-f050-s0", folder / "grpo-f050-s1"
    deadline = time.monotonic() + 400
    while not ((first / "summary.json").exists() and (second / "checkpoints" / "step_000001" / "meta.json").exists()):
        assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
        assert time.monotonic() < deadline, "the second cell made no checkpoint within 400 s"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    before = {"summary": (first / "summary.json").read_bytes(), "mtime": (first / "summary.json").stat().st_mtime_ns}
    killed_state = {"second_done": (second / "summary.json").exists()}
    start = time.perf_counter()
    rerun = _cli(*common, "--jobs", "2", stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = rerun.communicate(timeout=900)
    return {"tmp": tmp, "spec": spec, "db": db, "root": root, "folder": folder, "first": first, "second": second,
            "before": before, "killed": killed_state, "rerun_code": rerun.returncode, "rerun_out": out.decode(),
            "rerun_seconds": time.perf_counter() - start}


@pytest.mark.slow
def test_killed_experiment_resumes_without_redoing_finished_cells(killed_and_resumed, capsys):
    r = killed_and_resumed
    assert r["rerun_code"] == 0, r["rerun_out"][-3000:]
    assert not r["killed"]["second_done"]  # the kill landed mid-cell
    out = r["rerun_out"]
    assert "8 cells, 1 finished (skipped), 7 to run" in out
    assert "start grpo-f050-s0" not in out and "start grpo-f050-s1 (resume)" in out
    # the finished cell was not touched; its log shows one run
    assert (r["first"] / "summary.json").read_bytes() == r["before"]["summary"]
    assert (r["first"] / "summary.json").stat().st_mtime_ns == r["before"]["mtime"]
    logs = r["folder"] / "logs"
    assert (logs / "grpo-f050-s0.log").read_text().count("\n### ") == 1
    assert re.findall(r"### \S+ \S+ (\w+):", (logs / "grpo-f050-s1.log").read_text()) == ["run", "resume"]
    # the resumed cell trained each step once
    steps = [json.loads(line)["step"] for line in (r["second"] / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2]
    # every cell is in the results store under the experiment, each once
    exp = load_experiment(r["spec"])
    records = store_records(exp, str(r["db"]))
    assert sorted(records) == sorted(c.id for c in exp.cells())
    from opid_gym.results import ResultsStore

    assert len(ResultsStore(r["db"]).query(kind="run")) == 8
    # a data-fraction cell trained only on its seeded half of the six training tasks
    cfg = json.loads((r["first"] / "config.json").read_text())
    assert cfg["env"]["train_fraction"] == 0.5 and cfg["experiment"] == "letters-grid/grpo-f050-s0"
    subset = {f"train-{i}" for i in training_subset(6, 0.5, 0)}
    seen = {json.loads(line)["task_id"] for f in (r["first"] / "rollouts").glob("*.jsonl")
            for line in f.read_text().splitlines()}
    assert seen and seen <= subset
    assert json.loads((r["first"] / "summary.json").read_text())["budget"]["train_tasks"] == 3
    # status: everything done; a third run does nothing
    assert main(["--results-db", str(r["db"]), "experiment", "status", str(r["spec"]), "--root", str(r["root"])]) == 0
    status = capsys.readouterr().out
    assert "8/8 done, 0 partial, 0 pending" in status and status.count("recorded ") == 8
    assert main(["experiment", "run", str(r["spec"]), "--root", str(r["root"])]) == 0
    assert "8 cells, 8 finished (skipped), 0 to run" in capsys.readouterr().err


@pytest.mark.slow
def test_leaderboard_and_compare_show_the_data_fraction(killed_and_resumed, capsys):
    r = killed_and_resumed
    assert main(["--results-db", str(r["db"]), "leaderboard", "--env", "letters", "--references", "none"]) == 0
    board = capsys.readouterr().out
    assert "grpo (50% data)" in board and "opid (50% data)" in board
    assert re.search(r"\bgrpo\s", board)  # the full-data rows stay apart
    assert main(["compare", str(r["folder"] / "grpo-f050-s0"), str(r["folder"] / "grpo-s0")]) == 0
    text = capsys.readouterr().out
    assert "trained on 50% of the training tasks" in text and "trained on 100% of the training tasks" in text
    assert "different shares of the training data" in text


@pytest.mark.slow
@needs_chromium
def test_experiment_page_in_chromium(killed_and_resumed, tmp_path):
    r = killed_and_resumed
    exp = load_experiment(r["spec"])
    page = write_experiment_report(exp, r["root"], tmp_path / "exp.html", results_db=str(r["db"]))
    text = page.read_text()
    # self-contained: no external resources
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:)?//', text) and "@import" not in text
    ids = re.findall(r'\sid="([^"]+)"', text)
    assert len(ids) == len(set(ids))
    for fig in ("curves", "data-fraction", "task-types"):
        assert f'data-figure="{fig}"' in text
    assert 'id="methods-table"' in text and 'id="paired-table"' in text
    # every legend holds at most MAX_SERIES entries, and at least one method per chart
    svgs = re.findall(r"<svg.*?</svg>", text, re.S)
    assert len(svgs) >= 4  # success and length curves, data fraction, task types (+ more when split)
    for svg in svgs:  # the legend is the axes' last artist: its entries are the texts after it
        assert 'legend_1"' in svg and 1 <= svg.split('legend_1"', 1)[1].count("<text") <= MAX_SERIES
    proc = _run(page.resolve().as_uri(), tmp_path / "profile",
                ["--virtual-time-budget=5000", "--enable-logging=stderr", "--v=0", "--dump-dom"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    console = [line for line in proc.stderr.splitlines() if "CONSOLE" in line]
    assert not console, console  # no console errors (nor any console output)
    status = html.unescape(re.search(r'<p id="experiment-status">(.*?)</p>', dom).group(1))
    assert status.startswith("figures ok: 3 figures") and 'data-state="ready"' in dom
    # the two learners, both data shares, and the published numbers marked as not comparable
    for label in ("grpo", "opid"):
        assert f"<td>{label}</td>" in dom
    assert "50%" in dom and "100%" in dom


@pytest.mark.slow
@needs_chromium
def test_console_errors_would_be_caught(tmp_path):
    """The console check above can fail: a page whose script throws shows up on stderr."""
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><script>null.x = 1;</script></body></html>")
    proc = _run(page.resolve().as_uri(), tmp_path / "profile",
                ["--virtual-time-budget=2000", "--enable-logging=stderr", "--v=0", "--dump-dom"])
    assert any("CONSOLE" in line and "Uncaught" in line for line in proc.stderr.splitlines()), proc.stderr[-2000:]


def test_a_cell_folder_of_another_config_is_refused(tmp_path, capsys):
    from opid_gym.config import config_to_dict

    spec = tmp_path / "g.toml"
    spec.write_text(GRID)
    exp = load_experiment(spec)
    cell = exp.cells()[0]
    folder = tmp_path / "runs" / exp.name / cell.id
    folder.mkdir(parents=True)
    cfg = config_to_dict(cell_config(exp, cell))
    cfg["optim"]["lr"] = 0.5  # the file said something else when this cell ran
    (folder / "config.json").write_text(json.dumps(cfg))
    assert main(["experiment", "run", str(spec), "--root", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert f"cell {cell.id}" in err and "differs in optim.lr" in err and "rename it or remove" in err
    assert not (tmp_path / "runs" / exp.name / "logs").exists()  # nothing started
    assert status_lines(exp, tmp_path / "runs")[-1] == "0/8 done, 1 partial, 7 pending"


def test_report_of_an_unstarted_experiment_says_so(tmp_path):
    spec = tmp_path / "g.toml"
    spec.write_text(GRID)
    exp = load_experiment(spec)
    page = build_experiment_report(exp, tmp_path / "runs")
    assert page.count("No finished cells to draw.") == 3 and "0/8 cells done" in page
    assert status_lines(exp, tmp_path / "runs")[-1] == "0/8 done, 0 partial, 8 pending"


def test_leaderboard_keeps_data_fractions_in_separate_rows():
    from benchmarks.leaderboard import build_leaderboard, render
    from tests.test_leaderboard import rec

    def at(fraction, r):
        r.config = {"env": {"train_fraction": fraction}}
        return r

    records = [at(1.0, rec(0, 0.8)), at(1.0, rec(1, 0.6)), at(0.2, rec(0, 0.1)), at(0.2, rec(1, 0.3)),
               rec(2, 0.7)]  # a record from before the key counts as all the data
    board = build_leaderboard(records, "alfworld-unseen", references="none")
    rows = {e.label: e for e in board.entries}
    assert set(rows) == {"grpo", "grpo (20% data)"}
    assert rows["grpo"].seeds == [0, 1, 2] and rows["grpo (20% data)"].success.mean == pytest.approx(20.0)
    assert "grpo (20% data)" in render(board, "table") and "grpo (20% data)" in render(board, "csv")
