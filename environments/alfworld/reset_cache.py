"""Cheaper ALFWorld resets: each game's PDDL translation is computed once and reused.

Where an uncached reset spends its time (``cProfile`` of ``ALFWorldEnv.reset`` on one
valid-unseen game, 7.3 s): TextWorld's ``PddlEnv`` builds a ``PddlState`` both in
``load`` and in ``reset``, and each ``PddlState`` runs fast-downward's PDDL → SAS
translation twice (plain, and optimised for replanning): four translations, 5.7 s of
the 7.3 s. Parsing the game's text grammar (``GameLogic``) takes most of the rest
(0.6-0.9 s). Both are pure functions of the game file's text.

:func:`cached_engine_setup` is a context manager that, while it is active, replaces
``fast_downward.pddl2sas`` and TextWorld's grammar parser with versions that look their
result up by a hash of their exact inputs (and the installed engine versions):

* in memory (a small LRU of pickled results, so ``load`` + ``reset`` of one game
  translate once, and every caller gets its own fresh objects), and
* on disk, under ``<cache>/alfworld-translations/`` (``$OPID_GYM_CACHE`` or
  ``~/.cache/opid-gym``), one zlib-compressed pickle per (input, variant), about
  40 KB each, written atomically, so every later process (workers, later runs) skips
  the translation.

The translation is deterministic (the same SAS text in every process), so a cached
reset yields exactly the game an uncached one does. A cache file that cannot be read
is recomputed and rewritten. ``OPID_GYM_ALFWORLD_CACHE=0`` (or the env's
``translation_cache=False``) turns the cache off; ``=memory`` keeps it in memory only.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import tempfile
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Iterator

_MEMORY_ENTRIES = 16
_memory: OrderedDict[str, bytes] = OrderedDict()
stats = {"hits": 0, "disk_hits": 0, "misses": 0}
"""Counters of this process (tests and benchmarks read them)."""


def cache_root() -> Path:
    """``$OPID_GYM_CACHE/alfworld-translations`` (default ``~/.cache/opid-gym/...``)."""
    base = os.environ.get("OPID_GYM_CACHE") or str(Path.home() / ".cache" / "opid-gym")
    return Path(base) / "alfworld-translations"


def _engine_versions() -> str:
    from importlib import metadata

    parts = []
    for dist in ("fast-downward-textworld", "textworld"):
        try:
            parts.append(f"{dist}={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{dist}=?")
    return ";".join(parts)


_VERSIONS: str | None = None


def _key(kind: str, *parts: str) -> str:
    global _VERSIONS
    if _VERSIONS is None:
        _VERSIONS = _engine_versions()
    h = hashlib.sha256()
    for part in (kind, _VERSIONS, *parts):
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return f"{kind}-{h.hexdigest()[:40]}"


def _lookup(key: str, compute: Callable[[], Any], disk: Path | None) -> Any:
    blob = _memory.get(key)
    if blob is not None:
        _memory.move_to_end(key)
        stats["hits"] += 1
        return pickle.loads(blob)
    path = disk / f"{key}.pkl.z" if disk is not None else None
    if path is not None and path.is_file():
        try:
            blob = zlib.decompress(path.read_bytes())
            value = pickle.loads(blob)
        except Exception:  # a truncated or foreign file: recompute and overwrite it
            blob = None
        else:
            stats["disk_hits"] += 1
            _remember(key, blob)
            return value
    stats["misses"] += 1
    value = compute()
    blob = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    _remember(key, blob)
    if path is not None:
        _write_atomic(path, zlib.compress(blob, 6))
    return value


def _remember(key: str, blob: bytes) -> None:
    _memory[key] = blob
    _memory.move_to_end(key)
    while len(_memory) > _MEMORY_ENTRIES:
        _memory.popitem(last=False)


def _write_atomic(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError:  # a read-only or full cache folder: the cache is an optimisation only
        with contextlib.suppress(Exception):
            os.unlink(tmp)  # type: ignore[possibly-undefined]


def resolve_mode(setting: bool | str | None) -> str:
    """``"disk"``, ``"memory"`` or ``"off"`` from the env argument and ``$OPID_GYM_ALFWORLD_CACHE``."""
    if setting is None or setting is True:
        setting = os.environ.get("OPID_GYM_ALFWORLD_CACHE", "disk")
    if setting is False:
        return "off"
    value = str(setting).strip().lower()
    if value in ("0", "off", "false", "no", "none"):
        return "off"
    if value in ("memory", "mem"):
        return "memory"
    if value in ("1", "on", "true", "yes", "disk"):
        return "disk"
    raise ValueError(f"ALFWorld translation cache must be disk, memory or off, got {setting!r}")


@contextlib.contextmanager
def cached_engine_setup(mode: str = "disk") -> Iterator[None]:
    """While active, PDDL translations and grammar parses are served from the cache."""
    if mode == "off":
        yield
        return
    import fast_downward
    from textworld.envs.pddl import logic as pddl_logic

    disk = cache_root() if mode == "disk" else None
    translate = fast_downward.pddl2sas
    parse = pddl_logic._parse_and_convert

    def cached_pddl2sas(domain: str, problem: str, verbose: bool = False, optimize: bool = False):
        key = _key("sas-opt" if optimize else "sas", domain, problem)
        return _lookup(key, lambda: translate(domain, problem, verbose=verbose, optimize=optimize), disk)

    def cached_parse(text: str, *args: Any, **kwargs: Any):
        key = _key("grammar", text, repr(args), repr(sorted(kwargs.items())))
        return _lookup(key, lambda: parse(text, *args, **kwargs), disk)

    fast_downward.pddl2sas = cached_pddl2sas
    pddl_logic._parse_and_convert = cached_parse
    try:
        yield
    finally:
        fast_downward.pddl2sas = translate
        pddl_logic._parse_and_convert = parse


def clear_memory() -> None:
    """Forget this process's in-memory entries (the disk cache stays)."""
    _memory.clear()
