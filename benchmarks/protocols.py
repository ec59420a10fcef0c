"""Benchmark protocols: what exactly a benchmark id measures, and a hash of it.

Two numbers are comparable only when they were measured the same way. A
:class:`Protocol` resolves a :class:`~opid_gym.benchmark.Benchmark` on the data at
hand and hashes everything that can change its scores:

* every field of the benchmark except its description (split, step limit, history
  manager and length, validation sampling, prompt budget, number of seeds, overall
  metric, env kwargs, the hand-bumped ``version``);
* the environment: entry point, constructor kwargs (the data root's *location* is
  left out, its *content* is not), action format, the family's prompt template and
  its metric keys;
* the exact task list, in evaluation order (the split's ids, or the seeded
  ``--episodes`` subset of them, see :data:`opid_gym.evaluate.SUBSET_SEED`);
* the sha256 of every data file the environment names (:meth:`TextEnv.data_files`);
* the installed versions of the packages the family names (``score_packages``);
* the metric definitions (:data:`METRIC_DEFINITIONS`, versioned by
  :data:`METRICS_VERSION`).

Worker counts, batch sizes (``--max-concurrent``), the run seed and the data root's
path are not part of it: they do not change per-episode results.

The protocol id reads ``<benchmark>@v<version>`` (``alfworld-unseen@v1``), with
``/subset-<k>`` appended for a ``k``-task subset; the hash is the first
:data:`HASH_LENGTH` hex digits of the sha256 of the canonical JSON document
(:attr:`Protocol.document`). File hashes are cached by (path, size, mtime) in a small
JSON file, so resolving a protocol reads a file again only after it changed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Mapping

from opid_gym.benchmark import Benchmark
from opid_gym.evaluate import SUBSET_SEED, eval_task_indices
from opid_gym.family import family_of_class
from opid_gym.registry import env_class, env_spec, make

PROTOCOL_SCHEMA = 1
"""Version of the hashed document's layout."""
HASH_LENGTH = 12
METRICS_VERSION = "1"
"""Bump when :func:`opid_gym.evaluate.summarize` changes how a metric is computed."""
EPISODE_SEEDING = "episode seed = derive_seed(run seed, 'eval', task index, repeat); agents sample per (episode seed, task, member, step)"
DEFAULT_CACHE = Path("~/.cache/opid-gym/file-hashes.json")
_UNHASHED_ENV_KWARGS = ("data_root",)

METRIC_DEFINITIONS: dict[str, str] = {
    "success_rate": (
        "share of episodes whose environment reported won=True when the episode ended "
        "(terminated, or truncated at the step limit); episodes that failed by an "
        "environment error count as failures and are reported apart; overall = over all "
        "episodes when the benchmark's `overall` is 'episodes', the mean of the per-task-type "
        "rates when it is 'types'"
    ),
    "per_type": "success_rate computed separately for each task type (ALFWorld's six types, search QA's data sets)",
    "mean_reward": "mean over episodes of the sum of environment rewards (learner scale)",
    "mean_length": "mean number of environment steps per episode",
    "invalid_rate": "invalid steps (response not in the action format) / all steps, over all episodes",
    "env_metrics": "each of the family's metric_keys: its final info value, averaged over episodes",
}


class ProtocolMismatchError(ValueError):
    """Results of different protocols were about to be compared."""


@dataclass(frozen=True)
class Protocol:
    """One benchmark protocol, resolved on the installed data and packages.

    Attributes:
        benchmark: the benchmark id.
        version: the benchmark's hand-bumped version.
        id: ``<benchmark>@v<version>`` (+ ``/subset-<k>``).
        hash: the short content hash.
        task_ids: the exact task list, in evaluation order (one entry per task; each is
            run ``num_seeds`` times).
        document: the canonical content the hash is taken over.
    """

    benchmark: str
    version: str
    id: str
    hash: str
    task_ids: tuple[str, ...] = field(repr=False)
    document: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def label(self) -> str:
        return f"{self.id}#{self.hash}"


