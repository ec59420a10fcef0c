"""Rollout pipeline: does a rollout run at the speed of the slower of model and engine?

For B tasks × G members with a model agent (default the tiny model) and a worker pool
(default 2 processes), all in one run on this machine:

1. **sequential**: ``run_episodes(overlap=False)`` — the agent acts for every running
   episode, then the pool steps them all; every request and reply is recorded.
2. **generation only**: the recorded agent calls replayed against the model alone (the
   same requests in the same batches, no environment).
3. **environment only**: the same episodes through the pool with an agent that answers
   the recorded replies instantly (the same resets and steps, no model).
4. **overlapped**: ``run_episodes(overlap=True)`` with the model (environments step one
   wave of episodes in the background while the model acts for the other); its
   trajectories are checked equal to the sequential ones.

Perfect overlap would take max(generation only, environment only); printed is
overlapped / that (goal ≤ 1.15) and sequential / that. Then, for ALFWorld, reset latency
with the translation cache off vs on (:mod:`environments.alfworld.reset_cache`; a warm
disk cache, in-process resets of the same games).

    OPID_GYM_DATA=../shared/data python benchmarks/rollout_pipeline.py
    python benchmarks/rollout_pipeline.py --env alfworld-unseen --tasks 4 --group 2 --workers 2

Compare only the ratios: absolute times depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import opid_gym  # noqa: E402
from opid_gym.agent import AgentReply, AgentRequest, make_agent  # noqa: E402
from opid_gym.family import family_of_class  # noqa: E402
from opid_gym.history import WindowHistory  # noqa: E402
from opid_gym.registry import env_class  # noqa: E402
from opid_gym.rollout import RolloutStats, make_groups, run_episodes  # noqa: E402
from opid_gym.workers import ProcessPool  # noqa: E402


class Recorder:
    """Passes calls to ``inner`` and records each call's requests and replies."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name, self.needs_expert = inner, getattr(inner, "name", "agent"), False
        self.calls: list[list[AgentRequest]] = []
        self.replies: dict[tuple[int, int], AgentReply] = {}

    def act(self, requests: Sequence[AgentRequest]) -> list[AgentReply]:
        replies = self.inner.act(requests)
        self.calls.append(list(requests))
        for r, reply in zip(requests, replies):
            self.replies[(r.seed, r.step)] = reply
        return replies


class Replay:
    """Answers each request with the recorded reply at no model cost."""

    name, needs_expert = "replay", False

    def __init__(self, replies: dict[tuple[int, int], AgentReply]) -> None:
        self.replies = replies

    def act(self, requests: Sequence[AgentRequest]) -> list[AgentReply]:
        return [self.replies[(r.seed, r.step)] for r in requests]


