"""``opid-bench eval --agent openai:<model>`` end to end against the local test server."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("httpx")

from opid_gym.cli import main  # noqa: E402
from tests.support.openai_server import ChatServer, Reply, Status  # noqa: E402

ACTION = "<think>Let me look around first.</think><action>look</action>"


@pytest.fixture
def server():
    with ChatServer(default=Reply(ACTION, prompt_tokens=100, completion_tokens=12)) as srv:
        yield srv


def _eval(server, data_root, *extra, steps=3):
    return main(["--data-root", str(data_root), "eval", "--agent", "openai:test-model", "--env", "alfworld-unseen",
                 "--episodes", "1", "--max-steps", str(steps), "--base-url", server.base_url, "--json",
                 "--no-progress", *extra])


def test_eval_against_local_server(server, alfworld_data, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    key = tmp_path / "key"
    key.write_text("sk-local\n")
    out = tmp_path / "out"
    assert _eval(server, alfworld_data, "--api-key-file", str(key), "--agent-opt", "max_retries=0",
                 "--out", str(out)) == 0
    stdout = capsys.readouterr().out
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["episodes"] == 1 and summary["errors"] == 0
    assert summary["env_steps"] == 3 and summary["invalid_rate"] == 0.0  # "look" three times, step limit
    assert len(server.requests) == 3  # one chat completion per step
    body = server.requests[0].body
    assert body["model"] == "test-model"
    assert body["temperature"] == 0.4 and body["max_tokens"] == 512  # the benchmark's validation settings
    assert body["messages"][-1]["role"] == "user" and "Your task is to" in body["messages"][-1]["content"]
    assert server.requests[0].headers["Authorization"] == "Bearer sk-local"
    assert len({r.body["seed"] for r in server.requests}) == 3  # per-step seeds
    assert "API usage: 3 calls, 0 failed, 300 prompt tokens, 36 completion tokens" in stdout
    traj = json.loads((out / "trajectories.jsonl").read_text().splitlines()[0])
    assert [s["action"] for s in traj["steps"]] == ["look"] * 3 and traj["truncated"]


def test_api_key_from_environment_in_cli_only(server, alfworld_data, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-secret")
    db = tmp_path / "results.sqlite"
    assert _eval(server, alfworld_data, "--results-db", str(db), steps=1) == 0
    assert server.requests[0].headers["Authorization"] == "Bearer sk-env-secret"
    from opid_gym.results import ResultsStore

    records = ResultsStore(db).query()
    assert len(records) == 1
    text = json.dumps(records[0].to_dict())
    assert "openai:test-model" in text and "<redacted>" in text
    assert "sk-env-secret" not in text  # the key is not recorded


def test_api_key_precedence(monkeypatch, tmp_path):
    from opid_gym.cli import _api_options, build_parser

    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    base = ["eval", "--agent", "openai:m", "--env", "alfworld-unseen"]
    parse = build_parser().parse_args
    assert _api_options(parse(base)) == {"api_key": "sk-env"}
    assert _api_options(parse(base + ["--api-key", "sk-flag"])) == {"api_key": "sk-flag"}
    assert _api_options(parse(base + ["--api-key-file", "k.txt", "--base-url", "http://h/v1"])) == {
        "api_key_file": "k.txt", "base_url": "http://h/v1"}
    monkeypatch.delenv("OPENAI_API_KEY")
    assert _api_options(parse(base)) == {}


def test_api_failure_is_one_clear_line(server, alfworld_data, capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    server.default = Status(401)
    assert _eval(server, alfworld_data, "--api-key", "wrong") == 2
    err = capsys.readouterr().err
    assert err.startswith("opid-bench: error: HTTP 401") and "Traceback" not in err
    assert len(server.requests) == 1  # 401 is not retried


def test_api_flags_with_other_agents_are_an_error(capsys):
    assert main(["eval", "--agent", "random", "--env", "alfworld-unseen", "--base-url", "http://127.0.0.1:1/v1"]) == 2
    assert "openai:<model> agents only" in capsys.readouterr().err


def test_bad_agent_option_is_one_line(capsys):
    assert main(["eval", "--agent", "openai:m", "--env", "alfworld-unseen", "--agent-opt", "concurrency=0"]) == 2
    err = capsys.readouterr().err
    assert "cannot build agent 'openai:m'" in err and "concurrency" in err
