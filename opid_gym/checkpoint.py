"""Checkpoints that a kill can never corrupt.

Layout (under ``run_dir/checkpoints/``)::

    step_000004/            one complete checkpoint: <name>.pt files + meta.json
    step_000005/
    latest                  text file: "step_000005"

Writing (:func:`save_checkpoint`):

1. every file goes into a fresh hidden folder ``.tmp-step_NNNNNN-<pid>``, each one
   flushed and ``fsync``-ed; ``meta.json`` (step, file names, sizes and sha256) is
   written last, so a folder without a matching ``meta.json`` is incomplete by definition;
2. the folder is renamed to ``step_NNNNNN`` (an atomic rename on POSIX file systems)
   and the parent folder is ``fsync``-ed;
3. ``latest`` is replaced atomically (temp file + ``os.replace``);
4. only then are older checkpoints beyond ``keep`` deleted.

A kill at any point leaves the previous complete checkpoint untouched.
:func:`find_latest` trusts ``latest`` only if it names a complete folder, and also
picks a newer complete folder if a kill fell between steps 2 and 3; hidden and
incomplete folders are ignored (and swept by the next save).

Loading (:func:`load_latest`): each file's sha256 is checked against the meta before
it is unpickled. A damaged newest checkpoint (changed bytes, a cut file, a bad header)
gives a warning naming it, and the next older intact one is loaded; when checkpoint
folders exist but none is intact, :class:`CheckpointError` says so (a resume never
silently starts over).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch

_STEP_DIR = re.compile(r"^step_(\d{6,})$")
META = "meta.json"
LATEST = "latest"


class CheckpointError(RuntimeError):
    """No usable checkpoint where one was expected."""


def step_dir_name(step: int) -> str:
    return f"step_{step:06d}"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _write_bytes_file(path: Path, writer: Any) -> None:
    with open(path, "wb") as f:
        writer(f)
        f.flush()
        os.fsync(f.fileno())


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    _write_bytes_file(tmp, lambda f: f.write(text.encode("utf-8")))
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def non_finite(obj: Any, where: str = "") -> str | None:
    """The path of the first floating tensor in ``obj`` (nested dicts, lists, tuples) that holds
    a NaN or an infinity, else None."""
    if isinstance(obj, torch.Tensor):
        if obj.is_floating_point() and obj.numel() and not bool(torch.isfinite(obj).all()):
            return where or "<tensor>"
        return None
    if isinstance(obj, dict):
        items: Any = obj.items()
    elif isinstance(obj, (list, tuple)):
        items = enumerate(obj)
    else:
        return None
    for key, value in items:
        found = non_finite(value, f"{where}.{key}" if where else str(key))
        if found is not None:
            return found
    return None


def save_checkpoint(root: Path, step: int, objects: dict[str, Any], meta: dict[str, Any], *, keep: int = 2) -> Path:
    """Write ``objects`` (name → torch-saveable object) and ``meta`` as checkpoint ``step``.

    Returns the checkpoint folder. See the module docstring for the guarantees. Raises
    :class:`CheckpointError` (and writes nothing) when a floating tensor holds NaN or
    infinity: a diverged update never replaces the last good checkpoint.
    """
    bad = non_finite(objects)
    if bad is not None:
        raise CheckpointError(f"step {step}: {bad} holds NaN or infinity; checkpoint not written")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    _sweep_stale(root)
    name = step_dir_name(step)
    tmp = root / f".tmp-{name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    files: dict[str, int] = {}
    digests: dict[str, str] = {}
    for key, obj in objects.items():
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", key):
            raise ValueError(f"bad checkpoint entry name {key!r}")
        path = tmp / f"{key}.pt"
        _write_bytes_file(path, lambda f, obj=obj: torch.save(obj, f))
        files[f"{key}.pt"] = path.stat().st_size
        digests[f"{key}.pt"] = file_sha256(path)
    full_meta = {**meta, "step": step, "files": files, "sha256": digests}
    _write_bytes_file(tmp / META, lambda f: f.write(json.dumps(full_meta, indent=1).encode("utf-8")))
    _fsync_dir(tmp)
    final = root / name
    if final.exists():  # re-saving a step (a resumed run): move the old one aside first
        trash = root / f".trash-{name}-{os.getpid()}"
        os.rename(final, trash)
        os.rename(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.rename(tmp, final)
    _fsync_dir(root)
    _atomic_write_text(root / LATEST, name + "\n")
    _prune(root, keep)
    return final


def is_complete(folder: Path) -> bool:
    """A checkpoint folder whose meta.json lists files that all exist with their sizes."""
    try:
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
        return all((folder / f).stat().st_size == size for f, size in meta["files"].items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify(folder: Path) -> str | None:
    """Why ``folder`` is not an intact checkpoint (None when it is): a missing or unreadable
    meta, a file of another size, or a file whose sha256 differs from the meta's."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
        files, digests = meta["files"], meta.get("sha256")
        for fname, size in files.items():
            if (folder / fname).stat().st_size != size:
                return f"{fname} has {(folder / fname).stat().st_size} bytes, the meta says {size}"
        if digests is None:
            return None  # written before checksums were recorded: sizes are all we can check
        for fname in files:
            if fname not in digests or file_sha256(folder / fname) != digests[fname]:
                return f"{fname} does not match its sha256 in {META} (changed bytes)"
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return f"unreadable {META} or file ({type(exc).__name__}: {exc})"
    return None


