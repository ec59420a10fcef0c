"""``opid-bench``: the command line.

Each sub-command is a ``_cmd_<name>`` function plus its ``_add_<name>`` parser set-up,
listed in :data:`COMMANDS`. Every command has ``--help``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

from opid_gym.data import ENV_VAR, resolve_data_root


class CLIError(Exception):
    """A user error: printed as one clear line, exit code 2, no traceback."""


def _data_kwargs(args: argparse.Namespace, env_id: str) -> dict[str, Any]:
    """``data_root`` for environments whose constructor takes one (third-party ones may not)."""
    from opid_gym.registry import accepts

    if not accepts(env_id, "data_root"):
        return {}
    return {"data_root": str(resolve_data_root(getattr(args, "data_root", None)))}


def _benchmark(name: str) -> Any:
    import opid_gym

    return opid_gym.BENCHMARKS.get(name)


# --------------------------------------------------------------------- list
def _add_list(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", nargs="?", default="envs", choices=["envs", "learners", "agents", "benchmarks"])


def _cmd_list(args: argparse.Namespace) -> int:
    import opid_gym
    from opid_gym import builtin, registry

    if args.what == "envs":
        for eid in registry.env_ids():
            print(f"{eid:32s} {registry.env_description(eid)}")
    elif args.what == "benchmarks":
        for name in opid_gym.BENCHMARKS:
            b = opid_gym.BENCHMARKS.get(name)
            print(f"{name:22s} env={b.env_id:26s} steps={b.max_steps:<3d} {b.description}")
    elif args.what == "agents":
        for name in opid_gym.AGENTS:
            print(f"{name:22s} {opid_gym.AGENTS.description(name)}")
        for prefix, (_, desc) in builtin.AGENT_PREFIXES.items():
            print(f"{prefix + ':<model>':22s} {desc}")
    elif args.what == "learners":
        for name in opid_gym.LEARNERS:
            try:
                cls = opid_gym.LEARNERS.get(name)
                desc = f"{getattr(cls, 'description', '')}  [{getattr(cls, 'paper', '')}]"
            except (ImportError, AttributeError) as exc:
                desc = f"(unavailable: {exc})"
            print(f"{name:12s} {desc}")
    return 0


# ---------------------------------------------------------------- check-env
def _add_check_env(p: argparse.ArgumentParser) -> None:
    p.add_argument("env_id", nargs="?", help="environment id (default: every registered id)")
    p.add_argument("--all", action="store_true", help="check every registered id")


def _cmd_check_env(args: argparse.Namespace) -> int:
    from opid_gym import registry
    from opid_gym.checker import check_env

    ids = registry.env_ids() if (args.all or not args.env_id) else [args.env_id]
    failed = 0
    for eid in ids:
        results = check_env(eid, **_data_kwargs(args, eid))
        ok = all(r.ok for r in results)
        failed += not ok
        print(f"{'PASS' if ok else 'FAIL'}  {eid}")
        for r in results:
            print(f"   {'ok ' if r.ok else 'BAD'} {r.name}{': ' + r.detail if r.detail else ''}")
    return 1 if failed else 0


# --------------------------------------------------------------------- eval
def _add_eval(p: argparse.ArgumentParser) -> None:
    p.add_argument("--agent", required=True, help="random | expert | hf:<model> | vllm:<model> | openai:<model>")
    p.add_argument("--env", required=True, help="benchmark id (see `opid-bench list benchmarks`)")
    p.add_argument("--episodes", "--limit", dest="limit", type=int, default=None,
                   help="evaluate a fixed seeded subset of this many tasks (default: all, each once)")
    p.add_argument("--workers", type=int, default=0, help="environment worker processes (0: in-process)")
    p.add_argument("--max-concurrent", type=int, default=32,
                   help="episodes running at once (results do not depend on it; default 32)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="folder for trajectories.jsonl and summary.json")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on the last line")
    p.add_argument("--max-steps", type=int, default=None, help="override the protocol's step limit")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--agent-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="agent option, e.g. temperature=0.4 (repeatable)")


def _parse_kv(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CLIError(f"expected KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _cmd_eval(args: argparse.Namespace) -> int:
    from opid_gym.agent import make_agent
    from opid_gym.evaluate import evaluate

    bench = _benchmark(args.env)
    if args.max_steps is not None:
        bench = bench.with_overrides(max_steps=args.max_steps)
    agent = make_agent(args.agent, **_agent_options(args, bench))
    summary, _ = evaluate(
        bench, agent, agent_name=args.agent, env_kwargs=_data_kwargs(args, bench.env_id), limit=args.limit,
        workers=args.workers, seed=args.seed, max_concurrent=args.max_concurrent, out_dir=args.out,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    _print_summary(summary)
    if args.json:
        print(json.dumps(summary.to_dict()))
    return 0


def _agent_options(args: argparse.Namespace, bench: Any) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    if ":" in args.agent:  # model agents sample with the protocol's validation settings
        opts.update(temperature=bench.temperature, top_p=bench.top_p, max_new_tokens=bench.max_new_tokens,
                    max_prompt_tokens=bench.max_prompt_tokens)
    opts.update(_parse_kv(args.agent_opt))
    return opts


def _print_summary(summary: Any) -> None:
    print(f"\n{summary.benchmark}  agent={summary.agent}  episodes={summary.episodes}  errors={summary.errors}")
    print(f"{'task type':14s} {'episodes':>8s} {'success':>8s}")
    for name, s in summary.per_type.items():
        print(f"{name:14s} {int(s['episodes']):8d} {100 * s['success_rate']:7.1f}%")
    print(f"{'overall':14s} {summary.episodes:8d} {100 * summary.success_rate:7.1f}%")
    extra = "  ".join(f"{k}={v:.4g}" for k, v in summary.metrics.items())
    print(f"mean length {summary.mean_length:.2f}  invalid-action rate {summary.invalid_rate:.3f}  "
          f"{summary.seconds:.1f}s  {extra}")


# --------------------------------------------------------------------- data
def _add_data(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["status", "download"])
    p.add_argument("dataset", nargs="?", choices=["alfworld", "webshop", "search_qa"])


def _cmd_data(args: argparse.Namespace) -> int:
    from opid_gym.data import dataset_status

    root = resolve_data_root(args.data_root)
    if args.action == "status":
        print(f"data root: {root}  (set with --data-root or {ENV_VAR})")
        for s in dataset_status(root):
            print(f"  {'present' if s.present else 'missing':8s} {s.name:24s} {s.detail:28s} {s.path}")
        return 0
    if args.dataset is None:
        raise CLIError("data download needs a data set: alfworld | webshop | search_qa")
    from opid_gym.download import download

    return download(args.dataset, root)


def _add_run(p: argparse.ArgumentParser) -> None:
    from opid_gym.train import add_run_arguments

    add_run_arguments(p)


def _cmd_run(args: argparse.Namespace) -> int:
    from opid_gym.train import cmd_run

    return cmd_run(args)


def _add_resume(p: argparse.ArgumentParser) -> None:
    from opid_gym.train import add_resume_arguments

    add_resume_arguments(p)


def _cmd_resume(args: argparse.Namespace) -> int:
    from opid_gym.train import cmd_resume

    return cmd_resume(args)


COMMANDS: list[tuple[str, str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = [
    ("list", "list environments, learners, agents or benchmarks", _add_list, _cmd_list),
    ("check-env", "run Gymnasium's checker and the text contract on environments", _add_check_env, _cmd_check_env),
    ("eval", "evaluate an agent on a benchmark's evaluation split", _add_eval, _cmd_eval),
    ("data", "show which data sets are present, or download one", _add_data, _cmd_data),
    ("run", "train a learner on a benchmark and evaluate it (writes a run folder)", _add_run, _cmd_run),
    ("resume", "continue a killed run from its last checkpoint", _add_resume, _cmd_resume),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="opid-bench", description="opid-gym: train and evaluate LLM agents.")
    parser.add_argument("--data-root", default=None, help=f"benchmark data folder (default: ${ENV_VAR})")
    subs = parser.add_subparsers(dest="command", required=True)
    for name, help_text, add, cmd in COMMANDS:
        p = subs.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--data-root", default=argparse.SUPPRESS, help=f"benchmark data folder (default: ${ENV_VAR})")
        add(p)
        p.set_defaults(func=cmd)
    return parser


def main(argv: list[str] | None = None) -> int:
    from opid_gym.data import DataNotFoundError
    from opid_gym.registry import UnknownNameError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (CLIError, UnknownNameError, DataNotFoundError) as exc:
        print(f"opid-bench: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
