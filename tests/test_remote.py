"""Environments served over HTTP: ``serve-env``, :class:`RemoteEnv`, :class:`RemotePool`.

Servers run in a thread (or, for the CLI and the killed-server tests, a subprocess) on
an ephemeral port of 127.0.0.1. The toy keypad game covers the protocol; ALFWorld and
WebShop show that ``check-env`` passes on served environments and that an expert
evaluation through served environments gives the same episodes as a local one.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

import opid_gym
from opid_gym.agent import make_agent
from opid_gym.checker import check_env
from opid_gym.evaluate import evaluate
from opid_gym.remote import REMOTE_ENV_ID, RemoteEnv, RemoteEnvError, RemotePool, make_server
from opid_gym.workers import EnvError, ResetResult, StepResult, make_pool

ROOT = Path(__file__).resolve().parents[1]
KEYPAD = "keypad-eval"


@contextlib.contextmanager
def served(env_ids: Any, env_kwargs: dict[str, Any] | None = None, **options: Any) -> Iterator[tuple[str, Any]]:
    """A server in a thread on a free port: yields (url, EnvServer)."""
    httpd, state = make_server(env_ids, env_kwargs, **options)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", state
    finally:
        httpd.shutdown()
        httpd.server_close()
        state.close()


def http(url: str, method: str = "GET", body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def post(url: str, payload: Any, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    return http(url, "POST", json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})})


# ------------------------------------------------------------------- protocol
def test_openenv_style_client_drives_the_default_session() -> None:
    """A plain HTTP client, no sessions: OpenEnv's reset/step shapes, state, tasks, schema."""
    local = opid_gym.make(KEYPAD)
    obs0, info0 = local.reset(seed=3, options={"task_index": 5})
    local_step = local.step(info0["admissible_actions"][0])
    with served(KEYPAD) as (url, _):
        status, answer = post(f"{url}/reset", {"seed": 3, "task_index": 5})
        assert status == 200 and answer["done"] is False and answer["reward"] is None
        assert answer["observation"]["text"] == obs0 and answer["observation"]["info"] == info0
        status, answer = post(f"{url}/step", {"action": {"text": info0["admissible_actions"][0]}})
        assert status == 200
        obs, reward, terminated, truncated, info = local_step
        assert answer["observation"] == {"text": obs, "info": info, "terminated": terminated, "truncated": truncated}
        assert answer["reward"] == reward and answer["done"] == (terminated or truncated)
        status, state = http(f"{url}/state")
        assert status == 200 and state["step_count"] == 1 and state["task_index"] == 5
        assert state["task_id"] == info0["task_id"]
        status, tasks = http(f"{url}/tasks")
        assert tasks["num_tasks"] == local.unwrapped.num_tasks and tasks["task_ids"] == local.unwrapped.task_ids()
        assert http(f"{url}/health") == (200, {"status": "healthy"})
        status, meta = http(f"{url}/metadata")
        assert meta["env_id"] == f"opid/{KEYPAD}" and meta["family"] == "toy"
        status, schema = http(f"{url}/schema")
        assert set(schema) == {"action", "observation", "state"} and schema["action"]["required"] == ["text"]
    local.close()


def test_remote_env_matches_the_local_env_step_for_step() -> None:
    local = opid_gym.make(KEYPAD).unwrapped
    with served(KEYPAD) as (url, state):
        remote = RemoteEnv(url, max_steps=3)
        local.max_steps = 3
        assert remote.num_tasks == local.num_tasks and remote.task_ids() == local.task_ids()
        assert remote.family == local.family and remote.prompt is type(local).prompt
        for task in (0, 7, 42):
            assert remote.reset(seed=task, options={"task_index": task}) == local.reset(
                seed=task, options={"task_index": task})
            assert remote.expert_action() == local.expert_action()
            assert remote.expert_plan() == local.expert_plan()
            for action in ("@@", "héllo ✓", "lamp"):
                got, want = remote.step(action), local.step(action)
                assert got == want
                if got[2] or got[3]:
                    break
        assert remote.state()["max_steps"] == 3
        assert len(state.sessions) == 1
        remote.close()
        assert not state.sessions  # close ends the session on the server


def test_sessions_are_independent_under_concurrent_clients() -> None:
    """Several clients at once, each on its own task: each sees exactly what a local env gives."""
    def run(env: Any, task: int) -> list[Any]:
        out = [env.reset(seed=task, options={"task_index": task})]
        for action in ("book", "lamp", "plate", "towel"):
            out.append(env.step(action))
            if out[-1][2] or out[-1][3]:
                break
        return out

    expected = {task: run(opid_gym.make(KEYPAD).unwrapped, task) for task in range(6)}
    with served(KEYPAD) as (url, _):
        remotes = {task: RemoteEnv(url) for task in range(6)}
        got: dict[int, list[Any]] = {}
        threads = [threading.Thread(target=lambda t=t: got.__setitem__(t, run(remotes[t], t))) for t in remotes]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert got == expected
        for env in remotes.values():
            env.close()


