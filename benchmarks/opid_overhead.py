"""OPID's training-step overhead over GRPO, on the same batch.

Rolls out one batch of real episodes once (default: ALFWorld, the ``tiny`` model), then
times the training side of one step — the loop's π_old and π_ref scoring, the learner's
``prepare``, ``advantages`` and the update — for GRPO and for OPID, each starting from
the same initial weights, alternating GRPO/OPID ``--repeats`` times. The analyzer's own
latency is excluded (OPID's time minus ``opid/analyzer_latency``; the default
``hindsight-rules`` analyzer takes milliseconds anyway). Prints the median seconds per
phase, where OPID's extra time goes, and the ratio OPID/GRPO (target ≤ 1.5).

    python benchmarks/opid_overhead.py                          # tiny, CPU
    python benchmarks/opid_overhead.py --model smollm2-135m --max-new-tokens 64
    python benchmarks/opid_overhead.py --set route=additive     # OPID config overrides

The rollout is the same for both learners and is not part of the ratio; it is printed
for scale (the ratio of whole steps, rollout included, is printed too).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def rollout(cfg, policy, bench, env_cls, data_kwargs):
    from agents.model_agent import ModelAgent
    from opid_gym.backend import SamplingParams
    from opid_gym.history import make_history
    from opid_gym.rollout import make_groups, run_episodes
    from opid_gym.workers import InProcessPool

    agent = ModelAgent(policy, SamplingParams(temperature=1.0, max_new_tokens=cfg.rollout.max_new_tokens,
                                              max_prompt_tokens=cfg.rollout.max_prompt_tokens))
    history = make_history(bench.history, **({"length": bench.history_length} if bench.history == "window" else {}))
    tasks = list(range(cfg.rollout.tasks_per_step))
    with InProcessPool(bench.train_env_id, {**bench.train_kwargs(), **data_kwargs}) as pool:
        return run_episodes(pool, agent, make_groups(tasks, cfg.rollout.group_size, seed=cfg.seed),
                            env_id=bench.train_env_id, template=env_cls.prompt, action_format=env_cls.action_format,
                            history=history)


def one_step(cfg, policy, state0, trajs, learner) -> dict[str, float]:
    """The training side of one loop step (as opid_gym.train does it), timed by phase."""
    import torch

    from opid_gym.learner import build_step_batch
    from opid_gym.train import make_step_context
    from opid_gym.trainer import LocalTrainer

    policy.module.load_state_dict(state0)
    trainer = LocalTrainer(policy, cfg.optim, total_steps=1, keep_ref=learner.needs_ref_logp, seed=cfg.seed)
    logs: dict[str, float] = {}
    t0 = time.perf_counter()
    batch = build_step_batch(trajs, gamma=learner.config.gamma)
    width = batch.mask.shape[1]
    batch.old_logp = trainer.score(batch.prompt_ids, batch.response_ids, width=width)
    if learner.needs_ref_logp:
        batch.ref_logp = trainer.score(batch.prompt_ids, batch.response_ids, which="ref", width=width)
    t1 = time.perf_counter()
    ctx = make_step_context(0, learner.run, trainer, batch, cfg.rollout.max_prompt_tokens, logs.update,
                            generator=policy)
    learner.prepare(batch, ctx)
    t2 = time.perf_counter()
    adv = torch.nan_to_num(learner.advantages(batch, ctx).detach().float()) * batch.mask
    t3 = time.perf_counter()
    trainer.update(batch, adv, learner, step=0)
    t4 = time.perf_counter()
    analyzer = logs.get("opid/analyzer_latency", 0.0)
    out = {"scoring (pi_old, pi_ref)": t1 - t0, "learner.prepare": t2 - t1 - analyzer, "advantages": t3 - t2,
           "update": t4 - t3, "analyzer (excluded)": analyzer, "samples": float(len(batch)),
           "response tokens": float(batch.mask.sum())}
    for key in ("encode", "score", "annotate"):
        if f"opid/{key}_seconds" in logs:
            out[f"  of which skill-prompt {key}"] = logs[f"opid/{key}_seconds"]
    out["total"] = out["scoring (pi_old, pi_ref)"] + out["learner.prepare"] + out["advantages"] + out["update"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--env", default="alfworld-unseen")
    parser.add_argument("--tasks", type=int, default=2, help="B")
    parser.add_argument("--group", type=int, default=4, help="G")
    parser.add_argument("--max-steps", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--max-prompt-tokens", type=int, default=1024)
    parser.add_argument("--micro-batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--set", dest="set_items", action="append", default=[], metavar="KEY=VALUE",
                        help="OPID config overrides, e.g. --set route=additive")
    args = parser.parse_args(argv)

    import torch

    import opid_gym
    from opid_gym.config import resolve_config
    from opid_gym.episode import data_kwargs as episode_data_kwargs
    from opid_gym.learner import RunInfo
    from opid_gym.registry import env_class
    from opid_gym.train import make_policy, run_benchmark

    torch.set_num_threads(args.threads)
    common = [f"rollout.tasks_per_step={args.tasks}", f"rollout.group_size={args.group}",
              f"env.max_steps={args.max_steps}", f"rollout.max_new_tokens={args.max_new_tokens}",
              f"rollout.max_prompt_tokens={args.max_prompt_tokens}", f"optim.micro_batch_size={args.micro_batch}",
              f"model.device={args.device}", "optim.lr=1e-5"]
    cfgs = {name: resolve_config(name, args.env, model=args.model, set_items=common + (
        args.set_items if name == "opid" else [])) for name in ("grpo", "opid")}
    cfg = cfgs["grpo"]
    bench = run_benchmark(cfg)
    env_cls = env_class(bench.train_env_id)
    data_kwargs = episode_data_kwargs(bench.train_env_id, None)
    policy = make_policy(cfg)
    state0 = copy.deepcopy(policy.module.state_dict())
    t = time.perf_counter()
    trajs = rollout(cfg, policy, bench, env_cls, data_kwargs)
    rollout_seconds = time.perf_counter() - t
    run = RunInfo(benchmark=bench, family=env_cls.family.name, template=env_cls.prompt, action_format=env_cls.action_format,
                  run_dir=None, seed=cfg.seed, max_prompt_tokens=cfg.rollout.max_prompt_tokens)
    learners = {name: opid_gym.LEARNERS.get(name)(c.learner, run) for name, c in cfgs.items()}
    one_step(cfg, policy, state0, trajs, learners["grpo"])  # warm-up (allocator, first-call costs)
    times: dict[str, list[dict[str, float]]] = {"grpo": [], "opid": []}
    for _ in range(args.repeats):
        for name in ("grpo", "opid"):
            times[name].append(one_step(cfg, policy, state0, trajs, learners[name]))
    med = {n: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for n, rs in times.items()}
    o = cfgs["opid"].learner
    device = "GPU " + torch.cuda.get_device_name(0) if args.device.startswith("cuda") else \
        f"CPU, {args.threads} torch thread(s)"
    print(f"model {args.model} on {device}; {args.env}: B={args.tasks} x G={args.group}, {args.max_steps} env steps, "
          f"{int(med['grpo']['samples'])} step samples, {int(med['grpo']['response tokens'])} response tokens; "
          f"OPID analyzer={o.analyzer} route={o.route}; median of {args.repeats}")
    print(f"rollout (shared, once): {rollout_seconds:.3f}s")
    keys = [k for k in med["opid"] if k not in ("samples", "response tokens")]
    print(f"{'phase':34s} {'GRPO s':>9s} {'OPID s':>9s}")
    for k in keys:
        print(f"{k:34s} {med['grpo'].get(k, 0.0):9.3f} {med['opid'][k]:9.3f}")
    ratio = med["opid"]["total"] / med["grpo"]["total"]
    whole = (med["opid"]["total"] + rollout_seconds) / (med["grpo"]["total"] + rollout_seconds)
    print(f"OPID/GRPO training-step time (analyzer excluded): {ratio:.3f}  (target <= 1.5)")
    print(f"OPID/GRPO whole step incl. the shared rollout:      {whole:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
