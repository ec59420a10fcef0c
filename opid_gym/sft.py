"""``opid-bench sft``: supervised fine-tuning from demonstrations (a warm start for RL).

A thin front of ``opid-bench run --learner sft`` (:mod:`learners.sft`): ``--agent``
names the demonstrator (``expert``, ``openai:<model>``, ``hf:<model>``, ``run:<dir>``),
``--env`` a benchmark (its training split is rolled out) or a training split id such
as ``alfworld-train`` (the first benchmark that trains on it). Everything else —
presets, ``--set``, ``--out``, ``--nproc``, resume, final eval, results store — is the
run command's.
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_sft_arguments(p: argparse.ArgumentParser) -> None:
    from opid_gym.launch import add_run_arguments

    p.add_argument("--agent", default="expert",
                   help="the demonstrator: expert (default) | openai:<model> | hf:<model> | run:<run dir>")
    p.add_argument("--agent-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="demonstrator option, e.g. base_url=http://127.0.0.1:8000/v1 (repeatable)")
    p.add_argument("--only-won", action="store_true",
                   help="learn only from episodes the demonstrator won (rejection sampling)")
    add_run_arguments(p)
    for action in p._actions:  # the learner is sft; --learner is not asked for
        if action.dest == "learner":
            action.required = False
            action.default = "sft"
            action.help = argparse.SUPPRESS


def training_benchmark(name: str) -> str:
    """A benchmark id as given, or the first benchmark whose training split is ``name``."""
    import opid_gym

    if name in opid_gym.BENCHMARKS:
        return name
    env_id = name if name.startswith("opid/") else f"opid/{name}"
    for bench in opid_gym.BENCHMARKS.names():
        if opid_gym.BENCHMARKS.get(bench).train_env_id == env_id:
            return bench
    return name  # unknown: the run command reports it with a suggestion


def cmd_sft(args: argparse.Namespace) -> int:
    from opid_gym.cli import CLIError, _parse_kv
    from opid_gym.launch import cmd_run

    if args.learner != "sft":
        raise CLIError("opid-bench sft trains the sft learner; use opid-bench run for other learners")
    args.env = training_benchmark(args.env)
    extra = [f"learner.demonstrator={args.agent}"]
    options: dict[str, Any] = _parse_kv(args.agent_opt)
    if options:
        extra.append(f"learner.demonstrator_options={json.dumps(options)}")
    if args.only_won:
        extra.append("learner.only_won=true")
    args.set_items = extra + list(args.set_items)
    return cmd_run(args)