def test_token_is_required_and_checked() -> None:
    with served(KEYPAD, token="s3cret") as (url, _):
        assert http(f"{url}/health")[0] == 200  # health needs no token
        status, answer = post(f"{url}/reset", {"seed": 0})
        assert status == 401 and "token" in answer["detail"]
        assert post(f"{url}/reset", {"seed": 0}, {"Authorization": "Bearer wrong"})[0] == 401
        assert post(f"{url}/reset", {"seed": 0}, {"Authorization": "Bearer s3cret"})[0] == 200
        with pytest.raises(RemoteEnvError, match="401"):
            RemoteEnv(url, token="nope")
        env = RemoteEnv(url, token="s3cret")
        assert env.reset(seed=0)[0]
        env.close()


def test_bad_requests_get_a_4xx_with_a_json_message() -> None:
    with served(KEYPAD, max_sessions=2) as (url, _):
        cases = [
            ("POST", "/step", b"{not json", 400, "not valid JSON"),
            ("POST", "/step", b"[1, 2]", 400, "JSON object"),
            ("POST", "/step", json.dumps({"action": "lamp"}).encode(), 400, '"text"'),
            ("POST", "/reset", json.dumps({"seed": -1}).encode(), 400, "seed"),
            ("POST", "/reset", json.dumps({"task_index": "three"}).encode(), 400, "task_index"),
            ("POST", "/reset", json.dumps({"task_index": 10_000}).encode(), 400, "out of range"),
            ("POST", "/sessions", json.dumps({"env_kwargs": {"no_such_option": 1}}).encode(), 400, "cannot build"),
            ("POST", "/sessions", json.dumps({"env_id": "alfworld-unseen"}).encode(), 400, "serves"),
            ("GET", "/nowhere", None, 404, "no route"),
            ("GET", "/reset", None, 405, "no route"),
        ]
        for method, path, body, status, words in cases:
            got, answer = http(url + path, method, body, {"Content-Type": "application/json"})
            assert got == status and words in answer["detail"], (path, body, got, answer)
        status, answer = post(f"{url}/step", {"action": {"text": "lamp"}}, {"X-Session-Id": "no-such-session"})
        assert status == 404 and "unknown session" in answer["detail"]
        fresh = RemoteEnv(url)  # with the default session: two of two sessions
        with pytest.raises(RuntimeError, match="reset"):
            fresh.step("lamp")  # before reset: the local env's error, through a 409
        fresh.reset(seed=0, options={"task_index": 0})
        while True:
            *_, terminated, truncated, _ = fresh.step("lamp")
            if terminated or truncated:
                break
        with pytest.raises(RuntimeError, match="episode is over"):
            fresh.step("lamp")
        with pytest.raises(RemoteEnvError, match="503.*server full"):
            RemoteEnv(url)
        fresh.close()


def test_idle_sessions_are_closed_after_the_timeout() -> None:
    with served(KEYPAD, session_timeout=0.3) as (url, state):
        env = RemoteEnv(url)
        time.sleep(0.6)
        RemoteEnv(url).close()  # opening a session reaps the idle ones
        with pytest.raises(RemoteEnvError, match="404.*unknown session"):
            env.reset(seed=0)
        assert env.session_id not in state.sessions


# ------------------------------------------------------------------------ pool
def test_pool_over_two_servers_equals_the_local_pool() -> None:
    items = [(slot, slot, {"task_index": slot}) for slot in range(5)]
    local = make_pool(KEYPAD, workers=0, with_expert=True)
    with served(KEYPAD) as (url1, s1), served(KEYPAD) as (url2, s2):
        remote = make_pool(KEYPAD, workers=0, with_expert=True, urls=[url1, url2], timeout=30)
        assert isinstance(remote, RemotePool) and not remote.in_process
        assert remote.reset(items) == local.reset(items)
        assert len(s1.sessions) == 3 and len(s2.sessions) == 2  # slot s on urls[s % 2]
        steps = [(slot, "lamp") for slot in range(5)]
        assert remote.step(steps) == local.step(steps)
        remote.close()
    local.close()


def test_pool_refuses_a_server_of_another_environment_or_none() -> None:
    from opid_gym.cli import main

    with served("keypad-train") as (url, _):
        with pytest.raises(ValueError, match="serves opid/keypad-train, not opid/keypad-eval"):
            RemotePool(KEYPAD, urls=[url])
    with pytest.raises(ValueError, match=f"{url}.*unreachable"):  # that server is gone now
        RemotePool(KEYPAD, urls=[url], timeout=5)
    with pytest.raises(ValueError, match="http://host:port"):
        RemotePool(KEYPAD, urls=["localhost:8765"])
    # on the command line: one clear line, exit 2
    assert main(["eval", "--agent", "expert", "--env", "keypad", "--env-url", url, "--no-record"]) == 2


