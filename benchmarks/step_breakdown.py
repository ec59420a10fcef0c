"""Where the time of a training run goes: the share of each loop phase.

Runs a training run (default: GRPO on ALFWorld with the ``smoke`` preset, on the CPU)
into a temporary folder, or reads an existing run folder, and prints the seconds and
share of every phase (rollout, prepare, advantage, update, sync, eval, checkpoint),
the final evaluation, and the rest (start-up: imports, model and env loading).

    python benchmarks/step_breakdown.py                       # a fresh smoke run
    python benchmarks/step_breakdown.py --preset cpu-demo
    python benchmarks/step_breakdown.py --run-dir runs/my-run  # an existing run folder
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PHASES = ("rollout", "prepare", "advantage", "update", "sync", "eval", "checkpoint")


def breakdown(run_dir: Path, wall: float | None = None) -> list[tuple[str, float]]:
    """(phase, seconds) over all steps of a run folder, plus final eval and the rest."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rows = [(p, sum(float(r.get(f"time/{p}", 0.0)) for r in records)) for p in PHASES]
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    rows.append(("final eval", float(summary.get("final_eval_seconds", 0.0))))
    total = wall if wall is not None else float(summary.get("budget", {}).get("seconds", 0.0))
    label = "other (start-up, logging)" if wall is not None else "other (logging; start-up not in a run folder)"
    rows.append((label, max(0.0, total - sum(s for _, s in rows))))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, default=None, help="read this run folder instead of running")
    parser.add_argument("--learner", default="grpo")
    parser.add_argument("--env", default="alfworld-unseen")
    parser.add_argument("--preset", default="smoke")
    parser.add_argument("--set", dest="set_items", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    wall = None
    if args.run_dir is not None:
        run_dir = args.run_dir
    else:
        from opid_gym.config import resolve_config
        from opid_gym.train import Run

        cfg = resolve_config(args.learner, args.env, preset=args.preset, set_items=args.set_items)
        run_dir = Path(tempfile.mkdtemp(prefix="step-breakdown-"))
        start = time.perf_counter()
        Run(cfg, run_dir, record_results=False, quiet=True).train()
        wall = time.perf_counter() - start
        print(f"{args.learner} on {args.env}, preset {args.preset}: run folder {run_dir}")
    rows = breakdown(run_dir, wall)
    total = sum(s for _, s in rows)
    width = max(len(name) for name, _ in rows)
    print(f"{'phase':{width}s} {'seconds':>9s} {'share':>7s}")
    for name, seconds in rows:
        print(f"{name:{width}s} {seconds:9.2f} {100 * seconds / total if total else 0:6.1f}%")
    print(f"{'total':{width}s} {total:9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
