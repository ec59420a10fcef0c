"""The bodies of ``opid-bench list benchmarks``, ``leaderboard``, ``report``, ``compare``
and ``results``; their argument parsers live in :mod:`opid_gym.cli`, which loads this
module lazily."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from opid_gym.cli import CLIError
from opid_gym.results import ResultsStore, resolve_results_path


def list_benchmarks(data_root: str | None) -> int:
    """One line per benchmark: protocol id, hash, env, step limit, description."""
    import opid_gym
    from benchmarks.protocols import protocol_for

    print(f"{'benchmark':20s} {'protocol':24s} {'hash':12s}  {'tasks':>5s} {'steps':>5s}  description")
    for name in opid_gym.BENCHMARKS:
        b = opid_gym.BENCHMARKS.get(name)
        try:
            p = protocol_for(b, env_kwargs={"data_root": data_root} if data_root else None)
            pid, h, n = p.id, p.hash, str(len(p.task_ids))
        except Exception as exc:  # data or family missing: say so, keep listing
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            pid, h, n = f"{name}@v{b.version}", "-", "-"
            print(f"{name:20s} {pid:24s} {h:12s}  {n:>5s} {b.max_steps:5d}  {b.description}  "
                  f"[no hash: {type(exc).__name__}: {reason[:90]}]")
            continue
        print(f"{name:20s} {pid:24s} {h:12s}  {n:>5s} {b.max_steps:5d}  {b.description}")
    return 0


def _store(args: argparse.Namespace, must_exist: bool = True) -> ResultsStore:
    path = resolve_results_path(getattr(args, "results_db", None))
    if must_exist and not path.exists():
        raise CLIError(f"no results database at {path} (run `opid-bench eval` or `run` first, or pass --results-db)")
    return ResultsStore(path)


def leaderboard(args: argparse.Namespace) -> int:
    from benchmarks.leaderboard import build_leaderboard, render
    from benchmarks.protocols import ProtocolMismatchError

    store = _store(args)
    records = store.query(benchmark=args.env) if args.env else store.query()
    names = [args.env] if args.env else sorted({r.benchmark for r in records})
    if not names:
        raise CLIError(f"the results database {store.path} holds no results")
    if args.env and not records:
        import opid_gym

        if args.env not in opid_gym.BENCHMARKS:
            opid_gym.BENCHMARKS.get(args.env)  # raises "unknown benchmark ... did you mean"
        print(f"note: no measured results for {args.env} in {store.path}", file=sys.stderr)
    pages = []
    for name in names:
        chosen, others = args.protocol, []
        if chosen is None and not args.allow_mixed and len({r.protocol_hash for r in records
                                                            if r.benchmark == name}) > 1:
            chosen, others = _default_protocol(records, name)  # the official protocol; the rest listed below
        try:
            board = build_leaderboard(records, name, protocol_hash=chosen, allow_mixed=args.allow_mixed,
                                      references=args.references,
                                      include_incomplete=getattr(args, "include_incomplete", False))
        except ProtocolMismatchError as exc:
            raise CLIError(f"{name}: {exc}") from None
        pages.append(_other_protocols(render(board, args.format), name, others, args.format))
    text = _join(pages, args.format)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote {args.out}")
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def _default_protocol(records: list, name: str) -> tuple[str, list[tuple[str, str, int]]]:
    import opid_gym
    from benchmarks.leaderboard import default_protocol

    return default_protocol(records, opid_gym.BENCHMARKS.get(name))


def _other_protocols(page: str, name: str, others: list[tuple[str, str, int]], fmt: str) -> str:
    """``page`` with the protocols it does not show listed below it, with how to view each
    (CSV stays one plain table)."""
    if not others or fmt == "csv":
        return page
    lines = [f"other protocols of {name} in the results store (not ranked above):"]
    lines += [f"  {pid}#{h}: {n} record(s); view with: opid-bench leaderboard --env {name} --protocol {h}"
              for h, pid, n in others]
    lines.append(f"  or rank all of them together with: opid-bench leaderboard --env {name} --allow-mixed")
    if fmt == "html":
        import html

        items = "".join(f"<li>{html.escape(line.strip())}</li>" for line in lines[1:])
        return page.replace("</body>", f'<p class="note">{html.escape(lines[0])}</p><ul class="note">{items}</ul>'
                                       "</body>")
    return page.rstrip("\n") + "\n\n" + "\n".join(lines) + "\n"


def _join(pages: list[str], fmt: str) -> str:
    if len(pages) == 1 or fmt != "html":
        return ("\n\n" if fmt != "csv" else "").join(pages)
    bodies = [p[p.index("<body>") + 6:p.index("</body>")] for p in pages]
    head = pages[0][:pages[0].index("<body>") + 6]
    return head + "<hr>".join(bodies) + "</body></html>\n"


def report(args: argparse.Namespace) -> int:
    from benchmarks.report import write_report
    from benchmarks.runfolder import RunFolderError

    try:
        out = write_report(args.run_dir, args.out, max_trajectories=args.max_trajectories,
                           max_rollout_steps=args.max_rollout_steps)
    except RunFolderError as exc:
        raise CLIError(str(exc)) from None
    print(f"wrote {out}")
    return 0


def compare(args: argparse.Namespace) -> int:
    from benchmarks.compare import compare_runs, format_comparison
    from benchmarks.protocols import ProtocolMismatchError
    from benchmarks.runfolder import RunFolderError

    try:
        c = compare_runs(args.run_a, args.run_b, tag_a=args.tag_a, tag_b=args.tag_b, allow_mixed=args.allow_mixed,
                         resamples=args.resamples)
    except (ProtocolMismatchError, RunFolderError) as exc:
        raise CLIError(str(exc)) from None
    print(format_comparison(c, args.format))
    return 0


def results(args: argparse.Namespace) -> int:
    """``results list``: the stored records, newest last."""
    store = _store(args)
    rows = store.query(benchmark=args.env)
    print(f"{store.path}: {len(rows)} record(s)")
    print(f"{'created':25s} {'kind':4s} {'benchmark':18s} {'protocol':34s} {'learner':10s} {'model':24s} "
          f"{'seed':>4s} {'success':>7s} {'episodes':>8s} {'errors':>6s}")
    for r in rows:
        print(f"{r.created:25s} {r.kind:4s} {r.benchmark:18s} {r.protocol_id + '#' + r.protocol_hash:34s} "
              f"{r.learner or '-':10s} {r.model[:24]:24s} {r.seed:4d} {100 * r.success_rate:6.1f}% {r.episodes:8d} "
              f"{int(r.errors or 0):6d}" + ("  incomplete" if r.errors else ""))
    return 0


def experiment(args: argparse.Namespace) -> int:
    """``experiment list|run|status|report`` (body in :mod:`benchmarks.experiment`)."""
    from benchmarks.experiment import command

    return command(args)
