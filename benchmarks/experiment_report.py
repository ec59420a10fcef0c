"""``opid-bench experiment report NAME``: one self-contained HTML page per experiment.

What the page holds (each part only when the experiment file asks for it and there
are finished cells):

* ``curves`` (the paper's Fig. 3): training success rate and episode length over
  training steps, one line per method (the mean over seeds) with a band from the
  lowest to the highest seed;
* ``data-fraction`` (Fig. 4): final success against the share of training tasks, one
  line per method, error bars = the Student-t 95% interval over seeds;
* ``task-types`` (Fig. 5): final success per task type, one bar per method;
* ``methods`` (Tables 1-3): per method and data fraction the final success (mean over
  seeds, t interval), the budget actually used (steps, tokens, environment steps,
  each flagged when it differs from the declared budget or the baseline's), and the
  published number where the protocol matches;
* ``paired``: each method minus the baseline, paired by seed: the mean of the per-seed
  differences with a paired-t 95% interval (n >= 2 seeds) and a bootstrap interval
  that resamples seeds and, within a seed, the evaluation tasks (both methods ran the
  same tasks with the same episode seeds). Cells with another training budget are left
  out of the pairing and listed.

No chart draws more than :data:`MAX_SERIES` series in one legend: more methods are split
over several charts. Plots are matplotlib SVG written inline; a short inline script
checks that every declared figure is on the page and writes ``#experiment-status``.
"""

from __future__ import annotations

import html
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from benchmarks.experiment import Cell, Experiment, Method, cell_state, experiment_dir, store_records
from benchmarks.runfolder import RunFolder, load_run
from benchmarks.stats import MeanCI, mean_ci

MAX_SERIES = 8
"""Most series one chart's legend shows."""
PAPER_STEPS = 150
"""The paper's training budget (steps) that a published number was measured at."""
RESAMPLES = 2000


# ------------------------------------------------------------------------ data
@dataclass
class CellResult:
    cell: Cell
    run: RunFolder
    success: float
    """Final evaluation success (0-1)."""
    per_type: dict[str, float]
    budget: dict[str, float]
    episodes: list[dict[str, Any]]
    model: str


@dataclass
class MethodRow:
    method: Method
    fraction: float
    seeds: list[int]
    success: MeanCI | None
    """Percent."""
    budget: dict[str, float]
    """Mean over seeds: steps, tokens_generated, env_steps."""
    flags: list[str] = field(default_factory=list)
    published: str = ""
    published_value: float | None = None


@dataclass
class PairedRow:
    method: Method
    fraction: float
    seeds: list[int]
    diff: float | None
    t_low: float | None
    t_high: float | None
    boot_low: float | None
    boot_high: float | None
    note: str = ""


def collect(exp: Experiment, root: str | Path | None) -> list[CellResult]:
    """The finished cells (``summary.json`` present), in grid order."""
    out = []
    for cell in exp.cells():
        st = cell_state(exp, cell, Path(root) if root is not None else Path("runs") / "experiments")
        if st.state != "done":
            continue
        run = load_run(st.folder)
        summary = run.summary or {}
        final = summary.get("final_eval") or {}
        ev = run.evals.get("final")
        per_type = {t: float(v.get("success_rate", 0.0)) for t, v in (final.get("per_type") or {}).items()}
        out.append(CellResult(cell, run, float(final.get("success_rate", 0.0)), per_type,
                              {k: float(v) for k, v in (summary.get("budget") or {}).items()
                               if isinstance(v, (int, float))},
                              ev.trajectories() if ev else [], str(summary.get("model", ""))))
    return out


def _groups(results: Sequence[CellResult]) -> dict[tuple[str, float], list[CellResult]]:
    out: dict[tuple[str, float], list[CellResult]] = {}
    for r in results:
        out.setdefault((r.cell.method.key, r.cell.fraction), []).append(r)
    return out


def _pct_ci(values: Sequence[float]) -> MeanCI:
    m = mean_ci(values)
    if m.low is None:
        return m
    return MeanCI(m.mean, m.n, m.std, max(0.0, m.low), min(100.0, m.high))


