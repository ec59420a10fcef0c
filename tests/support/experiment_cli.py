"""``python -m tests.support.experiment_cli ARGS``: ``opid-bench ARGS`` with the in-test
``letters`` benchmark registered, and experiment cells started through this module too.

``$OPID_TEST_LETTERS_DELAY`` (seconds per training env step) slows the training
environment down so a kill lands mid-run; every process of a test sets the same value.
"""

from __future__ import annotations

import os
import sys

from benchmarks import experiment
from opid_gym.cli import main
from tests.support import letters


def register() -> None:
    letters.register(delay=float(os.environ.get("OPID_TEST_LETTERS_DELAY", "0") or 0))
    experiment.CELL_MODULE = "tests.support.experiment_cli"


if __name__ == "__main__":
    register()
    sys.exit(main(sys.argv[1:]))
