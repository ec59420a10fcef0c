"""Generation speed with 1 torch thread vs more, side by side (why the CPU presets use 1).

On a machine whose cores are shared with other jobs, OpenMP threads wait for each other
at every one of the many small operations of a decode step; one thread avoids that.
The same prompts and seeds run alternately with each thread count (same tokens), and
the wall and CPU seconds of each are printed with their ratio.

    python benchmarks/cpu_threads.py                      # smollm2-135m, 4 prompts, 16 tokens
    python benchmarks/cpu_threads.py --model tiny --threads 1 2 4
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)

    import torch

    from agents.hf import HFOptions, HFPolicy
    from benchmarks.backend_throughput import make_prompts
    from opid_gym.backend import SamplingParams

    policy = HFPolicy.from_pretrained(args.model, HFOptions(device="cpu"))
    prompts = make_prompts(args.prompts)
    params = SamplingParams(max_new_tokens=args.new_tokens)
    seeds = list(range(len(prompts)))
    totals = {n: [0.0, 0.0] for n in args.threads}
    for _ in range(args.repeats):
        for n in args.threads:
            torch.set_num_threads(n)
            t0, c0 = time.perf_counter(), time.process_time()
            policy.generate(prompts, params, seeds)
            totals[n][0] += time.perf_counter() - t0
            totals[n][1] += time.process_time() - c0
    base = totals[args.threads[0]]
    print(f"{args.model}: {len(prompts)} prompts x {args.new_tokens} tokens, {args.repeats} repeats, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    print(f"{'threads':>7s} {'wall s':>8s} {'CPU s':>8s} {'wall / first':>13s}")
    for n, (wall, cpu) in totals.items():
        print(f"{n:7d} {wall:8.1f} {cpu:8.1f} {wall / base[0]:13.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
