"""Every registered learner, a smoke run each, on one benchmark: does each one train there?

Runs ``opid-bench run --learner L --env ENV --preset smoke`` for every learner of
``opid-bench list learners`` (the tiny in-process model, 2 steps, 2 tasks x G 2, a
2-episode final eval), each into its own run folder, and prints one row per learner:
exit code, the steps logged, the learner's own metrics that show its part ran (teacher,
distillation, analyzer, anchor groups...), the final eval and the wall time.

    python benchmarks/smoke_learners.py --env sciworld-l0 [--data-root DIR] [--jobs 2] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OWN_METRICS = ("opid/", "rlsd/", "gigpo/", "sft/", "teacher/", "distill/", "loss/distill", "grpo/")
"""Metric name prefixes that only a learner's own part writes, the most specific first."""


def _learners() -> list[str]:
    import opid_gym

    return list(opid_gym.LEARNERS.names())


def _run(learner: str, env: str, out: Path, data_root: str | None, extra: list[str]) -> dict:
    folder = out / learner
    cmd = [sys.executable, "-m", "opid_gym", *(["--data-root", data_root] if data_root else []), "run",
           "--learner", learner, "--env", env, "--preset", "smoke", "--no-progress", "--out", str(folder), *extra]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    row = {"learner": learner, "rc": proc.returncode, "seconds": time.perf_counter() - start}
    metrics = folder / "metrics.jsonl"
    records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()] if metrics.is_file() else []
    row["steps"] = [r.get("step") for r in records]
    keys = sorted({k for r in records for k in r})
    own = [(next(i for i, p in enumerate(OWN_METRICS) if k.startswith(p)), k) for k in keys if k.startswith(OWN_METRICS)]
    row["own"] = [k for _, k in sorted(own)][:3]
    summary = folder / "summary.json"
    if summary.is_file():
        final = json.loads(summary.read_text()).get("final_eval") or {}
        row["eval"] = f"{final.get('success_rate', float('nan')):.2f} over {final.get('episodes', '?')}"
    if proc.returncode:
        row["error"] = (proc.stderr.strip().splitlines() or ["?"])[-1][:160]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", required=True, help="benchmark id")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--jobs", type=int, default=1, help="learners run side by side")
    parser.add_argument("--out", default=None, help="folder of the run folders (default: a temporary one)")
    parser.add_argument("--learner", action="append", default=None, help="only these learners (repeatable)")
    parser.add_argument("--set", dest="set_items", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="smoke-learners-"))
    out.mkdir(parents=True, exist_ok=True)
    extra = [a for item in args.set_items for a in ("--set", item)]
    learners = args.learner or _learners()
    print(f"{len(learners)} learners, smoke preset, on {args.env} -> {out}", flush=True)
    start = time.perf_counter()
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        rows = list(pool.map(lambda name: _run(name, args.env, out, args.data_root, extra), learners))
    print(f"{'learner':<12} {'rc':>3} {'steps':<8} {'final eval':<14} {'s':>6}  own metrics (first 3)")
    for r in rows:
        print(f"{r['learner']:<12} {r['rc']:>3} {str(r['steps']):<8} {r.get('eval', '-'):<14} {r['seconds']:6.0f}  "
              f"{', '.join(r['own']) or '-'}" + (f"\n    error: {r['error']}" if "error" in r else ""))
    ok = sum(1 for r in rows if r["rc"] == 0 and r["steps"])
    print(f"{ok}/{len(rows)} learners trained; {time.perf_counter() - start:.0f} s")
    sys.exit(0 if ok == len(rows) else 1)


if __name__ == "__main__":
    main()
