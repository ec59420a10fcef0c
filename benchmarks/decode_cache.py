"""The decode loop's KV cache and batch size, side by side, on an evaluation round of the demo.

The prompts are the first-step prompts of the demo's evaluation (``alfworld-unseen-short``,
20 episodes, the embedded SmolLM2-135M, bf16 autocast as the demo runs it). Three ways to
generate the same responses (same seeds), timed alternately over ``--repeats`` rounds
(the first round is a warm-up and not counted):

* ``grown, batch 16``: transformers' own ``DynamicCache`` (a ``torch.cat`` of the whole
  cache per step), 16 prompts per decode batch (so 20 prompts run as 16 + 4): the backend
  before ``HFPolicy`` wrote the cache in place;
* ``grown, batch 32``: the same cache, all 20 prompts in one decode batch;
* ``in place, batch 32``: the cache the backend uses now (``agents/hf.py:
  _reserved_layer_class``), one batch.

The two batch-32 rows must sample the same tokens (checked); batch 16 pads differently,
so its tokens can differ by float rounding.

    python benchmarks/decode_cache.py
    python benchmarks/decode_cache.py --model tiny --repeats 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from opid_gym.demo import DEMO_BENCHMARK  # noqa: E402


def eval_prompts(data_root: str | None, limit: int) -> list[list[dict[str, str]]]:
    """The first-step prompts of ``limit`` episodes of the demo's evaluation (the expert plays them)."""
    from opid_gym.agent import make_agent
    from opid_gym.episode import data_kwargs
    from opid_gym.evaluate import evaluate
    import opid_gym

    bench = opid_gym.BENCHMARKS.get(DEMO_BENCHMARK)
    _, trajs = evaluate(bench, make_agent("expert"), env_kwargs=data_kwargs(bench.env_id, data_root), limit=limit)
    return [list(t.steps[0].prompt) for t in trajs]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--data-root", default=None, help="benchmark data folder (default: $OPID_GYM_DATA)")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    import torch

    import agents.hf as hf
    from agents.hf import HFOptions, HFPolicy
    from opid_gym.backend import SamplingParams

    messages = eval_prompts(args.data_root, args.episodes)
    policy = HFPolicy.from_pretrained(args.model, HFOptions(device="cpu", autocast="bfloat16"))
    prompts = [policy.encode_chat(m)[0] for m in messages]
    params = SamplingParams(temperature=1.0, max_new_tokens=args.new_tokens)
    seeds = list(range(len(prompts)))
    in_place = hf._reserved_cache

    def run(mode: str) -> tuple[float, list[list[int]]]:
        grown = mode.startswith("grown")
        hf._reserved_cache = (lambda model, reserve: None) if grown else in_place
        policy.options = hf._replace(policy.options, max_batch_size=16 if mode.endswith("16") else 32)
        start = time.perf_counter()
        gens = policy.generate_ids(prompts, params, seeds=seeds)
        return time.perf_counter() - start, [g.token_ids for g in gens]

    modes = ["grown, batch 16", "grown, batch 32", "in place, batch 32"]
    times: dict[str, list[float]] = {m: [] for m in modes}
    tokens: dict[str, list[list[int]]] = {}
    for round_ in range(args.repeats):
        for mode in modes:
            seconds, tokens[mode] = run(mode)
            if round_ > 0 or args.repeats == 1:
                times[mode].append(seconds)
    hf._reserved_cache = in_place
    same = tokens["grown, batch 32"] == tokens["in place, batch 32"]
    lengths = sorted(len(p) for p in prompts)
    print(f"{args.model}, {torch.get_num_threads()} threads, bf16 autocast; {len(prompts)} first-step prompts of "
          f"{DEMO_BENCHMARK} ({lengths[0]}-{lengths[-1]} tokens), up to {args.new_tokens} new tokens; "
          f"median of {len(times[modes[0]])} rounds after a warm-up")
    print(f"{'generation':<22}{'seconds':>9}{'tokens':>8}{'vs grown, batch 16':>20}")
    base = statistics.median(times[modes[0]])
    for mode in modes:
        t = statistics.median(times[mode])
        print(f"{mode:<22}{t:>9.2f}{sum(map(len, tokens[mode])):>8}{base / t:>19.2f}x")
    print(f"in place and grown (batch 32) sampled the same tokens: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
