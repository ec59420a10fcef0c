"""``opid-bench report``: a self-contained page whose plots and trajectory viewer work."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest

from benchmarks.report import build_report, write_report
from benchmarks.runfolder import RunFolderError, load_run
from opid_gym.cli import main
from tests.browser import dump_dom, needs_chromium, png_size, screenshot
from tests.runfolders import (
    build_run_dir, real_trajectories, skill_adv, tokens_of, toy_trajectories, write_eval_folder,
)
from tests.test_leaderboard import _check_pixels, _keep


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    """A run folder of toy-env trajectories (fast)."""
    return build_run_dir(tmp_path, toy_trajectories(tmp_path))


@pytest.fixture()
def alfworld_run_dir(alfworld_data: Path, tmp_path: Path) -> Path:
    """A run folder of real ALFWorld trajectories (~10-15 s to play the two games)."""
    return build_run_dir(tmp_path, real_trajectories(alfworld_data))


def _viewer_data(page: str) -> list[dict]:
    m = re.search(r'<script type="application/json" id="viewer-data">(.*?)</script>', page, re.S)
    assert m
    return json.loads(m.group(1))


def test_run_folder_reader(run_dir):
    run = load_run(run_dir)
    assert [r["step"] for r in run.metrics] == [1, 2, 3, 4]  # the torn last line is skipped
    assert list(run.evals) == ["step_000002", "final"]
    assert run.main_eval().tag == "final" and run.main_eval("step_000002").step == 2
    assert [s for s, _ in run.rollouts] == [1, 4]
    with pytest.raises(RunFolderError, match="no eval tagged"):
        run.main_eval("step_000009")


def test_report_content(run_dir):
    page = build_report(run_dir)
    # self-contained: no external scripts, styles, images or fonts
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:)?//', page)
    assert "@import" not in page and not re.search(r"url\((?!#)", page)  # only in-page references
    ids = re.findall(r'\sid="([^"]+)"', page)
    assert len(ids) == len(set(ids))  # the inline SVGs do not clash
    for title in ("Success rate", "Episode length", "Invalid-action rate", "Loss terms", "Skill advantage",
                  "Optimisation", "Time per phase"):
        assert f'data-title="{title}"' in page
    for key in ("rollout/success_rate", "loss/policy", "loss/kl", "opid/skill_adv_mean", "eval success"):
        assert key in page  # legends are SVG text
    assert 'id="type-bars"' in page and re.search(r">(even|odd)<", page)
    data = _viewer_data(page)
    assert [s["name"] for s in data] == ["eval: final", "eval: step_000002", "rollouts: step 1", "rollouts: step 4"]
    rollout = data[2]["trajs"][0]
    assert rollout["won"] and len(rollout["steps"]) >= 2
    step = rollout["steps"][1]
    assert "".join(step["ann"]["response_tokens"]) == step["response"]
    assert step["ann"]["skill_adv"] == skill_adv(len(tokens_of(step["response"])), 1)
    assert step["ann"]["routed_skill"].startswith("step skill #1")
    assert "Your task is to" in step["prompt"] and step["obs"]
    assert "</script" not in page.split('id="viewer-data">', 1)[1].split("</script>", 1)[0]


def test_report_of_an_eval_folder_and_errors(tmp_path, capsys):
    ev = write_eval_folder(tmp_path / "ev", toy_trajectories(tmp_path))
    assert main(["report", str(ev)]) == 0
    page = (ev / "report.html").read_text()
    assert "No metrics.jsonl" in page and [s["name"] for s in _viewer_data(page)] == ["eval: eval"]
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "neither a run folder" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing")]) == 2


def _check_rollout_step_view(page: Path, data: list[dict], profile: Path) -> None:
    """``#src=2&traj=0&step=1`` shows that step: action, routed skill, one heat-map span per token."""
    traj = data[2]["trajs"][0]
    step = traj["steps"][1]
    dom = dump_dom(page, "src=2&traj=0&step=1", profile=profile)
    status = html.unescape(re.search(r'<p id="viewer-status">(.*?)</p>', dom).group(1))
    assert status.startswith(f'viewer ok: source "rollouts: step 1", trajectory {traj["id"]}, '
                             f'step 2 of {len(traj["steps"])}')
    assert f'<code id="v-action">{html.escape(step["action"])}</code>' in dom
    assert f'id="v-skill">{html.escape(step["ann"]["routed_skill"])}</span>' in dom
    advs = [float(x) for x in re.findall(r'class="tok" data-adv="([-0-9.]+)"', dom)]
    assert advs == pytest.approx(step["ann"]["skill_adv"], abs=1e-4)
    assert f"heat-map tokens: {len(step['ann']['response_tokens'])}" in status
    assert html.escape(step["obs"]) in dom
    assert len(re.findall(r'<li class="[^"]*\bcurrent\b', dom)) == 1


@needs_chromium
def test_report_viewer_in_chromium_fast(run_dir, tmp_path):
    page = write_report(run_dir, tmp_path / "report.html")
    _check_rollout_step_view(page, _viewer_data(page.read_text()), tmp_path / "profile")


@pytest.mark.slow
@needs_chromium
def test_report_renders_and_viewer_works_in_chromium(alfworld_run_dir, tmp_path):
    """Acceptance: the report of a run folder with real ALFWorld trajectories renders in headless
    Chromium, and its viewer shows the step the URL asks for, with the skill heat map."""
    page = write_report(alfworld_run_dir, tmp_path / "report.html")
    data = _viewer_data(page.read_text())
    profile = tmp_path / "profile"

    # 1. default view: the first source, first trajectory, first step
    dom = dump_dom(page, profile=profile)
    assert 'data-state="ready"' in dom
    assert 'viewer ok: source "eval: final"' in dom and "step 1 of" in dom
    assert len(re.findall(r"<svg", dom)) >= 8  # 7 curves + the type bars

    # 2. a rollout step picked by the URL fragment: the step's action, skill and per-token heat map
    _check_rollout_step_view(page, data, profile)

    # 3. out-of-range requests are clamped, not crashes
    dom = dump_dom(page, "src=3&traj=1&step=99", profile=profile)
    last = data[3]["trajs"][1]
    assert f'trajectory {last["id"]}, step {len(last["steps"])} of {len(last["steps"])}' in dom

    shot = screenshot(page, tmp_path / "report.png", "src=2&traj=0&step=1", profile=profile, size="1400,3000")
    assert png_size(shot) == (1400, 3000)
    _check_pixels(shot, {"header": (0x1F, 0x3B, 0x66), "current step": (0xDB, 0xE6, 0xFB),
                         "routed skill badge": (0xEF, 0xE3, 0xFB), "valid badge": (0xDF, 0xF3, 0xE4)})
    _keep(shot)
