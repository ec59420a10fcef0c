"""``opid-bench run`` and ``resume``: arguments, config resolution, and ``--nproc N``
(the same command started N times through torchrun). The loop itself is
:class:`opid_gym.train.Run`."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

from opid_gym.config import config_to_dict
from opid_gym.run_folder import RunError, load_run_config
from opid_gym.train import Run


def add_run_arguments(p: Any) -> None:
    p.add_argument("--learner", required=True, help="learner name (see `opid-bench list learners`)")
    p.add_argument("--env", required=True, help="benchmark id (see `opid-bench list benchmarks`)")
    p.add_argument("--model", default=None, help="tiny | smollm2-135m | a local folder | a Hugging Face id")
    p.add_argument("--preset", default=None, help="smoke (seconds, CPU) | cpu-demo (minutes, CPU) | paper (GPU)")
    p.add_argument("--config", default=None, metavar="FILE", help="a JSON file of config overrides (sections)")
    p.add_argument("--set", dest="set_items", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config value, e.g. --set optim.lr=1e-5 (repeatable)")
    p.add_argument("--out", default=None, help="run folder (default: runs/<benchmark>-<learner>-<time>)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (one line per step instead)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    _add_nproc(p)


def _add_nproc(p: Any) -> None:
    p.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="train in N processes on this machine (one per GPU; FSDP), started through torchrun; "
                        "several machines: see docs/scale.md")


def add_resume_arguments(p: Any) -> None:
    p.add_argument("run_dir", help="the run folder of a killed or stopped run")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (one line per step instead)")
    _add_nproc(p)


def cmd_run(args: Any) -> int:
    from opid_gym.cli import CLIError
    from opid_gym.config import ConfigError, resolve_config

    try:
        file_overrides = None
        if args.config:
            from opid_gym.config import read_json_file

            file_overrides = read_json_file(args.config)
            if not isinstance(file_overrides, dict):
                raise ConfigError(f"config file {args.config!r} must hold a JSON object")
        set_items = list(args.set_items)
        if getattr(args, "data_root", None):
            set_items.insert(0, f"env.data_root={Path(args.data_root).expanduser().resolve()}")
        from opid_gym.warm_start import absolute_model_name

        model = absolute_model_name(args.model) if args.model else None
        cfg = resolve_config(args.learner, args.env, model=model, preset=args.preset,
                             file_overrides=file_overrides, set_items=set_items)
    except ConfigError as exc:
        raise CLIError(f"bad configuration: {exc}") from None
    if args.print_config:
        print(json.dumps(config_to_dict(cfg), indent=1))
        return 0
    run_dir = Path(args.out) if args.out else Path("runs") / f"{cfg.env.benchmark}-{cfg.learner_name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if _under_torchrun() and not args.out:
        raise CLIError("under torchrun every process needs the same run folder: pass --out")
    if (run_dir / "config.json").exists() and not _under_torchrun():
        raise CLIError(f"{run_dir} already holds a run; continue it with `opid-bench resume {run_dir}` "
                       "or choose another --out")
    if _wants_launch(args):  # the config is valid: start N copies of this command through torchrun
        return _launch(_child_argv(args, ["run", *_run_argv(args), "--out", str(run_dir)]), args.nproc)
    return _train(run_dir, lambda: Run(cfg, run_dir, progress=_progress(args),
                                       results_db=getattr(args, "results_db", None)))


# ------------------------------------------------------------- several processes
LAUNCH_MODULE = "opid_gym"
"""The module ``--nproc`` starts through torchrun (``python -m opid_gym``; tests that
register their own environments point it at a module that registers them first)."""


def _under_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


def _wants_launch(args: Any) -> bool:
    from opid_gym.cli import CLIError

    nproc = getattr(args, "nproc", 1)
    if nproc < 1:
        raise CLIError(f"--nproc must be >= 1, got {nproc}")
    return nproc > 1 and not _under_torchrun()


def _run_argv(args: Any) -> list[str]:
    """``run``'s own options, rebuilt from the parsed arguments (paths made absolute)."""
    out = ["--learner", args.learner, "--env", args.env]
    if args.model:
        out += ["--model", args.model]
    if args.preset:
        out += ["--preset", args.preset]
    if args.config:
        out += ["--config", str(Path(args.config).resolve())]
    for item in args.set_items:
        out += ["--set", item]
    return out


def _child_argv(args: Any, command: list[str]) -> list[str]:
    """The CLI arguments of each torchrun process: global options and the command.

    (No ``--nproc``: torchrun's own parser would take it for its ``--nproc-per-node``;
    the processes know their number from torchrun's environment.)"""
    out: list[str] = []
    if getattr(args, "data_root", None):
        out += ["--data-root", str(Path(args.data_root).expanduser().resolve())]
    if getattr(args, "results_db", None):
        out += ["--results-db", str(Path(args.results_db).expanduser().resolve())]
    out += command
    if args.no_progress:
        out.append("--no-progress")
    return out


def _launch(argv: list[str], nproc: int) -> int:
    from opid_gym.distributed import launch

    code = launch(argv, nproc, module=LAUNCH_MODULE)
    return 0 if code == 0 else (code if code in (2, 130) else 1)


def _leave_process_group() -> None:
    from opid_gym.distributed import shutdown

    shutdown()


def cmd_resume(args: Any) -> int:
    import dataclasses

    from opid_gym.cli import CLIError
    from opid_gym.config import ConfigError

    run_dir = Path(args.run_dir)
    try:
        cfg = load_run_config(run_dir)
    except (RunError, ConfigError) as exc:
        raise CLIError(f"cannot resume: {exc}") from None
    if getattr(args, "data_root", None):  # where the data lives is not part of the experiment
        cfg = dataclasses.replace(cfg, env=dataclasses.replace(
            cfg.env, data_root=str(Path(args.data_root).expanduser().resolve())))
    if _wants_launch(args):
        return _launch(_child_argv(args, ["resume", str(run_dir.resolve())]), args.nproc)
    return _train(run_dir, lambda: Run(cfg, run_dir, resume=True, progress=_progress(args),
                                       results_db=getattr(args, "results_db", None)))


def _train(run_dir: Path, make_run: Callable[[], Run]) -> int:
    """Build and train the run; its errors become one-line CLI errors, Ctrl-C says how to resume."""
    from opid_gym.cli import CLIError

    try:
        make_run().train()
    except RunError as exc:
        raise CLIError(str(exc)) from None
    except ImportError as exc:
        if "pip install" not in str(exc):  # a missing optional extra says how to install it
            raise
        raise CLIError(str(exc)) from None
    except KeyboardInterrupt:
        print(f"\ninterrupted; continue from the last checkpoint with: opid-bench resume {run_dir}",
              file=sys.stderr)
        return 130
    finally:
        _leave_process_group()
    return 0


def _progress(args: Any) -> bool:
    return not args.no_progress and sys.stderr.isatty()