def test_a_hung_server_times_out_as_an_env_error() -> None:
    with served(KEYPAD) as (url, state):
        pool = RemotePool(KEYPAD, urls=[url], timeout=1.0)
        assert isinstance(pool.reset([(0, 0, {"task_index": 0})])[0], ResetResult)
        with state.lock:  # the engine is busy: the server cannot answer
            start = time.monotonic()
            result = pool.step([(0, "lamp")])[0]
            assert time.monotonic() - start < 10
        assert isinstance(result, EnvError) and "no answer within 1s" in result.message
        assert pool.restarts == 1
        # the slot's session was dropped: a step is refused, a reset opens a new one
        assert "lost" in pool.step([(0, "lamp")])[0].message
        assert isinstance(pool.reset([(0, 0, {"task_index": 0})])[0], ResetResult)
        pool.close()


def _start_cli_server(port: int = 0, *extra: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "opid_gym", "serve-env", KEYPAD, "--port", str(port), "--quiet", *extra],
        cwd=ROOT, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
    assert match, line + proc.stderr.read()
    return proc, f"http://127.0.0.1:{match.group(1)}"


def test_killed_server_fails_its_episodes_and_a_restarted_one_is_used_again() -> None:
    proc, url = _start_cli_server()
    try:
        pool = RemotePool(KEYPAD, urls=[url], timeout=30)
        assert isinstance(pool.reset([(0, 0, {"task_index": 0}), (1, 0, {"task_index": 1})])[0], ResetResult)
        proc.kill()
        proc.wait()
        failed = pool.step([(0, "lamp"), (1, "lamp")])
        assert all(isinstance(r, EnvError) and "unreachable" in r.message for r in failed)
        assert pool.restarts == 2
        again = pool.reset([(0, 0, {"task_index": 0})])[0]
        assert isinstance(again, EnvError) and "unreachable" in again.message
        proc, _ = _start_cli_server(int(url.rsplit(":", 1)[1]))  # the same port, a fresh server
        assert isinstance(pool.reset([(0, 0, {"task_index": 0})])[0], ResetResult)
        assert isinstance(pool.step([(0, "lamp")])[0], StepResult)
        pool.close()
    finally:
        proc.kill()
        proc.wait()


