"""``opid-bench compare RUN_A RUN_B``: metric differences (B - A) with 95% intervals.

Each side is a run folder (its ``final`` evaluation, else its last one, or ``--tag``)
or an eval folder. The two evaluations are treated as independent samples of
episodes:

* success rates (overall over episodes, and per task type): Newcombe's hybrid score
  interval for a difference of two proportions (built from the Wilson intervals);
* an overall success that is a mean over task types (search QA): a percentile
  bootstrap that resamples episodes within each task type;
* mean episode length, mean reward, invalid-action rate (invalid steps / steps) and the
  family's metrics (e.g. WebShop score): a percentile bootstrap over episodes.

Episodes that ended in an environment error count as failures, as in the summaries.
Runs measured under different protocol hashes are refused unless ``allow_mixed``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from benchmarks.protocols import require_same_protocol
from benchmarks.runfolder import EvalResult, RunFolderError, load_run
from benchmarks.stats import Diff, bootstrap_diff_interval, newcombe_diff_interval


@dataclass
class MetricDiff:
    metric: str
    a: float
    b: float
    diff: float
    low: float
    high: float
    method: str
    n_a: int
    n_b: int


@dataclass
class Comparison:
    a: str
    b: str
    a_protocol: str
    b_protocol: str
    rows: list[MetricDiff]
    a_train_fraction: float | None = None
    """Share of the training tasks run A trained on (``env.train_fraction``; None: not a run)."""
    b_train_fraction: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "a_protocol": self.a_protocol, "b_protocol": self.b_protocol,
                "a_train_fraction": self.a_train_fraction, "b_train_fraction": self.b_train_fraction,
                "rows": [asdict(r) for r in self.rows]}


def _episode_table(trajs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    won = np.array([1.0 if t.get("won") and not t.get("error") else 0.0 for t in trajs])
    steps = [t.get("steps", []) for t in trajs]
    return {
        "won": won,
        "type": [t.get("task_type") or "unknown" for t in trajs],
        "length": np.array([len(s) for s in steps], dtype=float),
        "reward": np.array([sum(float(x.get("reward", 0.0)) for x in s) for s in steps]),
        "invalid": np.array([[sum(1 for x in s if not x.get("valid", True)), len(s)] for s in steps], dtype=float)
        .reshape(-1, 2),
        "metrics": [t.get("metrics") or {} for t in trajs],
    }


def _row(name: str, d: Diff, n_a: int, n_b: int, scale: float = 1.0) -> MetricDiff:
    return MetricDiff(name, scale * d.a, scale * d.b, scale * d.diff, scale * d.low, scale * d.high, d.method,
                      n_a, n_b)


def _ratio(x: np.ndarray) -> float:
    total = x[:, 1].sum()
    return float(x[:, 0].sum() / total) if total else 0.0


def _types_mean_bootstrap(ta: dict[str, Any], tb: dict[str, Any], resamples: int, seed: int) -> Diff:
    """Mean over task types of the per-type success, bootstrapped within types."""
    rng = np.random.default_rng(seed)

    def strata(t: dict[str, Any]) -> list[np.ndarray]:
        types = sorted(set(t["type"]))
        return [t["won"][[i for i, x in enumerate(t["type"]) if x == ty]] for ty in types]

    sa, sb = strata(ta), strata(tb)
    stat = lambda groups: float(np.mean([g.mean() for g in groups]))  # noqa: E731
    diffs = np.empty(resamples)
    for i in range(resamples):
        ra = [g[rng.integers(len(g), size=len(g))] for g in sa]
        rb = [g[rng.integers(len(g), size=len(g))] for g in sb]
        diffs[i] = stat(rb) - stat(ra)
    low, high = np.percentile(diffs, [2.5, 97.5])
    return Diff(stat(sa), stat(sb), stat(sb) - stat(sa), float(low), float(high),
                f"percentile bootstrap within task types ({resamples} resamples)")


def compare_evals(a: EvalResult, b: EvalResult, *, label_a: str = "A", label_b: str = "B",
                  allow_mixed: bool = False, resamples: int = 2000, seed: int = 0) -> Comparison:
    """B - A for every metric both evaluations have."""
    require_same_protocol([(label_a, a.summary.get("protocol_hash")), (label_b, b.summary.get("protocol_hash"))],
                          allow_mixed=allow_mixed)
    trajs_a, trajs_b = a.trajectories(), b.trajectories()
    if not trajs_a or not trajs_b:
        missing = label_a if not trajs_a else label_b
        raise RunFolderError(f"{missing}: no trajectories.jsonl beside its summary.json; cannot compute intervals")
    ta, tb = _episode_table(trajs_a), _episode_table(trajs_b)
    na, nb = len(trajs_a), len(trajs_b)
    rows = []
    if _overall_by_types(a.summary):
        rows.append(_row("success % (mean over types)", _types_mean_bootstrap(ta, tb, resamples, seed), na, nb, 100))
    else:
        rows.append(_row("success %", newcombe_diff_interval(int(ta["won"].sum()), na, int(tb["won"].sum()), nb),
                         na, nb, 100))
    for ty in sorted(set(ta["type"]) | set(tb["type"])):
        wa = ta["won"][[i for i, x in enumerate(ta["type"]) if x == ty]]
        wb = tb["won"][[i for i, x in enumerate(tb["type"]) if x == ty]]
        if len(wa) and len(wb):
            rows.append(_row(f"success % [{ty}]", newcombe_diff_interval(int(wa.sum()), len(wa), int(wb.sum()), len(wb)),
                             len(wa), len(wb), 100))
    boot = dict(resamples=resamples, seed=seed)
    rows.append(_row("mean episode length", bootstrap_diff_interval(ta["length"], tb["length"], **boot), na, nb))
    rows.append(_row("mean reward", bootstrap_diff_interval(ta["reward"], tb["reward"], **boot), na, nb))
    rows.append(_row("invalid-action rate", bootstrap_diff_interval(ta["invalid"], tb["invalid"], _ratio, **boot),
                     na, nb))
    keys = sorted({k for m in ta["metrics"] for k in m} & {k for m in tb["metrics"] for k in m})
    for k in keys:
        xa = np.array([m[k] for m in ta["metrics"] if k in m], dtype=float)
        xb = np.array([m[k] for m in tb["metrics"] if k in m], dtype=float)
        rows.append(_row(k, bootstrap_diff_interval(xa, xb, **boot), len(xa), len(xb)))
    return Comparison(label_a, label_b, _proto(a), _proto(b), rows)


def _overall_by_types(summary: dict[str, Any]) -> bool:
    """Whether the benchmark's overall success is the mean over task types (search QA)."""
    import opid_gym

    name = summary.get("benchmark")
    return bool(name in opid_gym.BENCHMARKS and opid_gym.BENCHMARKS.get(name).overall == "types")


