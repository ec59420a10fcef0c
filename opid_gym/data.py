"""Where benchmark data lives.

One setting decides it: the data root. It is resolved once, at the edge (the CLI's
``--data-root`` option, a run config's ``data_root``, or an explicit argument), and
passed down explicitly. When nothing is given, :func:`resolve_data_root` falls back to
the ``OPID_GYM_DATA`` environment variable, then to ``~/.cache/opid-gym/data``.

Layout under the root (the one the upstream download tools produce): one folder per
environment family, named by its :attr:`~opid_gym.family.EnvFamily.data_dir` (e.g.
``<root>/alfworld/json_2.1.1/…``; see ``environments/<family>/family.py``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

ENV_VAR = "OPID_GYM_DATA"
DEFAULT_ROOT = Path("~/.cache/opid-gym/data")


class DataNotFoundError(FileNotFoundError):
    """A data set is missing; the message says how to get it and where to point."""


def resolve_data_root(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The data root: ``explicit``, else ``$OPID_GYM_DATA``, else ``~/.cache/opid-gym/data``."""
    if explicit:
        return Path(explicit).expanduser().resolve()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser().resolve()
    return DEFAULT_ROOT.expanduser()


def missing_data_message(dataset: str, expected: Path, download: str, *, holds: str | None = None,
                         searched: bool = False) -> str:
    """``holds``: the folder name DIR must contain (default: ``expected``'s parent's name);
    ``searched``: the files were looked for anywhere under ``expected``."""
    where = f"under {expected} (searched recursively)" if searched else f"at {expected}"
    return (
        f"{dataset} data not found {where}.\n"
        f"  Download it with:  {download}\n"
        f"  or point opid-gym at an existing copy with --data-root DIR or {ENV_VAR}=DIR\n"
        f"  (DIR is the folder that holds '{holds or expected.parent.name}/' ...; see `opid-bench data status`)."
    )


@dataclass(frozen=True)
class DatasetStatus:
    """One line of ``opid-bench data status`` (each family reports its own, see
    :func:`opid_gym.family.dataset_status`)."""

    name: str
    path: Path
    present: bool
    detail: str


def files_status(root: Path, name: str, patterns: Sequence[str], what: str) -> DatasetStatus:
    """One status row for ``<root>/<name>``: how many files below it match any of the glob
    ``patterns`` (searched recursively); present when there is at least one."""
    folder = root / name
    files = [f for pattern in patterns for f in folder.rglob(pattern)] if folder.is_dir() else []
    return DatasetStatus(name, folder, bool(files), f"{len(files)} {what}")
