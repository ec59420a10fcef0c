"""Where benchmark data lives.

One setting decides it: the data root. It is resolved once, at the edge (the CLI's
``--data-root`` option, a run config's ``data_root``, or an explicit argument), and
passed down explicitly. When nothing is given, :func:`resolve_data_root` falls back to
the ``OPID_GYM_DATA`` environment variable, then to ``~/.cache/opid-gym/data``.

Layout under the root (the one the upstream download tools produce)::

    <root>/alfworld/json_2.1.1/{train,valid_seen,valid_unseen,valid_train}/…
    <root>/alfworld/logic/{alfred.pddl,alfred.twl2}
    <root>/webshop/…        (see environments/webshop)
    <root>/search_qa/…      (see environments/searchqa)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

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
    name: str
    path: Path
    present: bool
    detail: str


def dataset_status(root: Path) -> list[DatasetStatus]:
    """What is present under ``root``, one line per data set (for ``opid-bench data status``)."""
    out = []
    alf = root / "alfworld" / "json_2.1.1"
    for split in ("train", "valid_seen", "valid_unseen", "valid_train"):
        d = alf / split
        n = len(list(d.glob("*/*/game.tw-pddl"))) if d.is_dir() else 0
        out.append(DatasetStatus(f"alfworld/{split}", d, n > 0, f"{n} games"))
    ws = root / "webshop"
    docs = list(ws.rglob("documents.jsonl")) if ws.is_dir() else []
    out.append(DatasetStatus("webshop", ws, bool(docs), f"{len(docs)} catalogue index file(s)"))
    sq = root / "search_qa"
    qa = (list(sq.rglob("*.jsonl")) + list(sq.rglob("*_questions_and_answers.json"))) if sq.is_dir() else []
    out.append(DatasetStatus("search_qa", sq, bool(qa), f"{len(qa)} question/corpus file(s)"))
    return out
