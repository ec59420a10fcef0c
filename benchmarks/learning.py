"""Learning benchmark: do the learners make the tiny model better at a task that needs the prompt?

Trains each learner on the ``keypad`` toy benchmark (``environments/toy``: four
cupboards, a keypad that reads the first letter typed; a fixed string wins exactly a
quarter of the tasks, so only reading the prompt does better) with the in-process
random-init ``tiny`` model on the CPU, over several seeds, and prints the evaluation
success on all 120 evaluation tasks before → after training, with 95% intervals:

* per run: the success rate and its Wilson interval (120 episodes);
* per learner: the mean over seeds with a Student-t interval, and the mean gain.

Learners: ``grpo``; ``opid-rules`` (OPID with the ``hindsight-rules`` analyzer, the
paper's method with an offline analyzer); ``opid-oracle`` (OPID with the ``oracle``
analyzer: an ABLATION that reads the environment's expert, an upper bound on what
hindsight step skills can teach, not the paper's method); ``sdar`` (the static skill
library's general text as teacher context: the library has no keypad file).

Every learner runs with the same settings (:data:`COMMON`); OPID and SDAR keep their
own defaults (λ = 0.001, λ_SDAR = 0.01). Rerun::

    python benchmarks/learning.py                      # 4 learners x 3 seeds (~20 min, 2-core CPU)
    python benchmarks/learning.py --learners grpo --seeds 0
    python benchmarks/learning.py --jobs 3             # one process per seed (same numbers)

Each run is deterministic given its seed (one CPU thread, seeded sampling), so ``--jobs``
changes the wall time, not the numbers.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BENCHMARK = "keypad"
STEPS = 30
COMMON = (
    "model.name=tiny", "model.cpu_threads=1", "rollout.tasks_per_step=8", "rollout.group_size=8",
    "rollout.max_new_tokens=2", "rollout.old_logp=sampler", "optim.lr=5e-3", "optim.weight_decay=0",
    "optim.mini_batch_size=256", "optim.micro_batch_size=64", "learner.kl_coef=0", "learner.entropy_coef=0",
    "checkpoint.every=1000", "log.tensorboard=false", "log.rollouts_every=0",
)
"""Settings shared by every learner: 8 tasks x G 8 per step, 2-token responses, lr 5e-3,
no KL or entropy term (the random-init model has no reference worth staying near)."""
LEARNERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "grpo": ("grpo", ()),
    "opid-rules": ("opid", ("learner.analyzer=hindsight-rules",)),
    "opid-oracle": ("opid", ("learner.analyzer=oracle",)),
    "sdar": ("sdar", ()),
}
"""label -> (learner, extra --set items)."""


@dataclass(frozen=True)
class Outcome:
    """One training run: eval successes before and after, out of ``n`` episodes."""

    label: str
    seed: int
    before: int
    after: int
    n: int
    seconds: float


def config(label: str, seed: int, steps: int = STEPS):
    from opid_gym.config import resolve_config

    learner, extra = LEARNERS[label]
    return resolve_config(learner, BENCHMARK, set_items=[*COMMON, f"steps={steps}", f"seed={seed}", *extra])


def evaluate_initial(seed: int) -> tuple[int, int]:
    """(successes, episodes) of the untrained model on the whole eval split, run seed ``seed``."""
    import opid_gym
    from agents.model_agent import ModelAgent
    from opid_gym.backend import SamplingParams
    from opid_gym.evaluate import evaluate
    from opid_gym.train import make_policy

    cfg = config("grpo", seed)
    bench = opid_gym.BENCHMARKS.get(BENCHMARK)
    agent = ModelAgent(make_policy(cfg), SamplingParams(**bench.validation_sampling()))
    summary, trajs = evaluate(bench, agent, seed=seed)
    return sum(t.won for t in trajs), len(trajs)


def train_once(label: str, seed: int, out: Path, steps: int = STEPS, before: tuple[int, int] | None = None) -> Outcome:
    """Train ``label`` with ``seed`` in ``out`` and evaluate before (unless given) and after."""
    import torch

    from opid_gym.train import Run

    torch.set_num_threads(1)
    start = time.perf_counter()
    b, n = before if before is not None else evaluate_initial(seed)
    summary = Run(config(label, seed, steps), out, record_results=False, quiet=True).train()
    final = summary["final_eval"]
    after = round(final["success_rate"] * final["episodes"])
    if final["episodes"] != n:
        raise RuntimeError(f"eval sizes differ: {n} before, {final['episodes']} after")
    return Outcome(label, seed, b, after, n, time.perf_counter() - start)


def run_seed(labels: list[str], seed: int, root: Path, steps: int) -> list[Outcome]:
    """Every learner of ``labels`` with one seed (the untrained model evaluated once)."""
    import torch

    torch.set_num_threads(1)
    before = evaluate_initial(seed)
    out = []
    for label in labels:
        o = train_once(label, seed, root / f"{label}-s{seed}", steps, before)
        print(f"  {label} seed {seed}: {o.before}/{o.n} -> {o.after}/{o.n} ({o.seconds:.0f} s)", flush=True)
        out.append(o)
    return out


def _pct(x: float) -> str:
    return f"{100 * x:5.1f}"


def report(outcomes: list[Outcome]) -> str:
    from benchmarks.stats import mean_ci, wilson_interval

    lines = ["per run (success on the 120 eval tasks, Wilson 95% interval):",
             f"{'learner':<12} {'seed':>4}  {'before %':>22}  {'after %':>22}  {'s':>6}"]
    for o in outcomes:
        lb, hb = wilson_interval(o.before, o.n)
        la, ha = wilson_interval(o.after, o.n)
        lines.append(f"{o.label:<12} {o.seed:>4}  {_pct(o.before / o.n)} [{_pct(lb)}, {_pct(hb)}]  "
                     f"{_pct(o.after / o.n)} [{_pct(la)}, {_pct(ha)}]  {o.seconds:6.0f}")
    lines += ["", "per learner (mean over seeds, Student-t 95% interval):",
              f"{'learner':<12} {'seeds':>5}  {'before %':>22}  {'after %':>22}  {'gain (points)':>24}"]
    for label in dict.fromkeys(o.label for o in outcomes):
        runs = [o for o in outcomes if o.label == label]
        cells = []
        for values in ([o.before / o.n for o in runs], [o.after / o.n for o in runs],
                       [(o.after - o.before) / o.n for o in runs]):
            ci = mean_ci(values)
            band = f"[{_pct(ci.low)}, {_pct(ci.high)}]" if ci.low is not None else "[  n/a,   n/a]"
            cells.append(f"{_pct(ci.mean)} {band}")
        lines.append(f"{label:<12} {len(runs):>5}  {cells[0]}  {cells[1]}  {cells[2]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--learners", nargs="+", default=list(LEARNERS), choices=list(LEARNERS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=STEPS)
    p.add_argument("--out", type=Path, default=None, help="run folders go here (default: a temporary folder)")
    p.add_argument("--jobs", type=int, default=1, help="seeds run in this many processes at once")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    print(f"learning benchmark: {BENCHMARK}, tiny model, {args.steps} steps x 8 tasks x G 8, seeds {args.seeds}, "
          f"{args.jobs} job(s)", flush=True)
    print("settings: " + " ".join(COMMON), flush=True)
    start = time.perf_counter()
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = args.out or Path(tmp)
        if args.jobs <= 1:
            for seed in args.seeds:
                outcomes += run_seed(args.learners, seed, root, args.steps)
        else:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as ex:
                futures = [ex.submit(run_seed, args.learners, seed, root, args.steps) for seed in args.seeds]
                for f in futures:
                    outcomes += f.result()
    print()
    print(report(outcomes))
    print(f"\ntotal {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