def budget_ok(exp: Experiment, r: CellResult) -> bool:
    """Whether a cell trained for the experiment's declared budget (steps)."""
    return exp.steps is None or int(r.budget.get("steps", -1)) == exp.steps


def method_rows(exp: Experiment, results: Sequence[CellResult]) -> list[MethodRow]:
    groups = _groups(results)
    base = exp.baseline_method
    rows = []
    for fraction in exp.fractions:
        base_budget = None
        if base is not None and (base.key, fraction) in groups:
            base_budget = _mean_budget(groups[(base.key, fraction)])
        for m in exp.methods:
            rs = groups.get((m.key, fraction), [])
            budget = _mean_budget(rs)
            row = MethodRow(m, fraction, sorted(r.cell.seed for r in rs),
                            _pct_ci([100 * r.success for r in rs]) if rs else None, budget)
            bad = [r.cell.seed for r in rs if not budget_ok(exp, r)]
            if bad:
                row.flags.append(f"seeds {bad} trained {sorted({int(r.budget.get('steps', 0)) for r in rs})} steps, "
                                 f"not the declared {exp.steps}")
            if base_budget and m != base:
                for key, name in (("tokens_generated", "tokens"), ("env_steps", "env steps")):
                    b, x = base_budget.get(key), budget.get(key)
                    if b and x is not None and abs(x - b) / b > exp.tolerance:
                        row.flags.append(f"{name} {100 * (x - b) / b:+.0f}% vs {base.key}")
            missing = sorted(set(exp.seeds) - set(row.seeds))
            if rs and missing:
                row.flags.append(f"seeds {missing} not finished")
            row.published, row.published_value = published(exp, m, fraction, rs)
            rows.append(row)
    return rows


def _mean_budget(rs: Sequence[CellResult]) -> dict[str, float]:
    if not rs:
        return {}
    keys = ("steps", "tokens_generated", "env_steps")
    return {k: float(np.mean([r.budget.get(k, 0.0) for r in rs])) for k in keys}


# ------------------------------------------------------------- published numbers
_FRACTION = re.compile(r"(\d+)% of the training data")


def published(exp: Experiment, m: Method, fraction: float, rs: Sequence[CellResult]) -> tuple[str, float | None]:
    """The published number for (method, fraction) and whether the protocol matches.

    Returns ``("84.3 (published (OPID paper, Table 1), Qwen2.5-3B-Instruct)", 84.3)`` when the
    cells ran the paper's model for :data:`PAPER_STEPS` steps on the full data share the
    row reports; ``("not comparable: ...", None)`` when a published row exists but the
    protocol differs; ``("", None)`` when there is none.
    """
    from benchmarks.leaderboard import reference_rows

    refs = []
    for ref in reference_rows(exp.benchmark, include_extra=True):
        if ref.learner != m.learner:
            continue
        match = _FRACTION.search(ref.method)
        ref_fraction = int(match.group(1)) / 100 if match else 1.0
        ablation = "without" in ref.method
        if m.variant.reference is not None:
            if ref.method != m.variant.reference:
                continue
        elif ablation or abs(ref_fraction - fraction) > 1e-9:
            continue
        refs.append(ref)
    if not refs:
        return "", None
    models = sorted({r.model for r in rs}) or [exp.model or "the preset's model"]
    steps = sorted({int(r.budget.get("steps", 0)) for r in rs}) or [exp.steps or 0]
    for ref in refs:
        if all(str(x).split("/")[-1] == ref.model for x in models) and steps == [PAPER_STEPS]:
            value = ref.values["success_rate"]
            return f"{value:.1f} ({ref.label}, {ref.model})", value
    ref = refs[0]
    why = []
    if not all(str(x).split("/")[-1] == ref.model for x in models):
        why.append(f"model {', '.join(models)} ≠ {ref.model}")
    if steps != [PAPER_STEPS]:
        why.append(f"{', '.join(map(str, steps))} steps ≠ {PAPER_STEPS}")
    return f"not comparable ({'; '.join(why)}): {ref.values['success_rate']:.1f}, {ref.label}", None