def list_checkpoints(root: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints under ``root``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        m = _STEP_DIR.match(child.name)
        if m and child.is_dir() and is_complete(child):
            found.append((int(m.group(1)), child))
    return sorted(found)


def find_latest(root: Path) -> Path | None:
    """The newest complete checkpoint folder (``latest`` if it is complete and newest)."""
    root = Path(root)
    complete = list_checkpoints(root)
    if not complete:
        return None
    try:
        pointed = root / (root / LATEST).read_text(encoding="utf-8").strip()
    except OSError:
        pointed = None
    newest = complete[-1][1]
    if pointed is not None and pointed == newest:
        return pointed
    return newest


def load_checkpoint(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(meta, objects)`` of an intact checkpoint folder (sizes and sha256 checked).

    Files are our own (written by :func:`save_checkpoint`), so they are loaded with
    ``weights_only=False`` (RNG states hold numpy arrays). Raises
    :class:`CheckpointError` for a damaged folder.
    """
    folder = Path(folder)
    problem = verify(folder)
    if problem is not None:
        raise CheckpointError(f"{folder} is not an intact checkpoint: {problem}")
    meta = json.loads((folder / META).read_text(encoding="utf-8"))
    objects = {}
    for fname in meta["files"]:
        try:
            objects[fname[:-3]] = torch.load(folder / fname, map_location="cpu", weights_only=False)
        except Exception as exc:  # unpickling errors of every kind: the file is damaged
            raise CheckpointError(f"{folder / fname} cannot be loaded ({type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    return meta, objects


def load_latest(root: Path) -> tuple[Path, dict[str, Any], dict[str, Any]] | None:
    """The newest intact checkpoint under ``root`` as ``(folder, meta, objects)``.

    Damaged checkpoints are skipped with a warning naming them. None when there is no
    checkpoint folder at all (a run killed before its first checkpoint); raises
    :class:`CheckpointError` when there are checkpoint folders but none is intact.
    """
    root = Path(root)
    folders = sorted((int(m.group(1)), child) for child in (root.iterdir() if root.is_dir() else [])
                     if (m := _STEP_DIR.match(child.name)) and child.is_dir())
    problems = []
    for _, folder in reversed(folders):
        try:
            meta, objects = load_checkpoint(folder)
        except CheckpointError as exc:
            problems.append(str(exc))
            warnings.warn(f"skipping damaged checkpoint {folder}: {exc}", stacklevel=2)
            continue
        return folder, meta, objects
    if folders:
        raise CheckpointError(f"no intact checkpoint in {root} ({len(folders)} damaged: "
                              f"{'; '.join(problems)}); nothing to resume from")
    return None


def _sweep_stale(root: Path) -> None:
    for child in root.iterdir():
        if child.name.startswith((".tmp-", ".trash-")) and child.is_dir():
            shutil.rmtree(child, ignore_errors=True)


def _prune(root: Path, keep: int) -> None:
    complete = list_checkpoints(root)
    for _, folder in complete[:-keep] if keep > 0 else []:
        shutil.rmtree(folder, ignore_errors=True)
