"""benchmarks/gpu_check.py in --dry-run mode (CPU, tiny model, transformers rollouts): the CI form
of the GPU check. The GPU run itself is recorded in benchmarks/results/ when one was available."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")

from benchmarks import gpu_check  # noqa: E402


def test_dry_run_prints_and_saves_the_table(tmp_path, capsys):
    out = tmp_path / "check.txt"
    assert gpu_check.main(["--dry-run", "--out", str(out)]) == 0
    text = out.read_text()
    assert text.strip() in capsys.readouterr().out and text.startswith("# opid-gym GPU check, dry run (CPU)")
    rows = {(line.split()[0], " ".join(line.split()[1:3])) for line in text.splitlines()[3:] if line.strip()}
    for step in ("generation", "grpo", "opid", "total"):
        assert any(r[0] == step for r in rows), step
    assert "transformers tokens/s" in text and "all steps passed" in text
    assert "time/update s" in text and "opid/skill_adv_absmax" in text
    assert "vLLM tokens/s" in text and "skipped" in text      # no engine in a dry run, and it says so


def test_a_failing_step_is_a_row_and_exit_code_1(tmp_path):
    empty = tmp_path / "model"
    empty.mkdir()
    assert gpu_check.main(["--dry-run", "--model", str(empty), "--out", str(tmp_path / "a.txt")]) == 1
    assert "FAILED" in (tmp_path / "a.txt").read_text()
    assert gpu_check.main(["--dry-run", "--budget", "0", "--out", str(tmp_path / "b.txt")]) == 1
    text = (tmp_path / "b.txt").read_text()
    assert "time budget" in text and "failed: generation, grpo step, opid step" in text