# ------------------------------------------------------------------ paired stats
def _episode_key(t: dict[str, Any], seen: dict[str, int]) -> tuple[str, int]:
    tid = str(t.get("task_id", ""))
    seen[tid] = seen.get(tid, 0) + 1
    return tid, seen[tid]


def _aligned(a: CellResult, b: CellResult) -> tuple[np.ndarray, np.ndarray, list[str]] | None:
    """Per-episode wins of a and b on the same (task, repeat) keys, with task types; None if they differ."""
    def table(r: CellResult) -> dict[tuple[str, int], tuple[float, str]]:
        seen: dict[str, int] = {}
        return {_episode_key(t, seen): (1.0 if t.get("won") and not t.get("error") else 0.0,
                                        str(t.get("task_type") or "")) for t in r.episodes}

    ta, tb = table(a), table(b)
    if not ta or set(ta) != set(tb):
        return None
    keys = sorted(ta)
    return (np.array([ta[k][0] for k in keys]), np.array([tb[k][0] for k in keys]), [ta[k][1] for k in keys])


def paired_bootstrap(per_seed: Sequence[tuple[np.ndarray, np.ndarray, Sequence[str]]], *, by_types: bool,
                     resamples: int = RESAMPLES, seed: int = 0) -> tuple[float, float, float]:
    """(mean diff, low, high) in percent of B - A, resampling seeds and, within each seed,
    tasks (stratified by task type when ``by_types``: the overall number averages types).

    ``per_seed``: for each seed, the wins of A and of B on the same tasks ([n] each) and
    the tasks' types.
    """
    rng = np.random.default_rng(seed)

    def stat(a: np.ndarray, b: np.ndarray, types: Sequence[str], idx: np.ndarray | None) -> float:
        d = b - a if idx is None else (b - a)[idx]
        t = np.asarray(types) if idx is None else np.asarray(types)[idx]
        if by_types:
            return float(np.mean([d[t == ty].mean() for ty in sorted(set(t))]))
        return float(d.mean())

    strata = []
    for a, b, types in per_seed:
        t = np.asarray(types)
        groups = [np.flatnonzero(t == ty) for ty in sorted(set(types))] if by_types else [np.arange(len(a))]
        strata.append(groups)
    point = float(np.mean([stat(a, b, ty, None) for a, b, ty in per_seed]))
    draws = np.empty(resamples)
    for i in range(resamples):
        picks = rng.integers(len(per_seed), size=len(per_seed))
        vals = []
        for j in picks:
            idx = np.concatenate([g[rng.integers(len(g), size=len(g))] for g in strata[j]])
            vals.append(stat(*per_seed[j], idx))
        draws[i] = np.mean(vals)
    low, high = np.percentile(draws, [2.5, 97.5])
    return 100 * point, 100 * float(low), 100 * float(high)


def paired_rows(exp: Experiment, results: Sequence[CellResult]) -> list[PairedRow]:
    import opid_gym

    base = exp.baseline_method
    if base is None:
        return []
    by_types = exp.benchmark in opid_gym.BENCHMARKS and opid_gym.BENCHMARKS.get(exp.benchmark).overall == "types"
    index = {(r.cell.method.key, r.cell.fraction, r.cell.seed): r for r in results}
    rows = []
    for fraction in exp.fractions:
        for m in exp.methods:
            if m == base:
                continue
            pairs, left_out = [], []
            for s in exp.seeds:
                a, b = index.get((base.key, fraction, s)), index.get((m.key, fraction, s))
                if a is None or b is None:
                    continue
                if not (budget_ok(exp, a) and budget_ok(exp, b)):
                    left_out.append(s)
                    continue
                pairs.append((s, a, b))
            row = PairedRow(m, fraction, [s for s, _, _ in pairs], None, None, None, None, None)
            if left_out:
                row.note = f"seeds {left_out} left out: unequal training budget. "
            if not pairs:
                row.note += "no seed finished for both methods"
                rows.append(row)
                continue
            diffs = [100 * (b.success - a.success) for _, a, b in pairs]
            ci = mean_ci(diffs)
            row.diff, row.t_low, row.t_high = ci.mean, ci.low, ci.high
            aligned = [_aligned(a, b) for _, a, b in pairs]
            if all(x is not None for x in aligned):
                _, row.boot_low, row.boot_high = paired_bootstrap(aligned, by_types=by_types)  # type: ignore[arg-type]
            else:
                row.note += "evaluation tasks differ between the pair: no bootstrap interval. "
            if ci.low is None:
                row.note += "one seed: no paired-t interval. "
            rows.append(row)
    return rows


