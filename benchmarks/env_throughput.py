"""Environment throughput: steps/s with 1 vs N worker processes, and our wrapper's overhead.

Usage (from the repository root)::

    OPID_GYM_DATA=../shared/data python benchmarks/env_throughput.py [--games 8] [--workers 1 2]
        [--family alfworld webshop]

Printed, all measured in this one run on this machine:

* ALFWorld wrapper overhead: the same games stepped with the same actions through raw
  ``textworld`` (``textworld.start`` + ALFWorld's demangler) and through
  ``opid_gym.make("alfworld-unseen")``; time per ``step`` call only (game loading is the
  same code in both), reported as ours/raw - 1.
* Rollout throughput per family: the ``random`` agent through ``run_episodes`` with the
  process pool, env steps per second including resets (after one untimed warm-up pass
  over the same episodes), for each worker count, and the scaling ratio
  rate(N) / (N × rate(1)).
* With ``--auto``: the same rollout through ``make_pool(kind="auto")``, which steps the
  environments in-process when a probed step is cheaper than a message to a worker.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

import opid_gym  # noqa: E402
from opid_gym.agent import make_agent  # noqa: E402
from opid_gym.history import WindowHistory  # noqa: E402
from opid_gym.registry import env_class  # noqa: E402
from opid_gym.rollout import EpisodeSpec, RolloutStats, run_episodes  # noqa: E402
from opid_gym.workers import ProcessPool, make_pool  # noqa: E402

FAMILY_BENCH = {"alfworld": "alfworld-unseen", "webshop": "webshop", "searchqa": "searchqa-hotpotqa"}


def _actions(rng: np.random.Generator, plan: list[str], admissible: list[str], n: int) -> list[str]:
    """A fixed action script: a few random admissible actions, then the walkthrough."""
    return [admissible[int(rng.integers(len(admissible)))] for _ in range(n)] + plan


def alfworld_overhead(data_root: str, games: int, repeats: int) -> tuple[float, float, int]:
    """Seconds per step raw vs wrapped, and the number of steps timed (per side)."""
    import textworld
    from alfworld.agents.environment.alfred_tw_env import AlfredDemangler, AlfredInfos

    from environments.alfworld.games import list_games

    paths = [g.path for g in list_games("valid_unseen", data_root)[:games]]
    wrapped = opid_gym.make("alfworld-unseen", data_root=data_root)
    raw_t = ours_t = 0.0
    steps = 0
    for _ in range(repeats):
        for i, path in enumerate(paths):
            rng = np.random.default_rng(i)
            request = textworld.EnvInfos(won=True, admissible_commands=True, extras=["walkthrough"])
            raw = textworld.start(str(path), request, wrappers=[AlfredDemangler(shuffle=False), AlfredInfos])
            state = raw.reset()
            script = _actions(rng, list(state["extra.walkthrough"]), list(state["admissible_commands"]), 6)
            t0 = time.perf_counter()
            for a in script:
                raw.step(a)
            raw_t += time.perf_counter() - t0
            raw.close()
            wrapped.reset(seed=0, options={"task_index": i})
            t0 = time.perf_counter()
            for a in script:
                _, _, term, trunc, _ = wrapped.step(a)
                if term or trunc:
                    break
            ours_t += time.perf_counter() - t0
            steps += len(script)
    wrapped.close()
    return raw_t / steps, ours_t / steps, steps


def pool_rate(bench_name: str, data_root: str, workers: int, episodes: int, max_steps: int,
              kind: str = "process") -> tuple[float, str]:
    """Env steps per second, and the pool that ran them (``kind="auto"``: the one chosen)."""
    bench = opid_gym.BENCHMARKS.get(bench_name)
    cls = env_class(bench.env_id)
    kwargs = {"max_steps": max_steps, **bench.env_kwargs, "data_root": data_root}
    specs = [EpisodeSpec(i, 1000 + i, f"e{i}") for i in range(episodes)]
    pool_cm = ProcessPool(bench.env_id, kwargs, workers=workers) if kind == "process" else \
        make_pool(bench.env_id, kwargs, workers=workers, kind=kind)
    with pool_cm as pool:
        def rollout(stats: RolloutStats) -> None:
            run_episodes(pool, make_agent("random"), specs, env_id=bench.env_id, template=cls.prompt,
                         action_format=cls.action_format, history=WindowHistory(2), stats=stats)

        # Warm-up: the same episodes once, untimed, so that every worker has built its
        # environments and loaded what they load lazily (search indexes, spaCy, engines).
        rollout(RolloutStats())
        stats = RolloutStats()
        t0 = time.perf_counter()
        rollout(stats)
        seconds = time.perf_counter() - t0
        chosen = type(pool).__name__
    return stats.env_steps / seconds, chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", default=os.environ.get("OPID_GYM_DATA", "../shared/data"))
    parser.add_argument("--games", type=int, default=8, help="ALFWorld games for the overhead test")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--episodes", type=int, default=8, help="episodes per pool measurement")
    parser.add_argument("--max-steps", type=int, default=20)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, os.cpu_count() or 2])
    parser.add_argument("--auto", action="store_true",
                        help="also run make_pool(kind='auto') (in-process for cheap steps) at the largest count")
    parser.add_argument("--family", nargs="+", default=["alfworld"], choices=sorted(FAMILY_BENCH))
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPU cores; python {sys.version.split()[0]}")
    if "alfworld" in args.family:
        raw, ours, n = alfworld_overhead(args.data_root, args.games, args.repeats)
        print(f"ALFWorld step time, {n} steps each: raw textworld {1e3 * raw:.2f} ms, opid-gym {1e3 * ours:.2f} ms "
              f"-> wrapper overhead {100 * (ours / raw - 1):+.1f}%")
    for family in args.family:
        rates = {w: pool_rate(FAMILY_BENCH[family], args.data_root, w, args.episodes, args.max_steps)[0]
                 for w in args.workers}
        base = rates[args.workers[0]]
        for w, r in rates.items():
            scale = r / (w / args.workers[0] * base)
            print(f"{family}: {w} worker(s): {r:7.2f} env steps/s  (scaling vs {args.workers[0]}: {scale:.2f} of linear)")
        if args.auto:
            w = max(args.workers)
            rate, chosen = pool_rate(FAMILY_BENCH[family], args.data_root, w, args.episodes, args.max_steps, "auto")
            print(f"{family}: make_pool(kind='auto', workers={w}) chose {chosen}: {rate:7.2f} env steps/s "
                  f"({rate / max(rates.values()):.2f} of the best fixed pool above)")


if __name__ == "__main__":
    main()
