"""Throughput of the model backends: generated and scored tokens per second.

The transformers backend runs the same prompts with the same seeds twice, one prompt at
a time (batch 1) and all at once (batch 8); per-request seeds make the two runs produce
the same tokens, so the ratio of their speeds is the batching gain. Scoring re-scores
the generated (prompt, response) pairs with 1 and 8 pairs per forward. At the largest
batch, plain ``model.generate`` (transformers' own loop) runs on the same prompts,
interleaved with ours, for the ratio of our decode loop to the library's.

Where vLLM runs (a GPU with ``vllm`` installed), the same prompts also go through
``vllm:<model>`` and the table gains a vLLM row: see :func:`load_vllm`.

    python benchmarks/backend_throughput.py                       # smollm2-135m on CPU
    python benchmarks/backend_throughput.py --model tiny --new-tokens 32
    python benchmarks/backend_throughput.py --model Qwen/Qwen2.5-0.5B-Instruct --device cuda --vllm

Numbers depend on the machine and on what else runs on it: compare only ratios
measured side by side in one run.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from opid_gym.backend import Generation, Generator, SamplingParams, Scorer  # noqa: E402

# Eight agent-style prompts of different lengths (written for this benchmark).
_ROOMS = ["kitchen", "bedroom", "bathroom", "living room", "office", "hallway", "garage", "pantry"]
_ITEMS = ["mug", "apple", "towel", "book", "lamp", "knife", "plate", "pen"]


def make_prompts(n: int = 8) -> list[list[dict[str, str]]]:
    prompts = []
    for i in range(n):
        seen = ", ".join(f"a {_ITEMS[(i + k) % 8]} {k + 1}" for k in range(2 + 3 * i))
        prompts.append([
            {"role": "system", "content": "You are an agent in a household. Think in <think></think>, then act "
                                          "in <action></action>."},
            {"role": "user", "content": f"You are in the {_ROOMS[i % 8]}. Looking around, you see {seen}. "
                                        f"Your task is to: put a clean {_ITEMS[i % 8]} on the table. "
                                        "What do you do next?"},
        ])
    return prompts


@dataclass
class Row:
    backend: str
    what: str
    batch: int
    tokens: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.tokens / max(self.seconds, 1e-9)


def time_generation(gen: Generator, prompts: Sequence[list[dict[str, str]]], params: SamplingParams,
                    seeds: Sequence[int], batch: int) -> tuple[list[Generation], float]:
    """Generate in chunks of ``batch`` prompts; return the generations and the seconds."""
    out: list[Generation] = []
    start = time.perf_counter()
    for i in range(0, len(prompts), batch):
        out += gen.generate(prompts[i:i + batch], params, seeds=seeds[i:i + batch])
    return out, time.perf_counter() - start


def time_scoring(scorer: Scorer, gens: Sequence[Generation], batch: int) -> float:
    pairs = [(g.prompt_token_ids, g.token_ids) for g in gens]
    start = time.perf_counter()
    for i in range(0, len(pairs), batch):
        chunk = pairs[i:i + batch]
        scorer.score([p for p, _ in chunk], [r for _, r in chunk])
    return time.perf_counter() - start


def load_transformers(model: str, args: argparse.Namespace) -> Any:
    from agents.hf import HFOptions, HFPolicy

    # max_batch_size / score_batch_size high enough that each call is one batch
    opts = HFOptions(device=args.device, dtype=args.dtype, autocast=args.autocast, max_batch_size=64,
                     score_batch_size=64)
    return HFPolicy.from_pretrained(model, opts)


def time_raw_generate(hf: Any, prompts: Sequence[list[dict[str, str]]], params: SamplingParams,
                      batch: int) -> tuple[int, float]:
    """The same prompts through plain ``model.generate`` (transformers' own decode loop).

    Prompts are chat-templated and tokenised exactly as the backend does, left-padded in
    chunks of ``batch``; sampling with the same temperature / top-p and one global seed.
    Tokens counted: each row's tokens up to and including its end-of-sequence token.
    Returns (tokens, seconds).
    """
    import torch

    ids = [hf.encode_chat(m, params.max_prompt_tokens)[0] for m in prompts]
    tokens = 0
    torch.manual_seed(0)
    sample = params.temperature > 0
    extra: dict[str, Any] = dict(do_sample=True, temperature=params.temperature, top_p=params.top_p,
                                 top_k=None) if sample else dict(do_sample=False)
    start = time.perf_counter()
    for i in range(0, len(ids), batch):
        chunk = ids[i:i + batch]
        P = max(len(p) for p in chunk)
        input_ids = torch.full((len(chunk), P), hf.pad_id, dtype=torch.long)
        attn = torch.zeros((len(chunk), P), dtype=torch.long)
        for j, p in enumerate(chunk):
            input_ids[j, P - len(p):] = torch.as_tensor(p)
            attn[j, P - len(p):] = 1
        with torch.inference_mode():
            out = hf.model.generate(input_ids=input_ids.to(hf.device), attention_mask=attn.to(hf.device),
                                    max_new_tokens=params.max_new_tokens, pad_token_id=hf.pad_id,
                                    eos_token_id=sorted(hf.eos_ids), **extra)
        for row in out[:, P:].tolist():
            n = next((k + 1 for k, t in enumerate(row) if t in hf.eos_ids), len(row))
            tokens += n
    return tokens, time.perf_counter() - start


def load_vllm(model: str, args: argparse.Namespace) -> tuple[Any | None, str]:
    """The vLLM side: (a Generator, possibly also a Scorer) or (None, why not).

    Hook for the vLLM backend (``agents/vllm_backend.py``): its ``make_agent`` returns a
    model agent whose ``generator`` is measured here exactly like the transformers one.
    """
    try:
        from agents import vllm_backend  # type: ignore[attr-defined]
    except ImportError as exc:
        return None, f"agents.vllm_backend not importable ({exc})"
    try:
        agent = vllm_backend.make_agent(model)
    except Exception as exc:  # noqa: BLE001 - report why vLLM cannot run here, keep the rest
        return None, f"{exc.__class__.__name__}: {exc}"
    gen = getattr(agent, "generator", None)
    if gen is None:
        return None, "vllm make_agent returned an agent without .generator"
    return gen, ""


def run_backend(name: str, backend: Any, prompts, params, seeds, batches: Sequence[int],
                report: Callable[[Row], None], repeats: int = 1) -> list[Generation]:
    gens: list[Generation] = []
    time_generation(backend, prompts[:1], SamplingParams(max_new_tokens=2), seeds[:1], 1)  # warm-up
    for b in batches:
        gens, secs = time_generation(backend, prompts, params, seeds, b)
        report(Row(name, "generate", b, sum(len(g.token_ids) for g in gens), secs))
    if isinstance(backend, Scorer) and gens:
        for _ in range(repeats):  # interleaved repeats; the ratio uses the best of each
            for b in batches:
                secs = time_scoring(backend, gens, b)
                report(Row(name, "score", b, sum(len(g.token_ids) for g in gens), secs))
    return gens


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default=None)
    p.add_argument("--autocast", default=None)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--raw-repeats", type=int, default=3,
                   help="interleaved runs of raw model.generate vs ours at the largest batch, and of "
                        "scoring at each batch size (ratios use the best run of each)")
    p.add_argument("--vllm", action="store_true", help="also run vllm:<model> on the same prompts")
    args = p.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    prompts = make_prompts(args.prompts)
    seeds = list(range(1000, 1000 + len(prompts)))
    params = SamplingParams(temperature=args.temperature, max_new_tokens=args.new_tokens)
    rows: list[Row] = []

    def report(row: Row) -> None:
        rows.append(row)
        print(f"{row.backend:13s} {row.what:9s} batch {row.batch:3d}  {row.tokens:6d} tokens  "
              f"{row.seconds:8.2f} s  {row.rate:9.1f} tok/s", flush=True)

    start = time.perf_counter()
    hf = load_transformers(args.model, args)
    print(f"model {args.model} ({hf.source}) loaded in {time.perf_counter() - start:.1f} s on {hf.device}; "
          f"{platform.machine()} cpus={os.cpu_count()} torch threads={torch.get_num_threads()} "
          f"torch {torch.__version__}")
    print(f"{len(prompts)} prompts, up to {args.new_tokens} new tokens, temperature {args.temperature}")
    hf_gens = run_backend("transformers", hf, prompts, params, seeds, args.batch_sizes, report,
                          repeats=args.raw_repeats)
    raw_batch = max(args.batch_sizes)
    time_raw_generate(hf, prompts[:1], SamplingParams(max_new_tokens=2), 1)  # warm-up
    for _ in range(args.raw_repeats):  # interleaved with ours again: both see the same machine load
        tokens, secs = time_raw_generate(hf, prompts, params, raw_batch)
        report(Row("raw-generate", "generate", raw_batch, tokens, secs))
        _, secs = time_generation(hf, prompts, params, seeds, raw_batch)
        report(Row("transformers", "generate", raw_batch, sum(len(g.token_ids) for g in hf_gens), secs))
    if args.vllm:
        vllm, why = load_vllm(args.model, args)
        if vllm is None:
            print(f"vllm          skipped: {why}")
        else:
            run_backend("vllm", vllm, prompts, params, seeds, args.batch_sizes, report)

    print("\nratios (same prompts, same run):")
    by: dict[tuple[str, str, int], float] = {}
    for r in rows:  # repeated measurements: the best of each (the least disturbed by load)
        by[(r.backend, r.what, r.batch)] = max(r.rate, by.get((r.backend, r.what, r.batch), 0.0))
    lo, hi = min(args.batch_sizes), max(args.batch_sizes)
    for backend in dict.fromkeys(r.backend for r in rows):
        for what in ("generate", "score"):
            if (backend, what, lo) in by and (backend, what, hi) in by and lo != hi:
                print(f"  {backend} {what}: batch {hi} / batch {lo} = {by[(backend, what, hi)] / by[(backend, what, lo)]:.2f}x")
    for what in ("generate", "score"):
        if ("vllm", what, hi) in by and ("transformers", what, hi) in by:
            print(f"  {what} at batch {hi}: vllm / transformers = "
                  f"{by[('vllm', what, hi)] / by[('transformers', what, hi)]:.2f}x")
    if ("raw-generate", "generate", raw_batch) in by:
        print(f"  generate at batch {raw_batch}: opid-gym decode loop / raw model.generate = "
              f"{by[('transformers', 'generate', raw_batch)] / by[('raw-generate', 'generate', raw_batch)]:.2f}x "
              f"(best of {args.raw_repeats} interleaved runs each)")
    same = sum(len(g.token_ids) for g in hf_gens)
    print(f"(generated tokens per run: {same}; batch sizes give the same tokens because seeds are per request)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