# ----------------------------------------------------------------------- charts
def chunks(items: Sequence[Any], size: int = MAX_SERIES) -> list[list[Any]]:
    """``items`` in nearly equal consecutive chunks of at most ``size``."""
    if not items:
        return []
    n = math.ceil(len(items) / size)
    per = math.ceil(len(items) / n)
    return [list(items[i:i + per]) for i in range(0, len(items), per)]


def _plt() -> Any:
    from benchmarks.report import _import_pyplot

    return _import_pyplot()


def _svg(fig: Any, salt: str) -> str:
    from benchmarks.report import _svg as svg

    return svg(fig, salt)


def _legend(ax: Any, n: int) -> None:
    if n:  # below the plot: never over the data
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=min(4, n), frameon=False)


def curve_charts(exp: Experiment, results: Sequence[CellResult], metric: str, title: str, ylabel: str,
                 scale: float = 1.0) -> list[str]:
    """Mean over seeds per method with a min-max band, at the largest data fraction."""
    fraction = max(exp.fractions)
    series = []
    for m in exp.methods:
        rs = [r for r in results if r.cell.method == m and r.cell.fraction == fraction]
        per_seed = []
        for r in rs:
            pts = {int(row["step"]): scale * float(row[metric]) for row in r.run.metrics
                   if "step" in row and isinstance(row.get(metric), (int, float)) and math.isfinite(row[metric])}
            if pts:
                per_seed.append(pts)
        if per_seed:
            steps = sorted(set.intersection(*(set(p) for p in per_seed)))
            if steps:
                vals = np.array([[p[s] for s in steps] for p in per_seed])
                series.append((m.label, steps, vals))
    plt = _plt()
    out = []
    parts = chunks(series)
    for i, part in enumerate(parts):
        fig, ax = plt.subplots(figsize=(5.0, 3.4))
        for label, steps, vals in part:
            (line,) = ax.plot(steps, vals.mean(0), marker="o" if len(steps) < 30 else None, markersize=3,
                              linewidth=1.5, label=f"{label} (n={len(vals)})")
            if len(vals) > 1:
                ax.fill_between(steps, vals.min(0), vals.max(0), color=line.get_color(), alpha=0.18, linewidth=0)
        suffix = f" ({i + 1}/{len(parts)})" if len(parts) > 1 else ""
        ax.set_title(f"{title}{suffix}", fontsize=11)
        ax.set_xlabel("training step")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel(ylabel)
        if scale == 100:  # a success rate: the whole 0-100 range
            ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
        _legend(ax, len(part))
        out.append(_svg(fig, f"{re.sub(r'[^a-z]', '', metric)}{i}"))
    return out