# ------------------------------------------------------------------ file hashes
class FileHashCache:
    """sha256 of files, cached by (resolved path, size, mtime in ns).

    Args:
        path: the JSON cache file (None: an in-memory cache only).
    """

    def __init__(self, path: str | os.PathLike[str] | None = DEFAULT_CACHE) -> None:
        self.path = Path(path).expanduser() if path is not None else None
        self._entries: dict[str, list[Any]] = {}
        self._dirty = False
        if self.path is not None and self.path.is_file():
            try:
                loaded = json.loads(self.path.read_text(encoding="utf-8"))
                if isinstance(loaded, dict):
                    self._entries = loaded
            except (OSError, ValueError):  # a broken cache is only a slower run
                self._entries = {}

    def sha256(self, file: Path) -> str:
        file = Path(file).resolve()
        st = file.stat()
        key = str(file)
        entry = self._entries.get(key)
        if entry and entry[0] == st.st_size and entry[1] == st.st_mtime_ns:
            return str(entry[2])
        digest = hashlib.sha256()
        with open(file, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        sha = digest.hexdigest()
        self._entries[key] = [st.st_size, st.st_mtime_ns, sha]
        self._dirty = True
        return sha

    def save(self) -> None:
        """Write the cache (atomically), dropping entries of files that are gone."""
        if self.path is None or not self._dirty:
            return
        entries = {k: v for k, v in self._entries.items() if os.path.exists(k)}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(entries), encoding="utf-8")
            os.replace(tmp, self.path)
            self._dirty = False
        except OSError:  # read-only home: hashing still works, only uncached
            pass


def data_fingerprint(files: Mapping[str, Path], cache: FileHashCache) -> dict[str, Any]:
    """``{"files": n, "sha256": ...}`` over the sorted (name, content sha256) pairs."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(f"{name}\t{cache.sha256(files[name])}\n".encode())
    return {"files": len(files), "sha256": digest.hexdigest()}


def package_version(name: str) -> str:
    """The installed version of distribution ``name`` (``"absent"`` when not installed)."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


# --------------------------------------------------------------------- protocol
def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def short_hash(document: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(document).encode()).hexdigest()[:HASH_LENGTH]


def protocol_id(benchmark: Benchmark, subset: int | None = None) -> str:
    """``<name>@v<version>``, plus ``+field=value`` for each field overridden from the
    registered benchmark of that name (``--max-steps 50``), plus ``/subset-<k>``."""
    import opid_gym

    base = f"{benchmark.name}@v{benchmark.version}"
    if benchmark.name in opid_gym.BENCHMARKS:
        registered = opid_gym.BENCHMARKS.get(benchmark.name)
        for f in dataclasses.fields(Benchmark):
            if f.name not in ("description", "name", "version"):
                value = getattr(benchmark, f.name)
                if value != getattr(registered, f.name):
                    base += f"+{f.name}={canonical_json(value) if isinstance(value, dict) else value}"
    return base if subset is None else f"{base}/subset-{subset}"


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj if isinstance(obj, (str, int, float, bool, type(None))) else repr(obj)


