"""The results store: one SQLite row per ``eval`` and per ``run``.

Every evaluation (``opid-bench eval``) and every training run (``opid-bench run``)
appends a :class:`ResultRecord`: who/what/when, the model and learner, the config
hash, the benchmark protocol id and hash, the seed, the metrics overall and per task
type, and the cost (CPU/GPU hours = wall time x devices, tokens generated, analyzer
tokens) and training budget. The leaderboard reads it back.

Where the database lives: ``--results-db PATH`` on the command line, else
``$OPID_GYM_RESULTS``, else ``~/.cache/opid-gym/results.sqlite`` (see
:func:`resolve_results_path`).

Concurrent writers (several evals or runs finishing at once) are safe: the database
runs in WAL mode, each append is one ``BEGIN IMMEDIATE`` transaction, and a writer
waits up to ``timeout`` seconds for the lock. (SQLite's WAL mode needs a local file
system, not NFS.)

Usage::

    store = ResultsStore(resolve_results_path(None))
    store.append(record)
    rows = store.query(benchmark="alfworld-unseen", protocol_hash="df541c8e6256")

The training loop records a run with :func:`record_run`.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import platform
import socket
import sqlite3
import sys
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

RESULTS_ENV_VAR = "OPID_GYM_RESULTS"
DEFAULT_RESULTS_PATH = Path("~/.cache/opid-gym/results.sqlite")
SCHEMA_VERSION = 1
CONFIG_HASH_IGNORED = ("seed", "out", "out_dir", "run_dir", "workers", "max_concurrent", "results_db",
                       "progress", "no_progress", "data_root", "json", "experiment")
"""Config keys left out of the config hash: they do not change what is measured
(the seed is recorded apart, so seeds of one config share its hash)."""


def resolve_results_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``explicit``, else ``$OPID_GYM_RESULTS``, else ``~/.cache/opid-gym/results.sqlite``."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get(RESULTS_ENV_VAR)
    if env:
        return Path(env).expanduser()
    return DEFAULT_RESULTS_PATH.expanduser()


def config_hash(config: Mapping[str, Any], ignore: tuple[str, ...] = CONFIG_HASH_IGNORED) -> str:
    """12 hex digits of the sha256 of the canonical JSON of ``config`` minus ``ignore`` keys."""
    kept = {k: v for k, v in config.items() if k not in ignore}
    text = json.dumps(kept, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def model_name(agent: str) -> str:
    """``hf:smollm2-135m`` -> ``smollm2-135m``; scripted agents keep their name."""
    from opid_gym import builtin

    prefix, sep, rest = agent.partition(":")
    return rest if sep and prefix in builtin.AGENT_PREFIXES else agent


@dataclass
class Cost:
    """What a result cost.

    Attributes:
        wall_seconds: wall-clock time of the eval or run.
        device_kind: ``cpu`` or ``gpu``.
        devices: devices busy for that time (GPUs; CPU processes for CPU work).
        tokens_generated: tokens the policy generated (rollouts + evals).
        analyzer_tokens: tokens an analyzer model generated (OPID's hindsight analysis).
    """

    wall_seconds: float = 0.0
    device_kind: str = "cpu"
    devices: int = 1
    tokens_generated: int = 0
    analyzer_tokens: int = 0

    @property
    def device_hours(self) -> float:
        return self.wall_seconds * self.devices / 3600.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["gpu_hours"] = self.device_hours if self.device_kind == "gpu" else 0.0
        d["cpu_hours"] = self.device_hours if self.device_kind != "gpu" else 0.0
        return d


@dataclass
class ResultRecord:
    """One row of the results store.

    Attributes:
        kind: ``eval`` or ``run``.
        benchmark / protocol_id / protocol_hash: what was measured, and how.
        model: the model (``smollm2-135m``, a path, or a scripted agent's name).
        agent: the full agent spec (``hf:smollm2-135m``).
        learner: the learner of a training run (None for an evaluation only).
        seed: the run / evaluation seed.
        config_hash / config: the resolved config (see :func:`config_hash`).
        metrics: overall metrics (``success_rate``, ``mean_reward``, ``mean_length``,
            ``invalid_rate``, and the family's metric keys).
        per_type: per task type: episodes, successes, errors, success_rate.
        episodes / errors: episode counts.
        cost: a :class:`Cost` as a dict (with ``cpu_hours`` / ``gpu_hours``).
        budget: training budget (``train_steps``, ``train_tokens``, ``train_env_steps``);
            zeros for an evaluation.
        source: the run folder or eval output folder, when there is one.
        id / created / user / host / command / versions: filled in by :func:`new_record`.
    """

    kind: str
    benchmark: str
    protocol_id: str
    protocol_hash: str
    model: str
    agent: str
    learner: str | None
    seed: int
    config_hash: str
    metrics: dict[str, float]
    per_type: dict[str, dict[str, float]]
    episodes: int
    errors: int
    cost: dict[str, Any]
    budget: dict[str, float] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    source: str | None = None
    id: str = ""
    created: str = ""
    user: str = ""
    host: str = ""
    command: str = ""
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def success_rate(self) -> float:
        return float(self.metrics.get("success_rate", 0.0))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResultRecord:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


_COMMAND_LINE: list[str] | None = None


def set_command_line(argv: list[str]) -> None:
    """Remember the command line as the user typed it (the CLI calls this at entry).

    Libraries may overwrite ``sys.argv`` while a command runs (TextWorld's planner sets it
    to ``translate.py domain task``); records take the command captured here.
    """
    global _COMMAND_LINE
    _COMMAND_LINE = list(argv)


def command_line() -> str:
    """The captured command line (:func:`set_command_line`), else ``sys.argv`` as it is now."""
    import shlex

    return shlex.join(_COMMAND_LINE if _COMMAND_LINE is not None else sys.argv)


def _who() -> tuple[str, str]:
    try:
        user = getpass.getuser()
    except Exception:  # no login name in some containers
        user = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
    return user, socket.gethostname()


def new_record(**fields: Any) -> ResultRecord:
    """A :class:`ResultRecord` with id, time (UTC), user, host, command line and versions filled in."""
    import opid_gym

    user, host = _who()
    defaults = dict(
        id=uuid.uuid4().hex,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        user=user, host=host, command=command_line(),
        versions={"opid_gym": opid_gym.__version__, "python": platform.python_version()},
    )
    return ResultRecord(**{**defaults, **fields})


def summary_metrics(summary: Mapping[str, Any]) -> dict[str, float]:
    """The overall metrics of an eval summary dict (``EvalSummary.to_dict()``)."""
    out = {k: float(summary[k]) for k in ("success_rate", "mean_reward", "mean_length", "invalid_rate")
           if summary.get(k) is not None}
    out.update({k: float(v) for k, v in (summary.get("metrics") or {}).items()})
    return out


# ------------------------------------------------------------------------- store
_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    id TEXT PRIMARY KEY,
    created TEXT NOT NULL,
    kind TEXT NOT NULL,
    benchmark TEXT NOT NULL,
    protocol_id TEXT NOT NULL,
    protocol_hash TEXT NOT NULL,
    model TEXT NOT NULL,
    learner TEXT,
    seed INTEGER NOT NULL,
    config_hash TEXT NOT NULL,
    success_rate REAL NOT NULL,
    episodes INTEGER NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS results_protocol ON results (benchmark, protocol_hash);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class ResultsStoreError(RuntimeError):
    """The results database cannot be read or written (damaged, not a database, locked for good)."""


def _damaged(path: Path, exc: BaseException) -> ResultsStoreError:
    return ResultsStoreError(
        f"the results database {path} is damaged or not a results database ({type(exc).__name__}: "
        f"{str(exc).splitlines()[0] if str(exc) else exc!r}); move it aside (mv {path} {path}.bad) "
        "to start a new one, or choose another with --results-db / $" + RESULTS_ENV_VAR)


class ResultsStore:
    """An append-only SQLite table of :class:`ResultRecord` (safe for concurrent writers).

    Args:
        path: the database file (created with its folder on first use).
        timeout: seconds a writer waits for another writer's lock.
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 60.0) -> None:
        self.path = Path(path).expanduser()
        self.timeout = float(timeout)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._create()

    def _create(self) -> None:
        """Switch to WAL and create the tables, retrying while another process holds the lock.

        Several processes creating one store at once: switching the journal mode takes an
        exclusive lock and SQLite does not wait on it (no busy handler), so "database is
        locked" is retried here with a growing pause until ``timeout``.
        """
        import random
        import time

        deadline = time.monotonic() + self.timeout
        pause = 0.01
        while True:
            try:
                con = self._connect()
                try:
                    if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                        con.execute("PRAGMA journal_mode=WAL")
                    con.executescript(_SCHEMA)
                    con.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                finally:
                    con.close()
                return
            except sqlite3.OperationalError as exc:
                text = str(exc).lower()
                if ("locked" not in text and "busy" not in text) or time.monotonic() > deadline:
                    if "locked" in text or "busy" in text:
                        raise ResultsStoreError(f"the results database {self.path} stayed locked for "
                                                f"{self.timeout:.0f}s ({exc})") from None
                    raise _damaged(self.path, exc) from None
                time.sleep(pause * (1 + random.random()))
                pause = min(pause * 2, 0.5)
            except sqlite3.DatabaseError as exc:
                raise _damaged(self.path, exc) from None

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        con.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        return con

    def append(self, record: ResultRecord) -> str:
        """Store ``record`` (one transaction); return its id."""
        if not record.id:
            record.id = uuid.uuid4().hex
        row = (
            record.id, record.created, record.kind, record.benchmark, record.protocol_id,
            record.protocol_hash, record.model, record.learner, int(record.seed), record.config_hash,
            record.success_rate, int(record.episodes), json.dumps(record.to_dict(), default=str),
        )
        con = self._connect()
        try:
            con.execute("BEGIN IMMEDIATE")
            con.execute("INSERT INTO results VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", row)
            con.execute("COMMIT")
        except BaseException as exc:
            if con.in_transaction:
                try:
                    con.execute("ROLLBACK")
                except sqlite3.DatabaseError:
                    pass
            if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.IntegrityError):
                raise _damaged(self.path, exc) from None
            raise
        finally:
            con.close()
        return record.id

    def query(
        self,
        *,
        benchmark: str | None = None,
        protocol_hash: str | None = None,
        model: str | None = None,
        learner: str | None = None,
        kind: str | None = None,
    ) -> list[ResultRecord]:
        """Records matching every given field, oldest first."""
        where, args = [], []
        for column, value in (("benchmark", benchmark), ("protocol_hash", protocol_hash), ("model", model),
                              ("learner", learner), ("kind", kind)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = "SELECT record FROM results" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY created, rowid"
        return [self._decode(r[0]) for r in self._rows(sql, args)]

    def get(self, record_id: str) -> ResultRecord | None:
        rows = self._rows("SELECT record FROM results WHERE id = ?", [record_id])
        return self._decode(rows[0][0]) if rows else None

    def _decode(self, text: Any) -> ResultRecord:
        try:
            return ResultRecord.from_dict(json.loads(text))
        except (TypeError, ValueError) as exc:  # a garbled row: the file was damaged
            raise _damaged(self.path, exc) from None

    def __len__(self) -> int:
        return int(self._rows("SELECT COUNT(*) FROM results", [])[0][0])

    def _rows(self, sql: str, args: list[Any]) -> list[tuple[Any, ...]]:
        try:
            con = self._connect()
            try:
                return con.execute(sql, args).fetchall()
            finally:
                con.close()
        except sqlite3.DatabaseError as exc:
            raise _damaged(self.path, exc) from None


# ----------------------------------------------------------- building records
def _device() -> tuple[str, int]:
    torch = sys.modules.get("torch")  # only when a model backend already loaded it
    try:
        if torch is not None and torch.cuda.is_available():
            return "gpu", 1
    except Exception:  # a broken CUDA set-up is not the results store's business
        pass
    return "cpu", 1


def eval_record(
    summary: Mapping[str, Any],
    *,
    agent: str,
    config: Mapping[str, Any],
    source: str | os.PathLike[str] | None = None,
    workers: int = 0,
    learner: str | None = None,
    model: str | None = None,
) -> ResultRecord:
    """The record of one ``opid-bench eval`` from its summary dict.

    Cost: wall time x devices, where devices is 1 GPU when a model agent ran on CUDA,
    else the CPU processes (1 + env workers). ``learner`` / ``model``: set when the
    evaluated model is a training run's (``run:<dir>`` agents); default: no learner and
    the model named by ``agent``.
    """
    kind, devices = _device()
    if kind == "cpu":
        devices = 1 + max(0, int(workers))
    return new_record(
        kind="eval", benchmark=summary["benchmark"], protocol_id=summary["protocol_id"],
        protocol_hash=summary["protocol_hash"], model=model or model_name(agent), agent=agent, learner=learner,
        seed=int(summary.get("seed", 0)), config_hash=config_hash(config), config=dict(config),
        metrics=summary_metrics(summary), per_type=dict(summary.get("per_type") or {}),
        episodes=int(summary["episodes"]), errors=int(summary.get("errors", 0)),
        cost=Cost(float(summary.get("seconds", 0.0)), kind, devices,
                  int(summary.get("generated_tokens", 0)), 0).to_dict(),
        budget={"train_steps": 0, "train_tokens": 0, "train_env_steps": 0},
        source=str(source) if source is not None else None,
    )


def record_run(
    db: str | os.PathLike[str] | None,
    *,
    summary: Any,
    config: Mapping[str, Any],
    model: str,
    learner: str,
    seed: int,
    wall_seconds: float,
    device_kind: str,
    devices: int,
    tokens_generated: int,
    analyzer_tokens: int = 0,
    train_steps: int = 0,
    train_tokens: int = 0,
    train_env_steps: int = 0,
    run_dir: str | os.PathLike[str] | None = None,
    agent: str | None = None,
) -> ResultRecord:
    """Append the record of a finished training run; called by ``opid-bench run``.

    Args:
        db: the results database (None: :func:`resolve_results_path`'s default).
        summary: the run's final :class:`~opid_gym.evaluate.EvalSummary` (or its dict);
            it carries the benchmark, the protocol id and hash, and the metrics.
        config: the resolved run config (``config.json``); hashed without the keys in
            :data:`CONFIG_HASH_IGNORED`.
        model: the model name (``smollm2-135m``, ``Qwen/Qwen2.5-3B-Instruct``, a path).
        learner: the learner name (``opid``, ``grpo``, ...).
        seed: the run seed.
        wall_seconds: the whole run's wall time (training + evals).
        device_kind / devices: ``gpu`` and the number of GPUs, or ``cpu`` and the
            number of CPU processes; cost hours = wall_seconds x devices / 3600.
        tokens_generated: policy tokens generated during the run (rollouts + evals).
        analyzer_tokens: tokens generated by an analyzer model (OPID), else 0.
        train_steps / train_tokens / train_env_steps: the training budget used.
        run_dir: the run folder (stored as the record's source).
        agent: the agent spec (default ``hf:<model>``).

    Returns:
        The stored record.
    """
    s = summary.to_dict() if hasattr(summary, "to_dict") else dict(summary)
    if not s.get("protocol_hash"):
        raise ValueError("the summary carries no protocol hash (evaluate() stamps it)")
    record = new_record(
        kind="run", benchmark=s["benchmark"], protocol_id=s["protocol_id"], protocol_hash=s["protocol_hash"],
        model=model, agent=agent or f"hf:{model}", learner=learner, seed=int(seed),
        config_hash=config_hash(config), config=dict(config), metrics=summary_metrics(s),
        per_type=dict(s.get("per_type") or {}), episodes=int(s["episodes"]), errors=int(s.get("errors", 0)),
        cost=Cost(float(wall_seconds), device_kind, int(devices), int(tokens_generated),
                  int(analyzer_tokens)).to_dict(),
        budget={"train_steps": int(train_steps), "train_tokens": int(train_tokens),
                "train_env_steps": int(train_env_steps)},
        source=str(run_dir) if run_dir is not None else None,
    )
    ResultsStore(resolve_results_path(db)).append(record)
    return record