def fraction_charts(exp: Experiment, rows: Sequence[MethodRow]) -> list[str]:
    """Final success vs training-data share, per method, t-interval error bars."""
    by_method: dict[str, list[MethodRow]] = {}
    for r in rows:
        if r.success is not None:
            by_method.setdefault(r.method.key, []).append(r)
    plt = _plt()
    out = []
    parts = chunks(list(by_method.values()))
    for i, part in enumerate(parts):
        fig, ax = plt.subplots(figsize=(5.0, 3.4))
        for rs in part:
            rs = sorted(rs, key=lambda r: r.fraction)
            xs = [100 * r.fraction for r in rs]
            ys = [r.success.mean for r in rs]  # type: ignore[union-attr]
            lo = [r.success.mean - r.success.low if r.success.low is not None else 0 for r in rs]  # type: ignore
            hi = [r.success.high - r.success.mean if r.success.high is not None else 0 for r in rs]  # type: ignore
            ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", markersize=4, capsize=3, linewidth=1.5,
                        label=f"{rs[0].method.label}")
        suffix = f" ({i + 1}/{len(parts)})" if len(parts) > 1 else ""
        ax.set_title(f"Success vs training data{suffix}", fontsize=11)
        ax.set_xlabel("share of training tasks (%)")
        ax.set_ylabel("final success %")
        ax.set_xlim(0, 105)
        ax.grid(alpha=0.3)
        _legend(ax, len(part))
        out.append(_svg(fig, f"fraction{i}"))
    return out


def type_charts(exp: Experiment, results: Sequence[CellResult]) -> list[str]:
    """Final success per task type (mean over seeds), one bar per method, at the largest fraction."""
    fraction = max(exp.fractions)
    rs = [r for r in results if r.cell.fraction == fraction]
    types = sorted({t for r in rs for t in r.per_type})
    methods = [m for m in exp.methods if any(r.cell.method == m for r in rs)]
    if not types or not methods:
        return []
    plt = _plt()
    out = []
    parts = chunks(methods)
    for i, part in enumerate(parts):
        fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(types) * max(1, len(part)) / 2 + 2), 3.4))
        width = 0.8 / len(part)
        for j, m in enumerate(part):
            mine = [r for r in rs if r.cell.method == m]
            vals = [100 * float(np.mean([r.per_type.get(t, 0.0) for r in mine])) for t in types]
            xs = [k + (j - (len(part) - 1) / 2) * width for k in range(len(types))]
            ax.bar(xs, vals, width=width * 0.95, label=f"{m.label} (n={len(mine)})")
        suffix = f" ({i + 1}/{len(parts)})" if len(parts) > 1 else ""
        ax.set_xticks(range(len(types)), types, rotation=30 if len(types) > 4 else 0, fontsize=8)
        ax.set_ylabel("final success %")
        ax.set_ylim(0, 105)
        ax.set_title(f"Success per task type{suffix}", fontsize=11)
        ax.grid(axis="y", alpha=0.3)
        _legend(ax, len(part))
        out.append(_svg(fig, f"types{i}"))
    return out


