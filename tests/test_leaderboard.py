"""The leaderboard: grouping, seed CIs, protocol refusal, paper rows, formats, HTML in Chromium."""

from __future__ import annotations

import csv
import io
import math
import os
import re
import shutil
from pathlib import Path

import pytest

from benchmarks.leaderboard import build_leaderboard, load_references, reference_rows, render
from benchmarks.protocols import ProtocolMismatchError
from opid_gym.cli import main
from opid_gym.results import Cost, ResultsStore, new_record
from tests.browser import dump_dom, needs_chromium, png_size, screenshot

_SPEC_CANDIDATES = [Path(__file__).resolve().parents[2] / "shared" / "spec" / "reference-results.md"]
if os.environ.get("OPID_GYM_DATA"):  # ../shared/data -> ../shared/spec
    _SPEC_CANDIDATES.append(Path(os.environ["OPID_GYM_DATA"]).resolve().parent / "spec" / "reference-results.md")
SPEC = next((p for p in _SPEC_CANDIDATES if p.is_file()), _SPEC_CANDIDATES[0])


def rec(seed, success, *, learner="grpo", model="tiny", phash="aaaa11112222", bench="alfworld-unseen",
        created=None, score=None, steps=10, tokens=1000, kind="run"):
    metrics = {"success_rate": success, "mean_length": 12.0, "invalid_rate": 0.1, "mean_reward": 10 * success}
    if score is not None:
        metrics["score"] = score
    r = new_record(kind=kind, benchmark=bench, protocol_id=f"{bench}@v1", protocol_hash=phash, model=model,
                   agent=f"hf:{model}", learner=learner, seed=seed, config_hash="c", metrics=metrics,
                   per_type={"pick": {"episodes": 4, "successes": 2, "errors": 0, "success_rate": success},
                             "look": {"episodes": 2, "successes": 1, "errors": 0, "success_rate": success / 2}},
                   episodes=6, errors=0, cost=Cost(3600.0, "gpu", 2, tokens, 0).to_dict(),
                   budget={"train_steps": steps, "train_tokens": tokens, "train_env_steps": 0})
    if created:
        r.created = created
    return r


def test_groups_means_and_t_intervals():
    records = [rec(0, 0.5), rec(1, 0.6), rec(2, 0.7), rec(0, 0.9, learner="opid"),
               rec(0, 0.2, learner=None, kind="eval", steps=0)]
    board = build_leaderboard(records, "alfworld-unseen", references="none")
    assert [(e.learner, e.n) for e in board.entries] == [("opid", 1), ("grpo", 3), (None, 1)]
    grpo = board.entries[1]
    assert grpo.success.mean == pytest.approx(60.0)
    assert grpo.success.half_width == pytest.approx(4.302653 * 10 / math.sqrt(3), rel=1e-5)
    assert grpo.per_type == {"look": pytest.approx(30.0), "pick": pytest.approx(60.0)}
    assert grpo.device_hours == pytest.approx(6.0) and grpo.train_steps == 10
    opid = board.entries[0]
    assert opid.success.low is None  # one seed: no interval is invented
    text = render(board, "table")
    assert "n=1, no CI" in text and "60.0 ± 24.8" in text and "[35.2, 84.8]" in text


def test_interval_is_clipped_to_percent_range():
    (entry,) = build_leaderboard([rec(0, 0.80), rec(1, 0.84)], "alfworld-unseen", references="none").entries
    # s = 2.828, t(1) = 12.706: 82 +- 25.4 -> [56.6, 107.4], clipped to [56.6, 100]
    assert entry.success.low == pytest.approx(82 - 12.7062 * 2.8284 / math.sqrt(2), abs=1e-2)
    assert entry.success.high == 100.0
    assert "82.0 ± 25.4" in render(build_leaderboard([rec(0, 0.80), rec(1, 0.84)], "alfworld-unseen"), "table")


def test_latest_record_of_a_seed_wins():
    records = [rec(0, 0.1, created="2026-01-01T00:00:00+00:00"), rec(0, 0.4, created="2026-01-02T00:00:00+00:00"),
               rec(1, 0.6, created="2026-01-01T12:00:00+00:00")]
    (entry,) = build_leaderboard(records, "alfworld-unseen", references="none").entries
    assert entry.seeds == [0, 1] and entry.success.mean == pytest.approx(50.0)


