"""Every command has --help, and user errors are one clear line."""

from __future__ import annotations

import pytest

from opid_gym.cli import COMMANDS, build_parser, main


def test_top_level_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for name, *_ in COMMANDS:
        assert name in out


@pytest.mark.parametrize("command", [c[0] for c in COMMANDS])
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([command, "--help"])
    assert exit_.value.code == 0
    assert "usage: opid-bench" in capsys.readouterr().out


def test_unknown_benchmark_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--agent", "random", "--env", "alfworld-unsen"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("opid-bench: error: unknown benchmark 'alfworld-unsen'") and "alfworld-unseen" in err


def test_list_commands_run(capsys: pytest.CaptureFixture[str]) -> None:
    for what in ("envs", "agents", "learners"):
        assert main(["list", what]) == 0
    out = capsys.readouterr().out
    assert "opid/alfworld-unseen" in out and "grpo" in out and "hf:<model>" in out


def test_eval_without_a_terminal_prints_one_line_per_episode(capsys: pytest.CaptureFixture[str]) -> None:
    from tests.support import letters

    letters.register()
    args = ["eval", "--agent", "random", "--env", "letters", "--limit", "3", "--no-record"]
    assert main(args) == 0  # capsys: stderr is not a terminal
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("episode ")]
    assert [ln.split()[1] for ln in lines] == ["1/3", "2/3", "3/3"]
    assert all("success so far" in ln and "env steps/s" in ln for ln in lines)
    assert main([*args, "--no-progress"]) == 0
    assert "episode 1/3" not in capsys.readouterr().err
