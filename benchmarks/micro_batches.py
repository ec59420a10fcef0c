"""A warm-start mini-batch's forward + backward, three ways, side by side.

The rows are the expert's steps on training games of the demo's benchmark
(``alfworld-unseen-short``'s training split, a seeded subset of games, rows shuffled with a
fixed seed), encoded as the demo's warm start encodes them; the model is the embedded
SmolLM2-135M under bf16 autocast, as the demo runs it. Mini-batches of 4 rows, each
computed as

* ``one micro-batch of 4``: one forward over the 4 rows, padded to the longest;
* ``sorted micro-batches of 2``: the trainers' cut (``opid_gym.trainer.by_length``), two
  forwards of rows of like length (the same gradient);
* ``top 15 blocks, sorted 2``: the same, with only the top 15 of the 30 decoder blocks
  trainable (``model.train_top_layers=15``, ``agents.hf.freeze_below_top``): the backward
  stops at block 15 (a different, smaller update: not the same gradient).

Each round times every way over all mini-batches; the median over ``--repeats`` rounds
is printed with the ratio to the first way.

    python benchmarks/micro_batches.py --data-root ../shared/data
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from opid_gym.demo import DEMO_BENCHMARK  # noqa: E402


def warm_start_rows(data_root: str | None, games: int) -> list[tuple[list[dict[str, str]], str]]:
    """(prompt messages, expert response) of every step of the expert on ``games`` training games."""
    from opid_gym.agent import make_agent
    from opid_gym.episode import data_kwargs
    from opid_gym.evaluate import evaluate
    import opid_gym

    bench = opid_gym.BENCHMARKS.get(DEMO_BENCHMARK)
    train = dataclasses.replace(bench, env_id=bench.train_env_id, env_kwargs=bench.train_env_kwargs)
    _, trajs = evaluate(train, make_agent("expert"), env_kwargs=data_kwargs(train.env_id, data_root), limit=games)
    return [(list(s.prompt), s.response) for t in trajs for s in t.steps]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--data-root", default=None, help="benchmark data folder (default: $OPID_GYM_DATA)")
    parser.add_argument("--games", type=int, default=6)
    parser.add_argument("--rows", type=int, default=16, help="rows timed (a multiple of 4)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)

    import torch

    from agents.hf import HFOptions, HFPolicy
    from opid_gym.trainer import by_length

    rows = warm_start_rows(args.data_root, args.games)
    random.Random(0).shuffle(rows)
    rows = rows[: args.rows - args.rows % 4]
    full = HFPolicy.from_pretrained(args.model, HFOptions(device="cpu", autocast="bfloat16"))
    top = HFPolicy.from_pretrained(args.model, HFOptions(device="cpu", autocast="bfloat16", train_top_layers=15))
    prompts = [full.encode_chat(m, 1024)[0] for m, _ in rows]
    responses = [full.encode_response(r) for _, r in rows]

    class _Rows:  # what by_length reads
        prompt_ids, response_ids = prompts, responses

    def run(policy: HFPolicy, micro: int) -> float:
        policy.model.train()
        start = time.perf_counter()
        for first in range(0, len(rows), 4):
            mini = list(range(first, first + 4))
            ordered = by_length(_Rows, mini) if micro < 4 else mini
            for k in range(0, 4, micro):
                part = ordered[k:k + micro]
                res = policy.forward_logprobs([prompts[i] for i in part], [responses[i] for i in part])
                (-(res.logprobs * res.mask).sum() / 100.0).backward()
            policy.model.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    ways = {"one micro-batch of 4": (full, 4), "sorted micro-batches of 2": (full, 2),
            "top 15 blocks, sorted 2": (top, 2)}
    times: dict[str, list[float]] = {w: [] for w in ways}
    for _ in range(args.repeats):
        for way, (policy, micro) in ways.items():
            times[way].append(run(policy, micro))
    lengths = sorted(len(p) + len(r) for p, r in zip(prompts, responses))
    print(f"{args.model}, {torch.get_num_threads()} threads, bf16 autocast; {len(rows)} expert steps of "
          f"{args.games} training games of {DEMO_BENCHMARK} ({lengths[0]}-{lengths[-1]} tokens), "
          f"mini-batches of 4; median of {args.repeats} rounds")
    print(f"{'forward + backward':<28}{'seconds':>9}{'vs one micro-batch':>20}")
    base = statistics.median(times["one micro-batch of 4"])
    for way in ways:
        t = statistics.median(times[way])
        print(f"{way:<28}{t:>9.1f}{base / t:>19.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