# ------------------------------------------------------------------------- page
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;background:#fafbfc}
header{background:#1f3b66;color:#fff;padding:14px 24px} header h1{margin:0;font-size:20px}
header .sub{opacity:.85;font-size:13px;margin-top:4px}
main{padding:8px 24px 40px} h2{font-size:17px;border-bottom:1px solid #dde;padding-bottom:4px;margin-top:28px}
.grid{display:flex;flex-wrap:wrap;gap:12px} .plot{background:#fff;border:1px solid #e3e5ec;border-radius:6px;padding:6px}
.plot svg{max-width:100%;height:auto}
table.t{border-collapse:collapse;font-size:13px;background:#fff} .t th,.t td{padding:4px 8px;border-bottom:1px solid #dde}
.t th{background:#f3f4f8;text-align:left} .t td.num{text-align:right;font-variant-numeric:tabular-nums}
.flag{display:inline-block;background:#fbe0dd;color:#8a2318;border-radius:8px;padding:1px 7px;font-size:11px;margin:1px}
.pub{color:#6b4e00;font-style:italic} .note{color:#555;font-size:12px;max-width:1100px}
#experiment-status{font-size:11px;color:#777}
"""

_JS = r"""
(function(){
  const want = JSON.parse(document.getElementById('experiment-figures').textContent);
  const missing = want.filter(f => !document.querySelector(`section[data-figure="${f}"] svg`));
  const s = document.getElementById('experiment-status');
  const n = document.querySelectorAll('section[data-figure] svg').length;
  document.body.dataset.state = missing.length ? 'incomplete' : 'ready';
  s.textContent = missing.length ? `figures missing: ${missing.join(', ')}` : `figures ok: ${want.length} figures, ${n} charts`;
})();
"""


def _fmt_ci(m: MeanCI | None) -> tuple[str, str]:
    if m is None:
        return "—", ""
    if m.low is None:
        return f"{m.mean:.1f}", "n=1, no CI"
    return f"{m.mean:.1f}", f"[{m.low:.1f}, {m.high:.1f}]"


def _signed(x: float | None) -> str:
    return "—" if x is None else f"{x:+.1f}"


def methods_table(rows: Sequence[MethodRow], exp: Experiment) -> str:
    e = html.escape
    multi = len(exp.fractions) > 1
    head = ["method", *(["data"] if multi else []), "seeds", "success %", "95% CI (t, seeds)", "steps",
            "tokens", "env steps", "flags", "published"]
    body = []
    for r in rows:
        mean, ci = _fmt_ci(r.success)
        b = r.budget
        cells = [f"<td>{e(r.method.label)}</td>"]
        if multi:
            cells.append(f'<td class="num">{100 * r.fraction:g}%</td>')
        cells += [f'<td class="num">{len(r.seeds)}/{len(exp.seeds)}</td>', f'<td class="num">{mean}</td>',
                  f'<td class="num">{ci}</td>', f'<td class="num">{b.get("steps", 0):g}</td>' if b else "<td></td>",
                  f'<td class="num">{b.get("tokens_generated", 0):.0f}</td>' if b else "<td></td>",
                  f'<td class="num">{b.get("env_steps", 0):.0f}</td>' if b else "<td></td>",
                  "<td>" + "".join(f'<span class="flag">{e(f)}</span>' for f in r.flags) + "</td>",
                  f'<td class="pub">{e(r.published)}</td>']
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (f'<table class="t" id="methods-table"><thead><tr>{"".join(f"<th>{e(h)}</th>" for h in head)}</tr>'
            f"</thead><tbody>{''.join(body)}</tbody></table>")


def paired_table(rows: Sequence[PairedRow], exp: Experiment) -> str:
    e = html.escape
    base = exp.baseline_method
    multi = len(exp.fractions) > 1
    head = ["method", *(["data"] if multi else []), "paired seeds", f"Δ success % vs {base.label if base else ''}",
            "95% CI (paired t)", "95% CI (bootstrap: seeds × tasks)", "note"]
    body = []
    for r in rows:
        t = "—" if r.t_low is None else f"[{r.t_low:+.1f}, {r.t_high:+.1f}]"
        bt = "—" if r.boot_low is None else f"[{r.boot_low:+.1f}, {r.boot_high:+.1f}]"
        cells = [f"<td>{e(r.method.label)}</td>", *([f'<td class="num">{100 * r.fraction:g}%</td>'] if multi else []),
                 f'<td class="num">{len(r.seeds)}</td>', f'<td class="num">{_signed(r.diff)}</td>',
                 f'<td class="num">{t}</td>', f'<td class="num">{bt}</td>', f"<td>{e(r.note.strip())}</td>"]
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (f'<table class="t" id="paired-table"><thead><tr>{"".join(f"<th>{e(h)}</th>" for h in head)}</tr>'
            f"</thead><tbody>{''.join(body)}</tbody></table>")


def _figure(name: str, title: str, charts: Sequence[str], caption: str) -> str:
    inner = "".join(f'<div class="plot">{c}</div>' for c in charts) or "<p>No finished cells to draw.</p>"
    return (f'<section data-figure="{name}"><h2>{html.escape(title)}</h2><div class="grid">{inner}</div>'
            f'<p class="note">{html.escape(caption)}</p></section>')


def build_experiment_report(exp: Experiment, root: str | Path | None = None, *,
                            results_db: str | None = None) -> str:
    """The experiment page as a string."""
    results = collect(exp, root)
    rows = method_rows(exp, results)
    e = html.escape
    sections = []
    if "curves" in exp.figures:
        charts = curve_charts(exp, results, "rollout/success_rate", "Training success rate", "success %", 100)
        charts += curve_charts(exp, results, "rollout/episode_length", "Episode length", "steps per episode")
        sections.append(_figure("curves", "Training dynamics (Fig. 3)", charts,
                                "Training rollouts' success and episode length per step: the line is the mean "
                                f"over seeds, the band spans the lowest to the highest seed; "
                                f"{100 * max(exp.fractions):g}% of the training data."))
    if "data-fraction" in exp.figures:
        sections.append(_figure("data-fraction", "Success vs training data (Fig. 4)", fraction_charts(exp, rows),
                                "Final evaluation success against the share of training tasks (the same seeded "
                                "subset for every method at a given share and seed); error bars: Student-t 95% "
                                "interval over seeds."))
    if "task-types" in exp.figures:
        sections.append(_figure("task-types", "Success per task type (Fig. 5)", type_charts(exp, results),
                                "Final evaluation success per task type, mean over seeds."))
    tables = []
    if "methods" in exp.tables:
        tables.append("<h2>Methods</h2>" + methods_table(rows, exp)
                      + '<p class="note">Success: final evaluation, mean over seeds with a Student-t 95% interval '
                        "(clipped to [0, 100]). Budget columns: mean per seed. Flags mark budgets that differ from "
                        f"the declared one ({exp.steps} steps) or from the baseline's by more than "
                        f"{100 * exp.tolerance:g}%. Published numbers are shown only where the protocol matches "
                        f"(same model, {PAPER_STEPS} training steps, same data share); otherwise they are marked "
                        "not comparable.</p>")
    if "paired" in exp.tables and exp.baseline_method is not None:
        tables.append("<h2>Paired by seed</h2>" + paired_table(paired_rows(exp, results), exp)
                      + '<p class="note">Δ = method − baseline on the same seed (same training subset, same '
                        "evaluation tasks and episode seeds), averaged over seeds. Paired t: over the per-seed "
                        "differences (n ≥ 2). Bootstrap: 2000 resamples of seeds and, within each seed, of the "
                        "evaluation tasks (by task type where the benchmark averages types). Cells whose "
                        "training budget differs from the declared one are not paired.</p>")
    states = [cell_state(exp, c, Path(root) if root is not None else Path("runs") / "experiments")
              for c in exp.cells()]
    recorded = store_records(exp, results_db)
    done = sum(s.state == "done" for s in states)
    grid = "".join(f"<tr><td>{e(s.cell.id)}</td><td>{s.state}</td><td class='num'>{s.steps_done}</td>"
                   f"<td>{'yes' if s.cell.id in recorded else '-'}</td></tr>" for s in states)
    title = f"opid-gym experiment: {exp.name}"
    figures_json = json.dumps(list(exp.figures))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title><style>{_CSS}</style></head>
<body data-state="loading">
<header><h1>{e(title)}</h1><div class="sub">{e(exp.description)} — benchmark {e(exp.benchmark)},
model {e(exp.model or "(preset's)")}, preset {e(exp.preset or "-")}, {done}/{len(states)} cells done,
seeds {list(exp.seeds)}, budget {exp.steps} steps</div></header>
<main>
<p id="experiment-status">figure check did not run (JavaScript disabled?)</p>
{"".join(sections)}
{"".join(tables)}
<h2>Grid</h2><details><summary>{done}/{len(states)} cells done ({e(str(experiment_dir(exp, root)))})</summary>
<table class="t" id="grid"><thead><tr><th>cell</th><th>state</th><th>steps</th><th>in results store</th></tr></thead>
<tbody>{grid}</tbody></table></details>
</main>
<script type="application/json" id="experiment-figures">{figures_json}</script>
<script>{_JS}</script>
</body></html>
"""


def write_experiment_report(exp: Experiment, root: str | Path | None = None, out: str | Path | None = None, *,
                            results_db: str | None = None) -> Path:
    """Write the page (default ``<experiment folder>/report.html``); return its path."""
    path = Path(out) if out is not None else experiment_dir(exp, root) / "report.html"
    page = build_experiment_report(exp, root, results_db=results_db)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path