def _proto(e: EvalResult) -> str:
    return f"{e.summary.get('protocol_id')}#{e.summary.get('protocol_hash')}"


def compare_runs(run_a: str | Path, run_b: str | Path, *, tag_a: str | None = None, tag_b: str | None = None,
                 **kwargs: Any) -> Comparison:
    folder_a, folder_b = load_run(run_a), load_run(run_b)
    c = compare_evals(folder_a.main_eval(tag_a), folder_b.main_eval(tag_b), label_a=str(run_a), label_b=str(run_b),
                      **kwargs)
    c.a_train_fraction, c.b_train_fraction = _train_fraction(folder_a.config), _train_fraction(folder_b.config)
    return c


def _train_fraction(config: dict[str, Any] | None) -> float | None:
    """``env.train_fraction`` of a run folder's config (1.0 when a run config has none)."""
    env = (config or {}).get("env")
    if not isinstance(env, dict):
        return None
    value = env.get("train_fraction", 1.0)
    return float(value) if isinstance(value, (int, float)) else None


def format_comparison(c: Comparison, fmt: str = "table") -> str:
    if fmt == "json":
        return json.dumps(c.to_dict(), indent=2)
    head = ["metric", "A", "B", "B - A", "95% CI", "n A/B", "interval"]
    def fmt_row(r: MetricDiff) -> list[str]:
        v, d = (".1f", "+.1f") if "%" in r.metric else (".4g", "+.4g")
        return [r.metric, f"{r.a:{v}}", f"{r.b:{v}}", f"{r.diff:{d}}", f"[{r.low:{d}}, {r.high:{d}}]",
                f"{r.n_a}/{r.n_b}", r.method]

    rows = [fmt_row(r) for r in c.rows]
    widths = [max(len(h), *(len(row[j]) for row in rows)) for j, h in enumerate(head)]
    data = lambda f: "" if f is None else f", trained on {100 * f:g}% of the training tasks"  # noqa: E731
    lines = [f"A: {c.a}  ({c.a_protocol}{data(c.a_train_fraction)})",
             f"B: {c.b}  ({c.b_protocol}{data(c.b_train_fraction)})",
             "  ".join(h.ljust(w) for h, w in zip(head, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(x.ljust(w) for x, w in zip(row, widths)).rstrip() for row in rows]
    if c.a_train_fraction != c.b_train_fraction and None not in (c.a_train_fraction, c.b_train_fraction):
        lines.append("note: the two runs trained on different shares of the training data.")
    if c.a_protocol != c.b_protocol:
        lines.append("note: --allow-mixed: the two runs were measured under different protocols.")
    lines.append("Intervals treat A and B as independent samples of episodes (conservative when both ran the "
                 "same tasks and seeds). An interval that excludes 0 marks a difference at the 5% level.")
    return "\n".join(lines)
