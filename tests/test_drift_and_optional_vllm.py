"""The drift check as a pure function, and vLLM staying optional (run without vLLM)."""

from __future__ import annotations

import importlib.util

import pytest

from agents.drift import check_drift, logprob_drift
from opid_gym.backend import WeightSyncError


def test_drift_statistics_hand_computed():
    engine = [[-1.0, -2.0], [-0.5]]
    trainer = [[-1.1, -2.0], [-0.2]]
    r = logprob_drift(engine, trainer, max_mean_abs=0.2, max_abs=0.5)
    assert r.tokens == 3
    assert r.mean_abs == pytest.approx((0.1 + 0.0 + 0.3) / 3)
    assert r.max_abs == pytest.approx(0.3)
    assert r.ok


def test_check_trips_on_mean_and_on_max():
    trainer = [[-1.0] * 10]
    # one token far off: the mean stays small, the max trips
    one_off = [[-1.0] * 9 + [-3.0]]
    with pytest.raises(WeightSyncError, match="max 2"):
        check_drift(one_off, trainer, max_mean_abs=0.5, max_abs=1.0)
    # every token a bit off: the max is fine, the mean trips
    all_off = [[-1.3] * 10]
    with pytest.raises(WeightSyncError, match="mean"):
        check_drift(all_off, trainer, max_mean_abs=0.2, max_abs=1.0)
    assert check_drift(all_off, trainer, max_mean_abs=0.5, max_abs=1.0).ok


def test_identical_logprobs_pass_and_report():
    lp = [[-0.1, -2.5, -7.0], [-1.0]]
    r = check_drift(lp, [list(x) for x in lp])
    assert r.ok and r.mean_abs == 0.0 and r.max_abs == 0.0
    assert "4 probe tokens" in r.describe()


@pytest.mark.parametrize("engine,trainer,match", [
    ([[-1.0]], [[-1.0], [-2.0]], "batch size"),
    ([[-1.0, -2.0]], [[-1.0]], "scored 2 tokens"),
    ([[float("nan")]], [[-1.0]], "non-finite"),
    ([[-1.0]], [[float("-inf")]], "non-finite"),
    ([[], []], [[], []], "no response tokens"),
])
def test_mismatched_inputs_are_sync_failures(engine, trainer, match):
    with pytest.raises(WeightSyncError, match=match):
        logprob_drift(engine, trainer)


# --------------------------------------------------------------- optional vLLM
needs_no_vllm = pytest.mark.skipif(importlib.util.find_spec("vllm") is not None,
                                   reason="vLLM is installed here; this checks the install hint without it")


def test_import_without_vllm_is_fine():
    import agents.vllm_backend as vb  # must not import vllm at module level

    assert "vllm" in vb.INSTALL_HINT and "opid-gym[vllm]" in vb.INSTALL_HINT


@needs_no_vllm
def test_using_the_backend_without_vllm_gives_the_install_hint():
    from agents.vllm_backend import VLLMBackend, VLLMConfig, make_agent

    with pytest.raises(ImportError, match=r"pip install 'opid-gym\[vllm\]'"):
        VLLMBackend(VLLMConfig(model="tiny"))
    with pytest.raises(ImportError, match=r"opid-gym\[vllm\]"):
        make_agent("tiny", temperature=0.4)


@needs_no_vllm
def test_cli_eval_with_vllm_agent_without_vllm_is_one_line(capsys):
    from opid_gym.cli import main

    assert main(["eval", "--agent", "vllm:tiny", "--env", "alfworld-unseen", "--episodes", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("opid-bench: error:") and "opid-gym[vllm]" in err and "Traceback" not in err


def test_unknown_vllm_option_is_rejected_before_building():
    pytest.importorskip("transformers")
    from agents.model_agent import AgentOptionError
    from agents.vllm_backend import make_agent

    with pytest.raises(AgentOptionError, match="gpu_memory_utilisation"):
        make_agent("tiny", gpu_memory_utilisation=0.5)
