"""Shared test set-up: the data root and a quiet, single-threaded torch.

Tests read benchmark data from ``$OPID_GYM_DATA`` (CI sets it to ``../shared/data``);
when unset, ``../shared/data`` beside the checkout is used if present. Tests that
need a data set that is absent are skipped with the reason, never silently passed.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

if not os.environ.get("OPID_GYM_DATA"):
    candidate = ROOT.parent / "shared" / "data"
    if candidate.is_dir():
        os.environ["OPID_GYM_DATA"] = str(candidate)

# `eval` and `run` record results: tests never write into a real results database
os.environ["OPID_GYM_RESULTS"] = str(Path(tempfile.mkdtemp(prefix="opid-results-")) / "results.sqlite")

try:  # the machine is shared: keep torch to one thread in tests
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover - torch is optional for the core
    pass


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = Path(os.environ.get("OPID_GYM_DATA", ROOT.parent / "shared" / "data"))
    if not root.is_dir():
        pytest.skip(f"benchmark data not found at {root} (set OPID_GYM_DATA)")
    return root


@pytest.fixture(scope="session")
def alfworld_data(data_root: Path) -> Path:
    if not (data_root / "alfworld" / "json_2.1.1").is_dir():
        pytest.skip("ALFWorld data not present under the data root")
    pytest.importorskip("textworld")
    pytest.importorskip("alfworld")
    return data_root
