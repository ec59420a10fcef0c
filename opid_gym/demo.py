"""``opid-bench demo``: a main job that visibly learns on a 2-core CPU.

Three stages on one fixed evaluation subset (the same episodes each time):

1. the base model (the embedded SmolLM2-135M-Instruct) is evaluated;
2. a supervised warm start (``sft``: the expert's steps on the training split, its
   reasoning stating the sub-goal the plan pursues) — a run folder ``<out>/sft``,
   whose final eval is "after the warm start";
3. RL (OPID by default, G = 4) from the warm start's weights (``--model run:<out>/sft``,
   which is also the KL's reference policy) — a run folder ``<out>/<learner>``, whose
   final eval is "after RL".

It ends with a table (success and invalid-action rate per stage) and the path of the
RL run's HTML report. The protocol is ``alfworld-unseen-short`` (unseen games whose
expert plan has at most 4 actions, 6 steps) so success is reachable in the step limit;
the settings below are the demo's, shown with ``--print-config`` and changeable with
``--set`` (both runs) or ``--sft-set`` / ``--rl-set`` (one of them).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

DEMO_BENCHMARK = "alfworld-unseen-short"

COMMON: dict[str, Any] = {
    # the embedded model on torch's default threads (one per core); 20 fixed unseen games,
    # evaluated only at the end of each stage; two environment worker processes (game
    # resets run beside each other and beside the model)
    "model.name": "smollm2-135m", "model.autocast": "bfloat16", "env.workers": 2,
    "rollout.max_new_tokens": 64, "rollout.max_prompt_tokens": 1024,
    "eval.limit": 20, "eval.every": 0, "checkpoint.every": 1000, "log.tensorboard": False,
}
SFT_SETTINGS: dict[str, Any] = {
    # 40 of the 64 games of the training scenes whose plan fits the 6 steps (a seeded draw),
    # the expert's steps, one epoch in mini-batches of 4 (two micro-batches of 2, rows of
    # like length together); the top 15 of the 30 blocks train
    "steps": 1, "rollout.tasks_per_step": 40, "rollout.group_size": 1, "model.train_top_layers": 15,
    "optim.lr": 1e-4, "optim.epochs": 1, "optim.mini_batch_size": 4, "optim.micro_batch_size": 2,
}
RL_SETTINGS: dict[str, Any] = {
    # G = 4 members per task; the sampler's log-probs serve as π_old (same model)
    "steps": 2, "rollout.tasks_per_step": 1, "rollout.group_size": 4, "rollout.old_logp": "sampler",
    "optim.lr": 1e-5, "optim.mini_batch_size": 64, "optim.micro_batch_size": 4,
}


def add_demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--learner", default="opid", help="the RL learner after the warm start (default: opid)")
    p.add_argument("--env", default=DEMO_BENCHMARK, help=f"benchmark id (default: {DEMO_BENCHMARK})")
    p.add_argument("--out", default=None, help="folder of the two runs (default: runs/demo-<time>)")
    p.add_argument("--set", dest="set_items", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value of both runs (repeatable)")
    p.add_argument("--sft-set", action="append", default=[], metavar="KEY=VALUE", help="... of the warm start only")
    p.add_argument("--rl-set", action="append", default=[], metavar="KEY=VALUE", help="... of the RL run only")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (one line per step instead)")
    p.add_argument("--print-config", action="store_true", help="print both resolved configs and exit")


def _items(settings: dict[str, Any]) -> list[str]:
    return [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in settings.items()]


def demo_configs(learner: str, benchmark: str, sft_dir: Path, *, data_root: str | None = None,
                 set_items: list[str] = (), sft_set: list[str] = (), rl_set: list[str] = ()) -> tuple[Any, Any]:
    """The resolved configs of the warm start and of the RL run that starts from ``sft_dir``."""
    from opid_gym.config import resolve_config

    root = [f"env.data_root={Path(data_root).expanduser().resolve()}"] if data_root else []
    shared = root + _items(COMMON)
    sft = resolve_config("sft", benchmark, set_items=shared + _items(SFT_SETTINGS) + list(set_items) + list(sft_set))
    rl = resolve_config(learner, benchmark, set_items=shared + _items(RL_SETTINGS) + list(set_items)
                        + [f"model.name=run:{sft_dir.resolve()}"] + list(rl_set))
    return sft, rl


def evaluate_base(cfg: Any, out_dir: Path) -> Any:
    """The base model of ``cfg`` on the run's final-eval episodes (same protocol, seed, subset)."""
    from opid_gym.backend import SamplingParams
    from opid_gym.episode import data_kwargs
    from opid_gym.evaluate import evaluate
    from opid_gym.registry import load_object
    from opid_gym import builtin
    from opid_gym.train import make_policy, run_benchmark

    if cfg.model.cpu_threads is not None:
        import torch

        torch.set_num_threads(cfg.model.cpu_threads)
    bench = run_benchmark(cfg)
    policy = make_policy(cfg)
    agent = load_object(builtin.MODEL_AGENT)(policy, SamplingParams(**bench.validation_sampling()),
                                             name=f"{cfg.model.backend}:{cfg.model.name}")
    kwargs = data_kwargs(bench.env_id, cfg.env.data_root)
    summary, _ = evaluate(bench, agent, agent_name=agent.name, env_kwargs=kwargs, limit=cfg.eval.limit,
                          workers=cfg.env.workers, seed=cfg.seed, max_concurrent=cfg.env.max_concurrent,
                          out_dir=out_dir)
    return summary


