"""WebShop throughput: the cost of one search / click, and env steps/s with 1 vs N workers.

Usage (from the repository root)::

    OPID_GYM_DATA=../shared/data python benchmarks/webshop_throughput.py [--workers 1 2]
        [--episodes 32] [--backend bm25s] [--agent random]

or from another script: ``webshop_throughput(data_root, workers=[1, 2])`` returns the
rows it prints. All numbers come from this one run on this machine:

* in-process step cost: mean milliseconds of a ``search[...]`` step and of a
  ``click[...]`` step (the expert's actions on eval goals, after a warm-up), and of the
  ``Buy Now`` step, which scores the purchase (spaCy);
* rollout throughput: the agent through ``run_episodes`` with the process pool on the
  ``webshop`` benchmark (15 steps), env steps per second including resets, for each
  worker count, and the scaling ratio rate(N) / (N/N₀ × rate(N₀)).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import opid_gym  # noqa: E402
from opid_gym.agent import make_agent  # noqa: E402
from opid_gym.history import WindowHistory  # noqa: E402
from opid_gym.registry import env_class  # noqa: E402
from opid_gym.rollout import EpisodeSpec, RolloutStats, run_episodes  # noqa: E402
from opid_gym.workers import ProcessPool  # noqa: E402


def step_costs(data_root: str | None, backend: str, goals: int = 30) -> dict[str, float]:
    """Mean seconds of search, click and buy steps, in process (warm)."""
    from environments.webshop.env import WebShopEnv

    env = WebShopEnv("eval", data_root=data_root, search_backend=backend)
    times: dict[str, list[float]] = {"search": [], "click": [], "buy": []}
    env.reset(seed=0, options={"task_index": 0})
    for action in env.expert_action(), "click[back to search]":  # warm-up: index, first search
        env.step(action)
    for i in range(goals):
        _, info = env.reset(seed=0, options={"task_index": i})
        for action in info["expert_plan"]:
            kind = "search" if action.startswith("search[") else "buy" if action == "click[buy now]" else "click"
            if kind == "search":  # time a real search, not the engine's memo of the expert's own query
                type(env.shop.engine)._search.cache_clear()
            t0 = time.perf_counter()
            env.step(action)
            times[kind].append(time.perf_counter() - t0)
    env.close()
    times["buy"] = times["buy"][1:]  # the first purchase loads spaCy
    return {k: sum(v) / len(v) for k, v in times.items() if v}


def pool_rate(data_root: str | None, workers: int, episodes: int, backend: str, agent: str) -> float:
    """Env steps per second of ``agent`` on the ``webshop`` benchmark with ``workers`` processes."""
    bench = opid_gym.BENCHMARKS.get("webshop")
    cls = env_class(bench.env_id)
    kwargs: dict[str, Any] = {**bench.eval_env_kwargs(), "search_backend": backend}
    if data_root:
        kwargs["data_root"] = data_root
    specs = [EpisodeSpec(i, 1000 + i, f"e{i}") for i in range(episodes)]
    with ProcessPool(bench.env_id, kwargs, workers=workers, with_expert=agent == "expert") as pool:
        # warm every worker up: imports, catalogue, search index, spaCy (a purchase)
        warm = [(w, 0, {"task_index": 3}) for w in range(workers)]
        answers = pool.reset(warm)
        plan = answers[0].info["expert_plan"]
        for action in plan:
            pool.step([(w, action) for w in range(workers)])
        stats = RolloutStats()
        t0 = time.perf_counter()
        run_episodes(pool, make_agent(agent), specs, env_id=bench.env_id, template=cls.prompt,
                     action_format=cls.action_format, history=WindowHistory(bench.history_length), stats=stats)
        seconds = time.perf_counter() - t0
    return stats.env_steps / seconds


def webshop_throughput(
    data_root: str | None = None, *, workers: list[int] | None = None, episodes: int = 128,
    backend: str = "bm25s", agent: str = "random",
) -> list[str]:
    """Measure and return the printed lines (see the module docstring)."""
    workers = workers or [1, os.cpu_count() or 2]
    lines = []
    costs = step_costs(data_root, backend)
    lines.append(f"webshop ({backend}) in-process step: search {1e3 * costs['search']:.2f} ms, "
                 f"click {1e3 * costs['click']:.3f} ms, buy now {1e3 * costs.get('buy', float('nan')):.2f} ms")
    rates = {w: pool_rate(data_root, w, episodes, backend, agent) for w in workers}
    base_w = workers[0]
    for w, r in rates.items():
        scale = r / (w / base_w * rates[base_w])
        lines.append(f"webshop ({backend}, {agent} agent): {w} worker(s): {r:8.2f} env steps/s  "
                     f"(scaling vs {base_w}: {scale:.2f} of linear)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", default=os.environ.get("OPID_GYM_DATA", "../shared/data"))
    parser.add_argument("--workers", type=int, nargs="+", default=[1, os.cpu_count() or 2])
    parser.add_argument("--episodes", type=int, default=128, help="episodes per pool measurement")
    parser.add_argument("--backend", default="bm25s", choices=["bm25s", "lucene", "auto"])
    parser.add_argument("--agent", default="random", choices=["random", "expert"])
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPU cores; python {sys.version.split()[0]}")
    for line in webshop_throughput(args.data_root, workers=args.workers, episodes=args.episodes,
                                   backend=args.backend, agent=args.agent):
        print(line)


if __name__ == "__main__":
    main()