def test_cli_eval_through_a_served_env_equals_local(tmp_path: Path) -> None:
    proc, url = _start_cli_server(0, "--token-file", str(_token_file(tmp_path)))
    try:
        def run(*extra: str) -> dict[str, Any]:
            out = subprocess.run(
                [sys.executable, "-m", "opid_gym", "eval", "--agent", "expert", "--env", "keypad", "--episodes", "6",
                 "--no-record", "--no-progress", "--json", *extra],
                cwd=ROOT, capture_output=True, text=True, timeout=300,
                env={**os.environ, "OPID_GYM_ENV_TOKEN": "tok-123"},
            )
            assert out.returncode == 0, out.stderr
            return json.loads(out.stdout.strip().splitlines()[-1])

        remote, local = run("--env-url", url), run()
        # the remote run's episodes ran on the server: one session per episode slot and one catalogue
        assert http(f"{url}/metadata", headers={"Authorization": "Bearer tok-123"})[1]["sessions_opened"] >= 6
        for key in ("success_rate", "episodes", "errors", "per_type", "avg_steps"):
            assert remote.get(key) == local.get(key), key
        token_env = {**os.environ, "OPID_GYM_ENV_TOKEN": "tok-123"}
        ok = subprocess.run([sys.executable, "-m", "opid_gym", "check-env", KEYPAD, "--url", url], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, env=token_env)
        assert ok.returncode == 0 and f"PASS  {KEYPAD}" in ok.stdout, ok.stdout + ok.stderr
        bad = subprocess.run([sys.executable, "-m", "opid_gym", "check-env", "--url", url], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
        assert bad.returncode == 2 and "needs the env_id" in bad.stderr
        no_token = subprocess.run([sys.executable, "-m", "opid_gym", "check-env", KEYPAD, "--url", url], cwd=ROOT,
                                  capture_output=True, text=True, timeout=120,
                                  env={k: v for k, v in os.environ.items() if k != "OPID_GYM_ENV_TOKEN"})
        assert no_token.returncode == 1 and "401" in no_token.stdout and "Traceback" not in no_token.stderr
    finally:
        proc.kill()
        proc.wait()


def _token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text("tok-123\n", encoding="utf-8")
    return path


def test_config_checks_remote_urls() -> None:
    from opid_gym.config import ConfigError, EnvConfig

    assert EnvConfig(remote_urls=("http://10.0.0.2:8765",)).remote_urls == ("http://10.0.0.2:8765",)
    with pytest.raises(ConfigError, match="remote_urls"):
        EnvConfig(remote_urls=("10.0.0.2:8765",))


# --------------------------------------------------- the real environments
def _check_served(env_id: str, server_kwargs: dict[str, Any], client_kwargs: dict[str, Any]) -> None:
    with served(env_id, server_kwargs) as (url, state):
        results = check_env(REMOTE_ENV_ID, url=url, served_env=env_id, **client_kwargs)
        assert all(r.ok for r in results), [(r.name, r.detail) for r in results if not r.ok]
        assert [r.name for r in results][-1] == "step limit is truncation"
        assert state.sessions.keys() <= {"default"}  # the checker's sessions were all closed


def _same_episodes(bench_id: str, env_kwargs: dict[str, Any], server_kwargs: dict[str, Any], limit: int) -> None:
    bench = opid_gym.BENCHMARKS.get(bench_id)
    local, local_trajs = evaluate(bench, make_agent("expert"), env_kwargs=env_kwargs, limit=limit)
    with served(bench.env_id, server_kwargs) as (url, state):
        remote, remote_trajs = evaluate(bench, make_agent("expert"), env_kwargs=env_kwargs, limit=limit,
                                        env_urls=[url])
        assert state.opened >= limit  # the episodes ran on the server
    assert remote.errors == 0 and remote.episodes == local.episodes == limit
    assert remote.success_rate == local.success_rate
    # every episode identical: task, every prompt, response, action, observation, reward, info
    assert [t.to_dict() for t in remote_trajs] == [t.to_dict() for t in local_trajs]


@pytest.mark.slow
def test_check_env_passes_on_served_alfworld(alfworld_data: Path) -> None:
    _check_served("alfworld-unseen", {"data_root": str(alfworld_data)}, {})


@pytest.mark.slow
def test_expert_eval_through_served_alfworld_equals_local(alfworld_data: Path) -> None:
    kwargs = {"data_root": str(alfworld_data)}
    _same_episodes("alfworld-unseen", kwargs, kwargs, limit=3)


@pytest.fixture(scope="module")
def webshop_kwargs(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if not (data_root / "webshop").is_dir():
        pytest.skip("WebShop data not present under the data root")
    pytest.importorskip("bm25s")
    pytest.importorskip("rapidfuzz")
    return {"data_root": str(data_root), "search_backend": "bm25s",
            "cache_dir": str(tmp_path_factory.mktemp("webshop-index"))}


def test_check_env_passes_on_served_webshop(webshop_kwargs: dict[str, Any]) -> None:
    client = {k: v for k, v in webshop_kwargs.items() if k != "data_root"}
    _check_served("webshop-eval", {"data_root": webshop_kwargs["data_root"]}, client)


def test_expert_eval_through_served_webshop_equals_local(webshop_kwargs: dict[str, Any]) -> None:
    _same_episodes("webshop", webshop_kwargs, {"data_root": webshop_kwargs["data_root"]}, limit=8)


@pytest.mark.slow
def test_training_through_served_envs_equals_local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`env.remote_urls`: a smoke run's rollouts and evaluation through two servers, same metrics as local."""
    pytest.importorskip("transformers")
    from opid_gym.cli import main
    from tests.support import letters

    letters.register()
    monkeypatch.setenv("OPID_GYM_RESULTS", str(tmp_path / "results.sqlite"))
    args = ["run", "--learner", "grpo", "--env", "letters", "--preset", "smoke", "--set", "rollout.max_new_tokens=8",
            "--set", "rollout.group_size=3", "--set", "optim.lr=1e-3", "--no-progress"]
    ids = ["letters-train", "letters-eval"]
    with served(ids) as (url1, s1), served(ids) as (url2, s2):
        urls = json.dumps([url1, url2])
        assert main([*args, "--set", f"env.remote_urls={urls}", "--out", str(tmp_path / "remote")]) == 0
        assert s1.opened > 0 and s2.opened > 0  # both servers held episodes
    assert main([*args, "--out", str(tmp_path / "local")]) == 0

    def metrics(run: str) -> list[dict[str, Any]]:
        lines = (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(x).items() if not k.startswith("time")} for x in lines]

    assert metrics("remote") == metrics("local")
    final = [json.loads((tmp_path / run / "summary.json").read_text())["final_eval"] for run in ("remote", "local")]
    for key in ("success_rate", "mean_reward", "mean_length", "episodes"):
        assert final[0][key] == final[1][key], key