def reset_latency(bench_id: str, data_root: str, games: int) -> tuple[float, float]:
    """Mean seconds per in-process reset: translation cache off, then on (warm)."""
    from environments.alfworld import reset_cache

    bench = opid_gym.BENCHMARKS.get(bench_id)
    kwargs = {**bench.env_kwargs, "data_root": data_root}
    times = {}
    warm = opid_gym.make(bench.env_id, **kwargs, translation_cache="disk")
    for i in range(games):  # fill the disk cache
        warm.reset(seed=0, options={"task_index": i})
    warm.close()
    for mode in ("off", "disk"):
        reset_cache.clear_memory()  # like a fresh worker process: only the disk cache helps
        env = opid_gym.make(bench.env_id, **kwargs, translation_cache=mode)
        t0 = time.perf_counter()
        for i in range(games):
            reset_cache.clear_memory()
            env.reset(seed=0, options={"task_index": i})
        times[mode] = (time.perf_counter() - t0) / games
        env.close()
    return times["off"], times["disk"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default="alfworld-unseen", help="a benchmark id")
    p.add_argument("--data-root", default=os.environ.get("OPID_GYM_DATA", "../shared/data"))
    p.add_argument("--agent", default="hf:tiny")
    p.add_argument("--tasks", type=int, default=4, help="B")
    p.add_argument("--group", type=int, default=2, help="G")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--max-steps", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=24)
    p.add_argument("--threads", type=int, default=1, help="torch threads of the model process")
    p.add_argument("--repeats", type=int, default=2, help="interleaved rounds (each figure: its best round)")
    p.add_argument("--reset-games", type=int, default=4, help="ALFWorld games for the reset latency")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    bench = opid_gym.BENCHMARKS.get(args.env)
    cls = env_class(bench.env_id)
    kwargs = {**bench.env_kwargs, "data_root": args.data_root, "max_steps": args.max_steps}
    agent = make_agent(args.agent, max_new_tokens=args.new_tokens, device="cpu") if args.agent.startswith("hf:") \
        else make_agent(args.agent)
    specs = make_groups(list(range(args.tasks)), args.group, seed=1)
    print(f"machine: {os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}; {args.env}, "
          f"B={args.tasks} x G={args.group} = {len(specs)} episodes, {args.workers} workers, agent {args.agent}, "
          f"up to {args.max_steps} steps, {args.new_tokens} new tokens")

    def rollout(pool: Any, who: Any, overlap: bool) -> tuple[list[Any], float, RolloutStats]:
        stats = RolloutStats()
        t0 = time.perf_counter()
        trajs = run_episodes(pool, who, specs, env_id=bench.env_id, template=cls.prompt,
                             action_format=cls.action_format, history=WindowHistory(2), stats=stats, overlap=overlap)
        return trajs, time.perf_counter() - t0, stats

    times: dict[str, list[float]] = {"seq": [], "env": [], "gen": [], "ovl": []}
    with ProcessPool(bench.env_id, kwargs, workers=args.workers) as pool:
        rollout(pool, make_agent("random"), False)  # warm-up: workers, caches, engines
        for _ in range(args.repeats):  # interleaved rounds: each figure is its best round
            rec = Recorder(agent)
            seq_trajs, seq_s, seq_stats = rollout(pool, rec, False)
            _, env_s, _ = rollout(pool, Replay(rec.replies), False)
            t0 = time.perf_counter()
            for call in rec.calls:
                agent.act(call)
            gen_s = time.perf_counter() - t0
            ovl_trajs, ovl_s, ovl_stats = rollout(pool, agent, True)
            for key, value in (("seq", seq_s), ("env", env_s), ("gen", gen_s), ("ovl", ovl_s)):
                times[key].append(value)
            print(f"  round: sequential {seq_s:.2f} s, environment only {env_s:.2f} s, generation only "
                  f"{gen_s:.2f} s, overlapped {ovl_s:.2f} s", flush=True)
    seq_s, env_s, gen_s, ovl_s = (min(times[k]) for k in ("seq", "env", "gen", "ovl"))
    same = [[(s.response, s.next_observation) for s in t.steps] for t in ovl_trajs] == \
        [[(s.response, s.next_observation) for s in t.steps] for t in seq_trajs]
    best = max(gen_s, env_s)
    print(f"episodes: {len(seq_trajs)}, env steps {seq_stats.env_steps}, agent calls: sequential "
          f"{seq_stats.agent_calls}, overlapped {ovl_stats.agent_calls}; overlapped trajectories identical: {same}")
    print(f"best of {args.repeats} rounds:")
    print(f"generation only  {gen_s:8.2f} s")
    print(f"environment only {env_s:8.2f} s")
    print(f"sequential       {seq_s:8.2f} s  = {seq_s / best:.2f} x max(generation, environment)")
    print(f"overlapped       {ovl_s:8.2f} s  = {ovl_s / best:.2f} x max(generation, environment)  (goal <= 1.15)")
    if family_of_class(cls).name == "alfworld" and args.reset_games > 0:
        off, on = reset_latency(args.env, args.data_root, args.reset_games)
        print(f"ALFWorld reset, {args.reset_games} games: uncached {off:.2f} s, cached {on:.2f} s "
              f"-> cached/uncached {on / off:.2f} (goal <= 0.2)")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
