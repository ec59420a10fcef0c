"""Replay ScienceWorld gold paths on the raw engine under the reference's settings.

For a seeded sample of one level's test pairs (``random.seed(0); random.sample``), load
each with the ``easy`` simplifications and a 100-move engine limit (the OPID reference's
configuration), replay the engine's gold path until the engine reports ``done``, and
print per episode: gold-path length, steps used, moves, final score, the engine's own
completion flag, and who calls it a win: the reference's rule (``done and score > 0``,
where ``done`` includes running out of moves) and opid-gym's (the engine's completion
with a positive score; running out of moves is a cut-off). It shows which gold paths do
not fit the move limit and where the two rules disagree (docs/sciworld.md).

    python benchmarks/sciworld_gold_paths.py [--level 0] [--n 30] [--data-root DIR]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from environments.sciworld.env import _start_engine  # noqa: E402
from environments.sciworld.splits import engine_task_names, load_pairs  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--level", type=int, default=0, choices=[0, 1, 2])
    parser.add_argument("--n", type=int, default=30, help="pairs sampled from the level's test split")
    parser.add_argument("--env-step-limit", type=int, default=100)
    parser.add_argument("--data-root", default=None)
    args = parser.parse_args()
    pairs = load_pairs(args.level, "test", args.data_root)
    random.seed(0)
    sample = random.sample(pairs, min(args.n, len(pairs)))
    names = engine_task_names()
    engine = _start_engine(args.env_step_limit)
    ref_wins = our_wins = 0
    t0 = time.time()
    try:
        for t, v in sample:
            engine.load(names[t], v, "easy", generateGoldPath=True)
            gold = list(engine.get_gold_action_sequence())
            engine.reset()
            done, info, used = False, {"score": 0, "moves": 0}, 0
            for used, action in enumerate(gold, start=1):
                _, _, done, info = engine.step(action)
                if done:
                    break
            completed = bool(engine.server.getCompleted())
            ref_won = done and info["score"] > 0
            our_won = completed and info["score"] > 0
            ref_wins += ref_won
            our_wins += our_won
            print(f"{names[t]}/{v}: gold {len(gold)} used {used} moves {info['moves']} score {info['score']} "
                  f"completed {completed} reference-won {ref_won} won {our_won}", flush=True)
    finally:
        engine.close()
    n = len(sample)
    print(f"L{args.level} test, {n} pairs: won {our_wins}/{n}; the reference's rule says {ref_wins}/{n} "
          f"({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