def protocol_for(
    benchmark: Benchmark,
    *,
    env_kwargs: Mapping[str, Any] | None = None,
    limit: int | None = None,
    cache: FileHashCache | None = None,
) -> Protocol:
    """Resolve ``benchmark`` on the data at hand.

    Args:
        benchmark: the benchmark (with any overrides, e.g. ``--max-steps``, applied).
        env_kwargs: extra evaluation-env kwargs, as :func:`opid_gym.evaluate.evaluate`
            takes them (``data_root`` is used to find the data, not hashed).
        limit: the ``--episodes`` subset size (None: every task).
        cache: the file-hash cache (default: :data:`DEFAULT_CACHE`).
    """
    kwargs = {**benchmark.eval_env_kwargs(), **dict(env_kwargs or {})}
    spec = env_spec(benchmark.env_id)
    cls = env_class(benchmark.env_id)
    env = make(benchmark.env_id, **kwargs).unwrapped
    try:
        all_ids = list(env.task_ids())
        files = dict(env.data_files())
    finally:
        env.close()
    indices = eval_task_indices(len(all_ids), limit)
    subset = len(indices) if len(indices) < len(all_ids) else None
    task_ids = tuple(all_ids[i] for i in indices)

    cache = cache if cache is not None else FileHashCache()
    try:
        data = data_fingerprint(files, cache)
    finally:
        cache.save()

    bench_fields = {k: v for k, v in _plain(benchmark).items() if k != "description"}
    hashed_kwargs = {k: v for k, v in {**dict(spec.kwargs or {}), **kwargs}.items() if k not in _UNHASHED_ENV_KWARGS}
    document = {
        "schema": PROTOCOL_SCHEMA,
        "benchmark": bench_fields,
        "env": {
            "entry_point": spec.entry_point if isinstance(spec.entry_point, str) else repr(spec.entry_point),
            "family": family_of_class(cls).name,
            "kwargs": _plain(hashed_kwargs),
            "action_format": getattr(cls, "action_format", ""),
            "prompt": _plain(getattr(cls, "prompt", None)),
            "metric_keys": list(family_of_class(cls).metric_keys),
        },
        "tasks": {
            "selection": "all" if subset is None else {"limit": subset, "subset_seed": SUBSET_SEED},
            "count": len(task_ids),
            "ids_sha256": hashlib.sha256("\n".join(task_ids).encode()).hexdigest(),
        },
        "episode_seeding": EPISODE_SEEDING,
        "data": data,
        "packages": {name: package_version(name) for name in getattr(cls, "score_packages", ())},
        "metrics": {"version": METRICS_VERSION, "definitions": METRIC_DEFINITIONS},
    }
    return Protocol(
        benchmark=benchmark.name, version=str(benchmark.version), id=protocol_id(benchmark, subset),
        hash=short_hash(document), task_ids=task_ids, document=document,
    )


def protocol_stamp(
    benchmark: Benchmark, *, env_kwargs: Mapping[str, Any] | None = None, limit: int | None = None
) -> tuple[str, str]:
    """``(protocol id, hash)``: what :func:`opid_gym.evaluate.evaluate` writes into summaries."""
    p = protocol_for(benchmark, env_kwargs=env_kwargs, limit=limit)
    return p.id, p.hash


def require_same_protocol(labelled_hashes: Iterable[tuple[str, str | None]], *, allow_mixed: bool = False) -> None:
    """Refuse to compare results measured under different protocols.

    Args:
        labelled_hashes: (what, protocol hash) pairs, e.g. ("RUN_A", "3f2a...").
        allow_mixed: compare anyway (the caller shows the hashes beside the numbers).

    Raises:
        ProtocolMismatchError: the hashes differ (or one is unknown) and ``allow_mixed``
            is False.
    """
    pairs = list(labelled_hashes)
    hashes = {h for _, h in pairs}
    if allow_mixed or (len(hashes) <= 1 and None not in hashes):
        return
    listing = ", ".join(f"{what}: {h or 'unknown'}" for what, h in pairs)
    raise ProtocolMismatchError(
        f"results come from different benchmark protocols ({listing}); their numbers were not "
        "measured the same way. Pass --allow-mixed to compare them anyway."
    )


def describe(protocol: Protocol) -> str:
    """A few lines for humans: what the hash covers."""
    d = protocol.document
    b = d["benchmark"]
    lines = [
        f"{protocol.id}  hash {protocol.hash}",
        f"  env {b['env_id']}  tasks {d['tasks']['count']} ({'all' if d['tasks']['selection'] == 'all' else 'subset'})"
        f" x {b['num_seeds']} seed(s)  max_steps {b['max_steps']}  history {b['history']}({b['history_length']})",
        f"  sampling T={b['temperature']} top_p={b['top_p']} max_new_tokens={b['max_new_tokens']}"
        f"  overall={b['overall']}",
        f"  data {d['data']['files']} files sha256 {d['data']['sha256'][:16]}…  packages "
        + (", ".join(f"{k}=={v}" for k, v in d["packages"].items()) or "(none named)"),
    ]
    return "\n".join(lines)