def test_mixed_protocols_are_refused_unless_asked():
    records = [rec(0, 0.5), rec(1, 0.6), rec(0, 0.9, phash="bbbb33334444")]
    with pytest.raises(ProtocolMismatchError, match="aaaa11112222.*bbbb33334444"):
        build_leaderboard(records, "alfworld-unseen")
    only_b = build_leaderboard(records, "alfworld-unseen", protocol_hash="bbbb")
    assert [e.protocol_hash for e in only_b.entries] == ["bbbb33334444"]
    mixed = build_leaderboard(records, "alfworld-unseen", allow_mixed=True, references="none")
    assert sorted(e.protocol_hash for e in mixed.entries) == ["aaaa11112222", "bbbb33334444"]
    assert any("different protocols" in n for n in mixed.notes)
    assert "bbbb33334444" in render(mixed, "table")


def test_reference_rows_are_labelled_published():
    board = build_leaderboard([rec(0, 0.5)], "alfworld-unseen")
    labels = {r.label for r in board.references}
    assert "published (OPID paper, Table 1)" in labels
    assert all(l.startswith("published") for l in labels)
    first = board.references[0]  # the unseen-split figures come first on the unseen benchmark
    assert first.label == "published (OPID paper, unseen-split figure)" and first.values["success_rate"] == 78.6
    t1 = [r for r in board.references if r.label.endswith("Table 1)")]
    assert any(r.model == "Qwen2.5-3B-Instruct" and r.learner == "opid" and r.values["success_rate"] == 84.3
               for r in t1)
    assert all("not an unseen-split figure" in r.note for r in t1)
    md = render(board, "md")
    assert "| published (OPID paper, Table 1) |" in md and "measured" in md


def test_webshop_reference_maps_score_and_success():
    rows = reference_rows("webshop")
    opid3b = next(r for r in rows if r.learner == "opid" and r.model == "Qwen2.5-3B-Instruct")
    assert opid3b.values == {"success_rate": 74.2, "score": 85.0}
    board = build_leaderboard([rec(0, 0.5, bench="webshop", score=0.61), rec(1, 0.7, bench="webshop", score=0.71)],
                              "webshop")
    assert board.extra_metrics == ["score"]
    assert board.entries[0].extra["score"].mean == pytest.approx(66.0)
    assert reference_rows("searchqa-nq") == []  # no per-data-set numbers are published in the spec


def test_csv_is_machine_readable():
    board = build_leaderboard([rec(0, 0.5), rec(1, 0.7)], "alfworld-unseen")
    rows = list(csv.DictReader(io.StringIO(render(board, "csv"))))
    measured = [r for r in rows if r["source"] == "measured"]
    assert len(measured) == 1 and float(measured[0]["success_mean"]) == pytest.approx(60.0)
    assert float(measured[0]["success_low"]) < 60 < float(measured[0]["success_high"])
    assert measured[0]["seeds"] == "2" and measured[0]["protocol_hash"] == "aaaa11112222"
    assert any(r["source"].startswith("published") and r["success_mean"] == "84.3" for r in rows)


@pytest.mark.skipif(not SPEC.is_file(), reason=f"spec file not found at {SPEC}")
def test_reference_file_matches_the_spec_table():
    """Every Table 1 cell of reference-results.md is in our package-data file, and vice versa."""
    cols = ["alfworld", "search_avg", "webshop_score", "webshop_success"]
    spec = {}
    for line in SPEC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and re.fullmatch(r"\d+\.\d", cells[2]):
            spec[(cells[0], cells[1])] = dict(zip(cols, map(float, cells[2:])))
    ours = {(r["model"], r["method"]): r["values"] for r in load_references()["rows"] if r["source"] == "opid-table1"}
    assert len(spec) == 11 and ours == spec


def _db(tmp_path: Path) -> Path:
    db = tmp_path / "r.sqlite"
    store = ResultsStore(db)
    for r in [rec(0, 0.5), rec(1, 0.6), rec(2, 0.7), rec(0, 0.8, learner="opid"), rec(1, 0.84, learner="opid")]:
        store.append(r)
    return db


