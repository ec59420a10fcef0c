"""Checkpoints that a kill can never corrupt.

Layout (under ``run_dir/checkpoints/``)::

    step_000004/            one complete checkpoint: <name>.pt files + meta.json
    step_000005/
    latest                  text file: "step_000005"

Writing (:func:`save_checkpoint`):

1. every file goes into a fresh hidden folder ``.tmp-step_NNNNNN-<pid>``, each one
   flushed and ``fsync``-ed; ``meta.json`` (step, file names and sizes) is written
   last, so a folder without a matching ``meta.json`` is incomplete by definition;
2. the folder is renamed to ``step_NNNNNN`` (an atomic rename on POSIX file systems)
   and the parent folder is ``fsync``-ed;
3. ``latest`` is replaced atomically (temp file + ``os.replace``);
4. only then are older checkpoints beyond ``keep`` deleted.

A kill at any point leaves the previous complete checkpoint untouched.
:func:`find_latest` trusts ``latest`` only if it names a complete folder, and also
picks a newer complete folder if a kill fell between steps 2 and 3; hidden and
incomplete folders are ignored (and swept by the next save).
"""

from __future__ import annotations

import json
import os
import re
import shutil
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


def save_checkpoint(root: Path, step: int, objects: dict[str, Any], meta: dict[str, Any], *, keep: int = 2) -> Path:
    """Write ``objects`` (name → torch-saveable object) and ``meta`` as checkpoint ``step``.

    Returns the checkpoint folder. See the module docstring for the guarantees.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    _sweep_stale(root)
    name = step_dir_name(step)
    tmp = root / f".tmp-{name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    files: dict[str, int] = {}
    for key, obj in objects.items():
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", key):
            raise ValueError(f"bad checkpoint entry name {key!r}")
        path = tmp / f"{key}.pt"
        _write_bytes_file(path, lambda f, obj=obj: torch.save(obj, f))
        files[f"{key}.pt"] = path.stat().st_size
    full_meta = {**meta, "step": step, "files": files}
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
    """``(meta, objects)`` of a complete checkpoint folder.

    Files are our own (written by :func:`save_checkpoint`), so they are loaded with
    ``weights_only=False`` (RNG states hold numpy arrays).
    """
    folder = Path(folder)
    if not is_complete(folder):
        raise CheckpointError(f"{folder} is not a complete checkpoint")
    meta = json.loads((folder / META).read_text(encoding="utf-8"))
    objects = {}
    for fname in meta["files"]:
        objects[fname[:-3]] = torch.load(folder / fname, map_location="cpu", weights_only=False)
    return meta, objects


def _sweep_stale(root: Path) -> None:
    for child in root.iterdir():
        if child.name.startswith((".tmp-", ".trash-")) and child.is_dir():
            shutil.rmtree(child, ignore_errors=True)


def _prune(root: Path, keep: int) -> None:
    complete = list_checkpoints(root)
    for _, folder in complete[:-keep] if keep > 0 else []:
        shutil.rmtree(folder, ignore_errors=True)
