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


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2): the usage block is for ``--help``."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _data_kwargs(args: argparse.Namespace, env_id: str) -> dict[str, Any]:
    """``data_root`` for environments whose constructor takes one (third-party ones may not)."""
    from opid_gym.episode import data_kwargs

    return data_kwargs(env_id, getattr(args, "data_root", None))


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
    elif args.what == "benchmarks":  # with protocol ids and hashes (benchmarks/protocols.py)
        return _benchmarks_command("list_benchmarks")(getattr(args, "data_root", None))
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
    p.add_argument("--env-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="environment option, e.g. retriever=pyserini (repeatable)")
    p.add_argument("--url", default=None, help="check env_id as served by `opid-bench serve-env` at this URL "
                                               "(token from $OPID_GYM_ENV_TOKEN)")


def _cmd_check_env(args: argparse.Namespace) -> int:
    from opid_gym import registry
    from opid_gym.checker import check_env

    if args.url and not args.env_id:
        raise CLIError("--url needs the env_id to check (one the server serves)")
    ids = registry.env_ids() if (args.all or not args.env_id) else [args.env_id]
    failed = 0
    for eid in ids:
        if args.url:  # the served environment, through a RemoteEnv
            from opid_gym.remote import REMOTE_ENV_ID, env_token

            results = check_env(REMOTE_ENV_ID, url=args.url, served_env=eid, token=env_token(),
                                **_env_options(eid, args))
        else:
            results = check_env(eid, **_data_kwargs(args, eid), **_env_options(eid, args))
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
                   help="evaluate a fixed seeded subset of this many tasks (default: all, each once); "
                        "per task type where the benchmark averages types (searchqa: per data set)")
    p.add_argument("--workers", type=int, default=0, help="environment worker processes (0: in-process)")
    p.add_argument("--max-concurrent", type=int, default=32,
                   help="episodes running at once (results do not depend on it; default 32)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="folder for trajectories.jsonl and summary.json")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on the last line")
    p.add_argument("--max-steps", type=int, default=None, help="override the protocol's step limit")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar on a terminal, no per-episode lines elsewhere")
    p.add_argument("--agent-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="agent option, e.g. temperature=0.4 (repeatable)")
    p.add_argument("--base-url", default=None,
                   help="openai:<model> agents: API root, e.g. http://127.0.0.1:8000/v1 (default: OpenAI's)")
    p.add_argument("--api-key", default=None,
                   help=f"openai:<model> agents: API key (default: --api-key-file, else ${API_KEY_ENV})")
    p.add_argument("--api-key-file", default=None, help="openai:<model> agents: file holding the API key")
    p.add_argument("--no-record", action="store_true", help="do not append the result to the results database")
    p.add_argument("--env-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="environment option, e.g. retriever=pyserini (repeatable; part of the protocol)")
    p.add_argument("--skills", nargs="?", const="library", default=None, metavar="DIR",
                   help="show the static skill library in every prompt (Skill-Prompt*; with run:<dir>, "
                        "e.g. Skill-GRPO*): the packaged library, or the library folder DIR")
    p.add_argument("--retries", type=int, default=2, metavar="N",
                   help="run an episode whose environment worker or model backend failed again, up to N "
                        "times, on a fresh worker (default 2); episodes that still fail are errors")
    p.add_argument("--env-url", action="append", default=[], metavar="URL",
                   help="run the episodes on `opid-bench serve-env` servers (repeatable; token from "
                        "$OPID_GYM_ENV_TOKEN) instead of --workers")
    p.add_argument("--allow-errors", action="store_true",
                   help="exit 0 even when episodes failed by error (the result is still marked incomplete)")


def _check_eval_args(args: argparse.Namespace) -> None:
    """Numbers that would make a meaningless evaluation are user errors (exit 2)."""
    for flag, value, low in (("--episodes", args.limit, 1), ("--max-steps", args.max_steps, 1),
                             ("--workers", args.workers, 0), ("--max-concurrent", args.max_concurrent, 1),
                             ("--retries", args.retries, 0)):
        if value is not None and value < low:
            raise CLIError(f"{flag} must be >= {low}, got {value}")


def _skills_hook(args: argparse.Namespace, bench: Any) -> Any:
    """The prompt hook of ``--skills`` (None without it); a bad folder is a CLI error."""
    if args.skills is None:
        return None
    from opid_gym.builtin import SKILLS_PROMPT_HOOK
    from opid_gym.family import family_of

    make_hook = _load(SKILLS_PROMPT_HOOK)
    family = family_of(bench.env_id).name
    try:
        return make_hook(None if args.skills == "library" else args.skills, family)
    except FileNotFoundError as exc:
        raise CLIError(f"--skills: {exc}") from None


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


def _env_options(env_id: str, args: argparse.Namespace) -> dict[str, Any]:
    """``--env-opt`` as constructor kwargs, checked by building the env once."""
    from opid_gym.registry import make

    opts = _parse_kv(getattr(args, "env_opt", []))
    if not opts or getattr(args, "url", None) or getattr(args, "env_url", None):
        return opts  # none, or served elsewhere: the server checks them
    try:
        make(env_id, **_data_kwargs(args, env_id), **opts).close()
    except (TypeError, ValueError) as exc:
        raise CLIError(f"bad --env-opt for {env_id}: {str(exc).splitlines()[0]}") from None
    return opts


def _cmd_eval(args: argparse.Namespace) -> int:
    from opid_gym.agent import make_agent
    from opid_gym.evaluate import EvalOutputError, evaluate

    _check_eval_args(args)
    bench = _benchmark(args.env)
    if args.max_steps is not None:
        bench = bench.with_overrides(max_steps=args.max_steps)
    env_opts = _env_options(bench.env_id, args)
    if env_opts:  # environment options are part of the protocol (and of its hash)
        bench = bench.with_overrides(env_kwargs={**bench.env_kwargs, **env_opts})
    options = _agent_options(args, bench)
    hook = _skills_hook(args, bench)
    try:
        agent = make_agent(args.agent, **options)
    except ImportError as exc:
        raise CLIError(str(exc)) from exc
    except (TypeError, ValueError, FileNotFoundError) as exc:
        raise CLIError(f"cannot build agent {args.agent!r}: {exc}") from exc
    recorded_options = {k: ("<redacted>" if k == "api_key" else v) for k, v in options.items()}
    out_dir = _eval_out_dir(args)
    try:
        summary, _ = evaluate(
            bench, agent, agent_name=args.agent, env_kwargs=_data_kwargs(args, bench.env_id), limit=args.limit,
            workers=args.workers, seed=args.seed, max_concurrent=args.max_concurrent, out_dir=out_dir,
            progress="off" if args.no_progress else ("bar" if sys.stderr.isatty() else "lines"), prompt_hook=hook,
            retries=args.retries, continue_from=_eval_identity(args, recorded_options) if out_dir else None,
            env_urls=args.env_url,
        )
    except EvalOutputError as exc:
        raise CLIError(str(exc)) from None
    except KeyboardInterrupt:
        kept = f"; finished episodes are kept in {out_dir}, run the same command to continue" if out_dir else ""
        print(f"\nopid-bench: interrupted{kept}", file=sys.stderr)
        return 130
    _print_summary(summary)
    usage = getattr(agent, "usage", None)
    if usage is not None:
        print(f"API usage: {usage.calls} calls, {usage.failures} failed, {usage.prompt_tokens} prompt tokens, "
              f"{usage.completion_tokens} completion tokens")
    if not args.no_record:
        db = _record_eval(args, summary, recorded_options, agent, out_dir)
        print(f"protocol {summary.protocol_id}#{summary.protocol_hash}; recorded in {db}"
              + ("" if summary.complete else " (marked incomplete)"))
    if args.json:
        print(json.dumps(summary.to_dict()))
    if not summary.complete:
        print(f"opid-bench: {summary.errors} episode(s) failed by error after {args.retries} retries and are "
              "left out of the score; the result is incomplete" + ("" if args.allow_errors else
                                                                  " (exit 1; --allow-errors exits 0)"),
              file=sys.stderr)
        return 0 if args.allow_errors else 1
    return 0


def _eval_out_dir(args: argparse.Namespace) -> Path | None:
    """Where ``eval --out`` writes: the folder itself, or ``<run>/eval/cli-...`` for a run folder
    (an evaluation never overwrites a run's own files). Checked writable before any episode."""
    from opid_gym.evaluate import EvalOutputError, check_writable

    if args.out is None:
        return None
    out = Path(args.out)
    if (out / "config.json").is_file() and ((out / "metrics.jsonl").exists() or (out / "checkpoints").exists()):
        import re

        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"cli-{args.env}-{args.agent}-seed{args.seed}"
                      + (f"-n{args.limit}" if args.limit else "")).strip("-")
        out = out / "eval" / name
        print(f"note: {args.out} is a run folder; this evaluation writes to {out}", file=sys.stderr)
    try:
        check_writable(out)
    except EvalOutputError as exc:
        raise CLIError(str(exc)) from None
    return out


def _eval_identity(args: argparse.Namespace, agent_options: dict[str, Any]) -> dict[str, Any]:
    """What makes two ``eval --out`` invocations the same evaluation (so the second continues the first)."""
    return {"benchmark": args.env, "agent": args.agent, "agent_options": agent_options, "limit": args.limit,
            "max_steps": args.max_steps, "seed": args.seed, "env_options": _parse_kv(args.env_opt),
            "skills": args.skills}


def _record_eval(args: argparse.Namespace, summary: Any, agent_options: dict[str, Any], agent: Any = None,
                 out_dir: Path | None = None) -> Path:
    """Append this evaluation to the results store (opid_gym/results.py).

    Model agents record their ``eval_mode`` (``plain``, or ``skills`` with ``--skills``);
    an agent built from a run folder (``run:<dir>``) files the record under the run's
    learner and model.
    """
    from opid_gym.results import ResultsStore, eval_record, resolve_results_path

    config = {
        "command": "eval", "benchmark": args.env, "agent": args.agent, "agent_options": agent_options,
        "limit": args.limit, "max_steps": args.max_steps, "seed": args.seed, "workers": args.workers,
        "max_concurrent": args.max_concurrent,
    }
    if ":" in args.agent or args.skills is not None:
        config["eval_mode"] = "plain" if args.skills is None else "skills"
    if args.skills is not None:
        config["skill_library"] = args.skills if args.skills == "library" else str(Path(args.skills).resolve())
    if getattr(agent, "run_dir", None):
        config["run_dir"] = agent.run_dir
        config["checkpoint_step"] = getattr(agent, "step", None)
    record = eval_record(summary.to_dict(), agent=args.agent, config=config, workers=args.workers,
                         source=str(out_dir) if out_dir else None, learner=getattr(agent, "learner", None),
                         model=getattr(agent, "model_name", None))
    store = ResultsStore(resolve_results_path(getattr(args, "results_db", None)))
    store.append(record)
    return store.path


def _agent_options(args: argparse.Namespace, bench: Any) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    if ":" in args.agent:  # model agents sample with the protocol's validation settings
        opts.update(bench.validation_sampling())
    if args.agent.startswith("openai:"):
        opts.update(_api_options(args))
    elif args.base_url or args.api_key or args.api_key_file:
        raise CLIError("--base-url/--api-key/--api-key-file apply to openai:<model> agents only")
    opts.update(_parse_kv(args.agent_opt))
    return opts


API_KEY_ENV = "OPENAI_API_KEY"
"""Read by the CLI only (never by library code), when neither --api-key nor --api-key-file is given."""


def _api_options(args: argparse.Namespace) -> dict[str, Any]:
    import os

    opts: dict[str, Any] = {}
    if args.base_url:
        opts["base_url"] = args.base_url
    if args.api_key:
        opts["api_key"] = args.api_key
    elif args.api_key_file:
        opts["api_key_file"] = args.api_key_file
    elif os.environ.get(API_KEY_ENV):
        opts["api_key"] = os.environ[API_KEY_ENV]
    return opts


def _print_summary(summary: Any) -> None:
    print(f"\n{summary.benchmark}  agent={summary.agent}  episodes={summary.episodes}  errors={summary.errors}"
          + ("" if summary.complete else "  (incomplete: errors are left out of the score)"))
    print(f"{'task type':14s} {'episodes':>8s} {'success':>8s} {'errors':>6s}")
    for name, s in summary.per_type.items():
        print(f"{name:14s} {int(s['episodes']):8d} {100 * s['success_rate']:7.1f}% {int(s.get('errors', 0)):6d}")
    print(f"{'overall':14s} {summary.episodes:8d} {100 * summary.success_rate:7.1f}% {summary.errors:6d}")
    if summary.retried:
        print(f"{summary.retried} episode run(s) repeated after a worker or backend failure")
    extra = "  ".join(f"{k}={v:.4g}" for k, v in summary.metrics.items())
    print(f"mean length {summary.mean_length:.2f}  invalid-action rate {summary.invalid_rate:.3f}  "
          f"{summary.seconds:.1f}s  {extra}")


# --------------------------------------------------------------------- data
def _add_data(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["status", "download"])
    p.add_argument("dataset", nargs="?", help="the data set to download (`opid-bench data status` lists them)")


def _cmd_data(args: argparse.Namespace) -> int:
    from opid_gym.family import data_families, dataset_status

    root = resolve_data_root(args.data_root)
    if args.action == "status":
        print(f"data root: {root}  (set with --data-root or {ENV_VAR})")
        for s in dataset_status(root):
            print(f"  {'present' if s.present else 'missing':8s} {s.name:24s} {s.detail:28s} {s.path}")
        return 0
    known = " | ".join(data_families())
    if args.dataset is None:
        raise CLIError(f"data download needs a data set: {known}")
    from opid_gym.download import data_set_family, download
    from opid_gym.registry import UnknownNameError

    try:
        data_set_family(args.dataset)
    except UnknownNameError as exc:
        raise CLIError(str(exc)) from None
    return download(args.dataset, root)


# ------------------------------------------- leaderboard, report, compare, results
# Bodies in benchmarks/commands.py, loaded only when one of these commands runs.
def _benchmarks_command(name: str) -> Callable[..., int]:
    from opid_gym.registry import load_object

    return load_object(f"benchmarks.commands:{name}")


def _add_leaderboard(p: argparse.ArgumentParser) -> None:
    p.add_argument("--env", default=None, help="benchmark id (default: every benchmark with results)")
    p.add_argument("--format", default="table", choices=["table", "md", "csv", "html"])
    p.add_argument("--protocol", default=None, metavar="HASH", help="keep only results of this protocol hash")
    p.add_argument("--allow-mixed", action="store_true", help="rank results of different protocol hashes together")
    p.add_argument("--include-incomplete", action="store_true",
                   help="also rank results with episodes that failed by error (incomplete; default: left out)")
    p.add_argument("--references", default="main", choices=["main", "all", "none"],
                   help="published paper rows: main tables, all (with ablations), none")
    p.add_argument("--out", type=Path, default=None, help="write to this file instead of stdout")


def _add_report(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path, help="a run folder (opid-bench run) or an eval folder (eval --out)")
    p.add_argument("--out", type=Path, default=None, help="output file (default: RUN_DIR/report.html)")
    p.add_argument("--max-trajectories", type=int, default=12, help="trajectories per viewer source")
    p.add_argument("--max-rollout-steps", type=int, default=4, help="training steps offered in the viewer")


def _add_compare(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_a", type=Path, help="run folder or eval folder A")
    p.add_argument("run_b", type=Path, help="run folder or eval folder B (differences are B - A)")
    p.add_argument("--tag-a", default=None, help="eval tag of A (default: final, else the last)")
    p.add_argument("--tag-b", default=None, help="eval tag of B (default: final, else the last)")
    p.add_argument("--allow-mixed", action="store_true", help="compare runs of different protocol hashes")
    p.add_argument("--format", default="table", choices=["table", "json"])
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples")


def _add_results(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["list"], help="list the stored records")
    p.add_argument("--env", default=None, help="only this benchmark")
def _add_experiment(p: argparse.ArgumentParser) -> None:
    from opid_gym.registry import load_object

    load_object("benchmarks.experiment:add_arguments")(p)


def _add_run(p: argparse.ArgumentParser) -> None:
    from opid_gym.launch import add_run_arguments

    add_run_arguments(p)


def _cmd_run(args: argparse.Namespace) -> int:
    from opid_gym.launch import cmd_run

    return cmd_run(args)


def _add_resume(p: argparse.ArgumentParser) -> None:
    from opid_gym.launch import add_resume_arguments

    add_resume_arguments(p)


def _cmd_resume(args: argparse.Namespace) -> int:
    from opid_gym.launch import cmd_resume

    return cmd_resume(args)


COMMANDS: list[tuple[str, str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = [
    ("list", "list environments, learners, agents or benchmarks", _add_list, _cmd_list),
    ("check-env", "run Gymnasium's checker and the text contract on environments", _add_check_env, _cmd_check_env),
    ("eval", "evaluate an agent on a benchmark's evaluation split", _add_eval, _cmd_eval),
    ("serve-env", "serve environments over HTTP (OpenEnv-style reset/step) for other machines",
     lambda p: _load("opid_gym.remote:add_serve_arguments")(p), lambda args: _load("opid_gym.remote:cmd_serve")(args)),
    ("data", "show which data sets are present, or download one", _add_data, _cmd_data),
    ("leaderboard", "rank learners x models on a benchmark protocol, beside published numbers", _add_leaderboard,
     lambda args: _benchmarks_command("leaderboard")(args)),
    ("report", "write a self-contained HTML report of a run folder", _add_report,
     lambda args: _benchmarks_command("report")(args)),
    ("compare", "metric differences between two runs, with 95%% confidence intervals", _add_compare,
     lambda args: _benchmarks_command("compare")(args)),
    ("results", "show the results database", _add_results, lambda args: _benchmarks_command("results")(args)),
    ("run", "train a learner on a benchmark and evaluate it (writes a run folder)", _add_run, _cmd_run),
    ("resume", "continue a killed run from its last checkpoint", _add_resume, _cmd_resume),
    ("sft", "supervised fine-tuning on a demonstrator's steps (expert, API model, run:<dir>); a run folder",
     lambda p: _load("opid_gym.sft:add_sft_arguments")(p), lambda args: _load("opid_gym.sft:cmd_sft")(args)),
    ("demo", "the CPU demo that learns: base model, expert warm start (sft), then OPID; one table",
     lambda p: _load("opid_gym.demo:add_demo_arguments")(p), lambda args: _load("opid_gym.demo:cmd_demo")(args)),
    ("experiment", "run, resume, follow and report a grid of runs declared in an experiment file",
     _add_experiment, lambda args: _benchmarks_command("experiment")(args)),
]


def _load(path: str) -> Any:
    from opid_gym.registry import load_object

    return load_object(path)


_RESULTS_HELP = "results database (default: $OPID_GYM_RESULTS, else ~/.cache/opid-gym/results.sqlite)"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="opid-bench", description="opid-gym: train and evaluate LLM agents.")
    parser.add_argument("--data-root", default=None, help=f"benchmark data folder (default: ${ENV_VAR})")
    parser.add_argument("--results-db", default=None, help=_RESULTS_HELP)
    subs = parser.add_subparsers(dest="command", required=True)
    for name, help_text, add, cmd in COMMANDS:
        p = subs.add_parser(name, help=help_text, description=help_text.replace("%%", "%"))
        p.add_argument("--data-root", default=argparse.SUPPRESS, help=f"benchmark data folder (default: ${ENV_VAR})")
        p.add_argument("--results-db", default=argparse.SUPPRESS, help=_RESULTS_HELP)
        add(p)
        p.set_defaults(func=cmd)
    return parser


def main(argv: list[str] | None = None) -> int:
    from opid_gym.backend import BackendError
    from opid_gym.config import ConfigError
    from opid_gym.data import DataNotFoundError
    from opid_gym.registry import UnknownNameError
    from opid_gym.results import ResultsStoreError, set_command_line

    # the command as typed, before any library rewrites sys.argv (TextWorld's planner does)
    set_command_line(["opid-bench", *argv] if argv is not None else ["opid-bench", *sys.argv[1:]])
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (CLIError, UnknownNameError, DataNotFoundError, BackendError, ConfigError, ResultsStoreError) as exc:
        print(f"opid-bench: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # commands that keep partial work say so themselves
        print("\nopid-bench: interrupted", file=sys.stderr)
        return 130


def _one_line(exc: BaseException) -> str:
    """An error message on one line (multi-line messages joined with ' | ')."""
    return " | ".join(line.strip() for line in str(exc).splitlines() if line.strip())


if __name__ == "__main__":
    # `python -m opid_gym.cli`: run the imported module's main, so that errors raised as
    # opid_gym.cli.CLIError (by launch, benchmarks) are the class main catches
    from opid_gym.cli import main as _main

    sys.exit(_main())