def test_cli_leaderboard(tmp_path, capsys):
    db = _db(tmp_path)
    assert main(["leaderboard", "--env", "alfworld-unseen", "--results-db", str(db)]) == 0
    out = capsys.readouterr().out
    assert out.index("opid") < out.index("grpo") < out.index("published (OPID paper")
    assert main(["leaderboard", "--env", "alfworld-unseen", "--results-db", str(db), "--format", "csv",
                 "--references", "none"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 3
    ResultsStore(db).append(rec(0, 0.1, phash="ffff00001111"))
    # several protocols: the official one (here: the newest hash of the full split) is ranked,
    # the others are listed below it with how to view them (issue 17, item 10)
    assert main(["leaderboard", "--env", "alfworld-unseen", "--results-db", str(db)]) == 0
    out = capsys.readouterr().out
    table, others = out.split("other protocols of alfworld-unseen")
    assert "#ffff00001111" in table and "#aaaa11112222" not in table
    assert "--protocol aaaa11112222" in others and "--allow-mixed" in others
    assert main(["leaderboard", "--env", "alfworld-unseen", "--results-db", str(db), "--allow-mixed"]) == 0
    assert main(["leaderboard", "--env", "alfworld-unseen", "--results-db", str(tmp_path / "none.sqlite")]) == 2
    assert "no results database" in capsys.readouterr().err
    assert main(["leaderboard", "--env", "alfworld-unssen", "--results-db", str(db)]) == 2
    assert "did you mean" in capsys.readouterr().err.lower()


@needs_chromium
def test_html_leaderboard_renders_in_chromium(tmp_path):
    db = _db(tmp_path)
    page = tmp_path / "board.html"
    assert main(["leaderboard", "--env", "alfworld-unseen", "--results-db", str(db), "--format", "html",
                 "--out", str(page)]) == 0
    text = page.read_text()
    assert "<script" not in text and "http" not in text.replace("http-equiv", "")  # no network, nothing to load
    dom = dump_dom(page, profile=tmp_path / "profile")
    assert 'id="leaderboard"' in dom
    assert len(re.findall(r'<tr class="measured">', dom)) == 2
    assert len(re.findall(r'<tr class="published">', dom)) == len(reference_rows("alfworld-unseen"))
    assert dom.count('class="cibar"') == 2 + len(reference_rows("alfworld-unseen"))
    assert "published (OPID paper, Table 1)" in dom and "60.0 ± 24.8" in dom
    shot = screenshot(page, tmp_path / "board.png", profile=tmp_path / "profile", size="1500,1000")
    assert png_size(shot) == (1500, 1000)
    _check_pixels(shot, {"measured tag": (0xDF, 0xF3, 0xE4), "published tag": (0xFD, 0xF0, 0xC9),
                         "CI bar": (0x24, 0x58, 0xB3)})
    _keep(shot)


def _check_pixels(png: Path, colours: dict[str, tuple[int, int, int]]) -> None:
    """Each expected colour (an element's fill) is painted somewhere in the screenshot."""
    import matplotlib.image as mpimg
    import numpy as np

    img = (mpimg.imread(png)[..., :3] * 255).round().astype(int)
    for what, rgb in colours.items():
        hits = int((np.abs(img - np.array(rgb)).max(axis=-1) <= 3).sum())
        assert hits >= 20, f"{what} ({rgb}) not visible in {png}"


def _keep(shot: Path) -> None:
    """Copy a screenshot to $OPID_TEST_ARTIFACTS (for a human to look at), when set."""
    dest = os.environ.get("OPID_TEST_ARTIFACTS")
    if dest:
        Path(dest).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(dest) / shot.name)


def test_rows_are_labelled_by_eval_mode():
    from benchmarks.leaderboard import eval_mode

    def with_mode(r, mode):
        r.config = {"eval_mode": mode} if mode else {}
        return r

    records = [with_mode(rec(0, 0.5, learner="skill-grpo"), None), with_mode(rec(0, 0.7, learner="skill-grpo"), "skills"),
               with_mode(rec(0, 0.1, learner=None, kind="eval", steps=0), "plain"),
               with_mode(rec(0, 0.2, learner=None, kind="eval", steps=0), "skills"),
               with_mode(rec(0, 0.05, learner=None, kind="eval", steps=0, model="random"), None)]
    assert [eval_mode(r) for r in records] == ["plain", "skills", "plain", "skills", None]
    board = build_leaderboard(records, "alfworld-unseen")
    assert [(e.label, e.n) for e in board.entries] == [("skill-grpo*", 1), ("skill-grpo", 1), ("skill-prompt*", 1),
                                                       ("vanilla", 1), ("— (eval only)", 1)]
    table = render(board, "table")
    assert "skill-grpo*" in table and "vanilla" in table and "skill-prompt*" in table
    assert "skill-grpo*" in render(board, "csv") and "skill-prompt*" in render(board, "html")
