"""The SQLite results store: records round-trip, concurrent writers lose nothing, eval records."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
from pathlib import Path

import pytest

from opid_gym.cli import main
from opid_gym.results import (
    Cost, ResultsStore, config_hash, model_name, new_record, record_run, resolve_results_path,
)
from tests.toyenv import register_toy


def _record(seed: int = 0, **over):
    fields = dict(kind="eval", benchmark="b", protocol_id="b@v1", protocol_hash="h1", model="m", agent="hf:m",
                  learner=None, seed=seed, config_hash="c", metrics={"success_rate": 0.25},
                  per_type={"x": {"episodes": 4, "successes": 1, "errors": 0, "success_rate": 0.25}},
                  episodes=4, errors=0, cost=Cost(7200.0, "gpu", 4, 1000, 50).to_dict())
    fields.update(over)
    return new_record(**fields)


def test_append_query_roundtrip(tmp_path):
    store = ResultsStore(tmp_path / "sub" / "r.sqlite")
    a = _record(0)
    store.append(a)
    store.append(_record(1, benchmark="other"))
    store.append(_record(2, protocol_hash="h2", learner="grpo", kind="run"))
    assert len(store) == 3
    got = store.get(a.id)
    assert got == a
    assert got.cost["gpu_hours"] == 8.0 and got.cost["cpu_hours"] == 0.0  # 2 h x 4 GPUs
    assert [r.seed for r in store.query(benchmark="b")] == [0, 2]
    assert [r.seed for r in store.query(benchmark="b", protocol_hash="h1")] == [0]
    assert [r.seed for r in store.query(learner="grpo")] == [2]
    assert [r.seed for r in store.query(kind="run")] == [2]
    assert a.user and a.host and a.created.endswith("+00:00") and a.versions["opid_gym"]


def test_wal_mode(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    con = sqlite3.connect(store.path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()


def _writer(path: str, worker: int, n: int) -> None:
    store = ResultsStore(path, timeout=60)
    for i in range(n):
        store.append(_record(seed=worker * 1000 + i))


def test_concurrent_writers_lose_nothing(tmp_path):
    path = str(tmp_path / "r.sqlite")
    ResultsStore(path)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, w, 25)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    records = ResultsStore(path).query()
    assert len(records) == 100
    assert sorted(r.seed for r in records) == sorted(w * 1000 + i for w in range(4) for i in range(25))
    assert len({r.id for r in records}) == 100


def test_config_hash_ignores_seed_and_parallelism():
    base = {"agent": "random", "limit": 3, "seed": 0, "workers": 0}
    assert config_hash(base) == config_hash({**base, "seed": 5, "workers": 4, "max_concurrent": 2})
    assert config_hash(base) != config_hash({**base, "limit": 4})
    assert config_hash({"a": 1, "b": 2}) == config_hash({"b": 2, "a": 1})


def test_model_name():
    assert model_name("hf:smollm2-135m") == "smollm2-135m"
    assert model_name("vllm:Qwen/Qwen2.5-3B-Instruct") == "Qwen/Qwen2.5-3B-Instruct"
    assert model_name("random") == "random"


def test_resolve_results_path(monkeypatch, tmp_path):
    monkeypatch.setenv("OPID_GYM_RESULTS", str(tmp_path / "env.sqlite"))
    assert resolve_results_path(None) == tmp_path / "env.sqlite"
    assert resolve_results_path(tmp_path / "x.sqlite") == tmp_path / "x.sqlite"
    monkeypatch.delenv("OPID_GYM_RESULTS")
    assert resolve_results_path(None) == Path("~/.cache/opid-gym/results.sqlite").expanduser()


def test_eval_cli_appends_a_record(tmp_path, capsys):
    register_toy()
    (tmp_path / "doors.txt").write_text("x")
    db = tmp_path / "r.sqlite"
    for seed in (0, 1):
        assert main(["--data-root", str(tmp_path), "eval", "--agent", "random", "--env", "toy-guess",
                     "--seed", str(seed), "--results-db", str(db), "--no-progress", "--workers", str(seed)]) == 0
    assert main(["--data-root", str(tmp_path), "eval", "--agent", "random", "--env", "toy-guess",
                 "--results-db", str(db), "--no-progress", "--no-record"]) == 0
    out = capsys.readouterr().out
    assert "recorded in" in out and "toy-guess@v1#" in out
    recs = ResultsStore(db).query(benchmark="toy-guess")
    assert [r.seed for r in recs] == [0, 1]
    r0, r1 = recs
    assert r0.kind == "eval" and r0.learner is None and r0.model == "random" and r0.agent == "random"
    assert r0.protocol_id == "toy-guess@v1" and r0.protocol_hash == r1.protocol_hash
    assert r0.config_hash == r1.config_hash  # seeds and workers differ only
    assert r0.episodes == 8 and set(r0.per_type) == {"even", "odd"}
    assert {"success_rate", "mean_length", "invalid_rate", "score"} <= set(r0.metrics)
    assert r0.cost["device_kind"] == "cpu" and r0.cost["devices"] == 1 and r1.cost["devices"] == 2
    assert r0.cost["cpu_hours"] > 0 and r0.cost["gpu_hours"] == 0


def test_record_run(tmp_path):
    summary = {"benchmark": "b", "protocol_id": "b@v1", "protocol_hash": "h", "episodes": 10, "errors": 0,
               "success_rate": 0.6, "mean_reward": 6.0, "mean_length": 9.0, "invalid_rate": 0.1,
               "metrics": {"score": 0.7}, "per_type": {}}
    db = tmp_path / "r.sqlite"
    rec = record_run(db, summary=summary, config={"learner": "opid", "seed": 3, "lr": 1e-6}, model="tiny",
                     learner="opid", seed=3, wall_seconds=1800, device_kind="gpu", devices=2,
                     tokens_generated=12345, analyzer_tokens=678, train_steps=20, train_tokens=12000,
                     run_dir=tmp_path / "run")
    (stored,) = ResultsStore(db).query(kind="run")
    assert stored == rec
    assert stored.learner == "opid" and stored.agent == "hf:tiny" and stored.success_rate == 0.6
    assert stored.metrics["score"] == 0.7
    assert stored.cost["gpu_hours"] == 1.0 and stored.cost["analyzer_tokens"] == 678
    assert stored.budget == {"train_steps": 20, "train_tokens": 12000, "train_env_steps": 0}
    assert stored.config_hash == config_hash({"learner": "opid", "lr": 1e-6})
    with pytest.raises(ValueError, match="protocol hash"):
        record_run(db, summary={**summary, "protocol_hash": None}, config={}, model="tiny", learner="opid",
                   seed=0, wall_seconds=1, device_kind="cpu", devices=1, tokens_generated=0)
