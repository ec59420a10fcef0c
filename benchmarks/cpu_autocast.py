"""bf16 autocast vs float32 on this CPU, side by side: why the demo uses autocast, and
why on a CPU the decode steps after a prompt run in float32 (``HFPolicy._decode_step_autocast``).

Three workloads of the demo's shape (SmolLM2-135M, ALFWorld prompts of ~440 tokens),
each timed alternately in float32 and under bf16 autocast, ``--repeats`` times (the
first round is a warm-up and not counted):

* prompt forward: ``--rows`` prompts at once (an evaluation round's prefill);
* decode step: one token for each of 16 rows against their KV cache;
* training forward + backward: 4 rows (an SFT / RL micro-batch).

    python benchmarks/cpu_autocast.py
    python benchmarks/cpu_autocast.py --model tiny --prompt-len 64
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--prompt-len", type=int, default=440)
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--decode-steps", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)

    import torch

    from agents.hf import HFOptions, HFPolicy, _out_cache

    if args.threads:
        torch.set_num_threads(args.threads)
    policy = HFPolicy.from_pretrained(args.model, HFOptions(device="cpu", dtype="float32"))
    model, cache_kw = policy.model, policy._cache_kw  # the KV-cache argument as the backend names it
    vocab = model.config.vocab_size
    gen = torch.Generator().manual_seed(0)
    prompts = torch.randint(0, vocab, (args.rows, args.prompt_len), generator=gen)
    batch = torch.randint(0, vocab, (4, args.prompt_len + 24), generator=gen)

    def ctx(mode: str):
        return torch.autocast("cpu", dtype=torch.bfloat16) if mode == "bf16" else contextlib.nullcontext()

    def prefill(mode: str) -> float:
        with torch.inference_mode(), ctx(mode):
            t = time.perf_counter()
            model(input_ids=prompts, use_cache=False)
            return time.perf_counter() - t

    def decode(mode: str) -> float:
        with torch.inference_mode():
            with torch.autocast("cpu", dtype=torch.bfloat16):  # the prompt as the demo runs it
                out = model(input_ids=prompts, use_cache=True)
            cache = _out_cache(out)
            with ctx(mode):
                t = time.perf_counter()
                for _ in range(args.decode_steps):
                    out = model(input_ids=prompts[:, :1], use_cache=True, **{cache_kw: cache})
                    cache = _out_cache(out)
                return (time.perf_counter() - t) / args.decode_steps

    def train_step(mode: str) -> float:
        model.zero_grad(set_to_none=True)
        t = time.perf_counter()
        with ctx(mode):
            loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        return time.perf_counter() - t

    print(f"{args.model}, {torch.get_num_threads()} threads, prompts of {args.prompt_len} tokens; "
          f"median of {args.repeats - 1} rounds after a warm-up")
    print(f"{'workload':42s} {'float32 s':>10s} {'bf16 autocast s':>16s} {'fp32/bf16':>10s}")
    for name, fn in ((f"prompt forward, {args.rows} rows", prefill), ("decode step, 16 rows (one token each)", decode),
                     ("training forward+backward, 4 rows", train_step)):
        times: dict[str, list[float]] = {"fp32": [], "bf16": []}
        for r in range(args.repeats):
            for mode in ("fp32", "bf16"):
                s = fn(mode)
                if r:
                    times[mode].append(s)
        a, b = statistics.median(times["fp32"]), statistics.median(times["bf16"])
        print(f"{name:42s} {a:10.3f} {b:16.3f} {a / b:10.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