def cmd_demo(args: argparse.Namespace) -> int:
    from opid_gym.cli import CLIError
    from opid_gym.config import ConfigError, config_to_dict
    from opid_gym.launch import _train
    from opid_gym.train import Run

    out = Path(args.out) if args.out else Path("runs") / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    sft_dir, rl_dir = out / "sft", out / args.learner
    try:
        sft_cfg, rl_cfg = demo_configs(args.learner, args.env, sft_dir, data_root=getattr(args, "data_root", None),
                                       set_items=args.set_items, sft_set=args.sft_set, rl_set=args.rl_set)
    except ConfigError as exc:
        raise CLIError(f"bad configuration: {exc}") from None
    if args.print_config:
        print(json.dumps({"sft": config_to_dict(sft_cfg), "rl": config_to_dict(rl_cfg)}, indent=1))
        return 0
    if (sft_dir / "config.json").exists() or (rl_dir / "config.json").exists():
        raise CLIError(f"{out} already holds a demo; choose another --out")
    progress = not args.no_progress and sys.stderr.isatty()
    db = getattr(args, "results_db", None)
    start = time.perf_counter()
    rows: list[tuple[str, Any]] = []
    print(f"[1/3] base model {sft_cfg.model.name} on {sft_cfg.eval.limit} episodes of {args.env}", file=sys.stderr)
    rows.append(("base model", evaluate_base(sft_cfg, out / "base-eval").to_dict()))
    print(f"[2/3] warm start: sft on the expert's steps -> {sft_dir}", file=sys.stderr)
    code = _train(sft_dir, lambda: Run(sft_cfg, sft_dir, progress=progress, results_db=db))
    if code:
        return code
    rows.append(("after warm start (sft)", _final_eval(sft_dir)))
    print(f"[3/3] RL: {args.learner} from run:{sft_dir} -> {rl_dir}", file=sys.stderr)
    code = _train(rl_dir, lambda: Run(rl_cfg, rl_dir, progress=progress, results_db=db))
    if code:
        return code
    rows.append((f"after RL ({args.learner})", _final_eval(rl_dir)))
    report = _report(rl_dir)
    print(demo_table(rows, args.env, time.perf_counter() - start))
    if report is not None:
        print(f"report: {report}")
    return 0


def _final_eval(run_dir: Path) -> dict[str, Any]:
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    return summary["final_eval"]


def _report(run_dir: Path) -> Path | None:
    try:
        from benchmarks.report import write_report

        return Path(write_report(run_dir, None))
    except Exception as exc:  # the runs are saved; a report failure loses nothing
        print(f"(no HTML report: {exc})", file=sys.stderr)
        return None


def demo_table(rows: list[tuple[str, dict[str, Any]]], benchmark: str, seconds: float) -> str:
    """The demo's closing table: success and invalid-action rate per stage."""
    lines = [f"\n{benchmark}: the same {rows[0][1]['episodes']} evaluation episodes at every stage",
             f"{'stage':26s} {'success':>12s} {'invalid-action rate':>20s}"]
    for name, s in rows:
        wins = round(s["success_rate"] * s["episodes"])
        lines.append(f"{name:26s} {wins:>4d}/{s['episodes']:<3d} {100 * s['success_rate']:4.0f}% "
                     f"{s['invalid_rate']:20.3f}")
    lines.append(f"wall time {seconds / 60:.1f} min")
    return "\n".join(lines)
