"""The leaderboard: learners x models on one benchmark protocol.

Records (from the results store) are grouped by (learner, model, protocol hash). Within
a group each seed counts once (the latest record of a seed wins: re-running a seed is a
re-measurement, not a new sample). A row shows the mean over seeds with a Student-t 95%
confidence interval (none for one seed: n = 1 is shown as such), the number of seeds,
the mean per task type, the training budget and the cost.

Results of different protocol hashes are not ranked together unless asked
(``allow_mixed``); ``protocol_hash`` picks one. Published numbers from papers
(``benchmarks/data/reference_results.json``) are added as rows labelled by their
source ("published (OPID paper, Table 1)"), never as measured ones.
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections import defaultdict
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Mapping, Sequence

from benchmarks.protocols import ProtocolMismatchError
from benchmarks.stats import MeanCI, mean_ci


def _pct_ci(values: Sequence[float]) -> MeanCI:
    """Mean and t interval of percentages, the interval clipped to [0, 100]."""
    m = mean_ci(values)
    if m.low is None:
        return m
    return MeanCI(m.mean, m.n, m.std, max(0.0, m.low), min(100.0, m.high))
from opid_gym.results import ResultRecord

FORMATS = ("table", "md", "csv", "html")
STANDARD_METRICS = ("success_rate", "mean_reward", "mean_length", "invalid_rate")
"""Overall metrics every record has; other metric keys (e.g. WebShop's ``score``) get
their own leaderboard column."""
REFERENCE_FILE = "reference_results.json"


@dataclass
class Entry:
    """One measured row: a (learner, model, protocol) group over its seeds."""

    learner: str | None
    model: str
    protocol_id: str
    protocol_hash: str
    seeds: list[int]
    success: MeanCI
    """Success rate in percent."""
    extra: dict[str, MeanCI]
    per_type: dict[str, float]
    """Mean per-type success rate in percent."""
    mean_length: float
    train_steps: float
    tokens: float
    """Mean tokens generated per seed (training rollouts + evals)."""
    device_hours: float
    """Total device hours over the seeds."""
    device_kind: str
    record_ids: list[str]
    eval_mode: str | None = None
    """``plain`` or ``skills`` (the library skills were in the evaluation prompts); None:
    an evaluation that records no mode (scripted agents, older records)."""
    errors: int = 0
    """Episodes that failed by error (worker or backend), summed over the seeds; a row
    with errors is incomplete and shown only when asked (``include_incomplete``)."""
    train_fraction: float = 1.0
    """Share of the training tasks the runs trained on (``env.train_fraction``)."""

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def label(self) -> str:
        """The row's method: the learner (``*`` when evaluated with skills, e.g.
        ``skill-grpo*``), ``vanilla`` / ``skill-prompt*`` for an untrained model."""
        if self.learner:
            label = f"{self.learner}*" if self.eval_mode == "skills" else self.learner
            return label if self.train_fraction >= 1 else f"{label} ({100 * self.train_fraction:g}% data)"
        return {"plain": "vanilla", "skills": "skill-prompt*"}.get(self.eval_mode or "", "— (eval only)")


def eval_mode(record: ResultRecord) -> str | None:
    """A record's evaluation mode (``config["eval_mode"]``): ``plain``, ``skills`` or None.

    Records of training runs without one count as ``plain``.
    """
    mode = record.config.get("eval_mode") if isinstance(record.config, Mapping) else None
    if mode is None and record.learner:
        return "plain"
    return str(mode) if mode is not None else None


def train_fraction(record: ResultRecord) -> float:
    """The share of training tasks a run record trained on (``env.train_fraction``; 1.0 if unset)."""
    env = record.config.get("env") if isinstance(record.config, Mapping) else None
    value = env.get("train_fraction") if isinstance(env, Mapping) else None
    return float(value) if isinstance(value, (int, float)) else 1.0


@dataclass
class ReferenceRow:
    """A published number (percent), labelled with where it comes from."""

    label: str
    model: str
    method: str
    learner: str | None
    values: dict[str, float]
    """Our metric name -> published value (percent)."""
    note: str


@dataclass
class Leaderboard:
    benchmark: str
    protocols: list[tuple[str, str]]
    """(protocol id, hash) of the measured rows."""
    entries: list[Entry]
    references: list[ReferenceRow]
    extra_metrics: list[str]
    task_types: list[str]
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------- reference
def load_references() -> dict[str, Any]:
    """The published-numbers file shipped as package data."""
    text = resources.files("benchmarks").joinpath("data", REFERENCE_FILE).read_text(encoding="utf-8")
    return json.loads(text)


def reference_rows(benchmark: str, *, include_extra: bool = False,
                   data: Mapping[str, Any] | None = None) -> list[ReferenceRow]:
    """Published rows that map onto ``benchmark``'s metrics (none for unmapped benchmarks)."""
    data = data if data is not None else load_references()
    mapping = data["benchmarks"].get(benchmark)
    if not mapping:
        return []
    ranked = []
    for row in data["rows"]:
        if row.get("extra") and not include_extra:
            continue
        values, notes, priority = {}, [], 0
        for metric, choices in mapping.items():
            for j, choice in enumerate(choices):
                if choice["column"] in row["values"]:
                    values[metric] = float(row["values"][choice["column"]])
                    priority = j if metric == "success_rate" else priority
                    if choice.get("note"):
                        notes.append(choice["note"])
                    break
        if "success_rate" not in values:
            continue
        source = data["sources"][row["source"]]
        ref = ReferenceRow(source["label"], row["model"], row["method"], row.get("learner"), values,
                           "; ".join(n for n in [source.get("note", ""), *notes] if n))
        ranked.append((priority, -values["success_rate"], len(ranked), ref))
    # the closest match to this benchmark first (e.g. unseen-split figures before Table 1)
    return [ref for *_, ref in sorted(ranked, key=lambda t: t[:3])]


# ----------------------------------------------------------------------- build
def select_protocol(records: Sequence[ResultRecord], protocol_hash: str | None, allow_mixed: bool) -> list[ResultRecord]:
    """Keep the records of one protocol hash (or all, with ``allow_mixed``).

    ``protocol_hash`` may be a unique prefix. Without it, several hashes are refused.
    """
    if protocol_hash:
        chosen = {r.protocol_hash for r in records if r.protocol_hash.startswith(protocol_hash)}
        if len(chosen) > 1:
            raise ProtocolMismatchError(f"protocol hash prefix {protocol_hash!r} is ambiguous: {sorted(chosen)}")
        return [r for r in records if r.protocol_hash in chosen]
    hashes: dict[str, list[ResultRecord]] = defaultdict(list)
    for r in records:
        hashes[r.protocol_hash].append(r)
    if len(hashes) > 1 and not allow_mixed:
        listing = "; ".join(f"{h} = {rs[0].protocol_id} ({len(rs)} record(s), latest {rs[-1].created})"
                            for h, rs in hashes.items())
        raise ProtocolMismatchError(
            f"the results were measured under {len(hashes)} different protocols: {listing}. "
            "Pick one with --protocol HASH, or rank them together with --allow-mixed."
        )
    return list(records)


def build_leaderboard(
    records: Sequence[ResultRecord],
    benchmark: str,
    *,
    protocol_hash: str | None = None,
    allow_mixed: bool = False,
    references: str = "main",
    include_incomplete: bool = False,
) -> Leaderboard:
    """Rank the records of ``benchmark``.

    Args:
        records: results-store records (any benchmark; others are ignored).
        benchmark: the benchmark id.
        protocol_hash: keep only this protocol (a unique prefix is enough).
        allow_mixed: rank several protocol hashes together (each row keeps its hash).
        references: ``main`` (paper tables), ``all`` (also ablations), ``none``.
        include_incomplete: also rank records with episodes that failed by error
            (``errors > 0``); by default they are left out and counted in a note.
    """
    mine = select_protocol([r for r in records if r.benchmark == benchmark], protocol_hash, allow_mixed)
    incomplete = [r for r in mine if int(r.errors or 0) > 0]
    if not include_incomplete:
        mine = [r for r in mine if int(r.errors or 0) == 0]
    groups: dict[tuple[str | None, str | None, str, str, float], dict[int, ResultRecord]] = defaultdict(dict)
    for r in sorted(mine, key=lambda r: r.created):  # latest per seed; data fractions never share a row
        groups[(r.learner, eval_mode(r), r.model, r.protocol_hash, train_fraction(r))][int(r.seed)] = r
    extra_keys = sorted({k for r in mine for k in r.metrics if k not in STANDARD_METRICS})
    types = sorted({t for r in mine for t in r.per_type})
    entries = []
    for (learner, mode, model, phash, fraction), by_seed in groups.items():
        recs = [by_seed[s] for s in sorted(by_seed)]
        extra = {k: _pct_ci([100 * r.metrics[k] for r in recs]) for k in extra_keys
                 if all(k in r.metrics for r in recs)}
        per_type = {t: 100 * sum(r.per_type[t]["success_rate"] for r in recs if t in r.per_type)
                    / max(1, sum(t in r.per_type for r in recs)) for t in types}
        kinds = {r.cost.get("device_kind", "cpu") for r in recs}
        entries.append(Entry(
            learner=learner, model=model, protocol_id=recs[-1].protocol_id, protocol_hash=phash,
            seeds=sorted(by_seed), success=_pct_ci([100 * r.success_rate for r in recs]), extra=extra,
            per_type=per_type, mean_length=sum(r.metrics.get("mean_length", 0.0) for r in recs) / len(recs),
            train_steps=sum(r.budget.get("train_steps", 0) for r in recs) / len(recs),
            tokens=sum(r.cost.get("tokens_generated", 0) for r in recs) / len(recs),
            device_hours=sum(float(r.cost.get("wall_seconds", 0.0)) * int(r.cost.get("devices", 1)) / 3600
                             for r in recs),
            device_kind="/".join(sorted(kinds)), record_ids=[r.id for r in recs], eval_mode=mode,
            errors=sum(int(r.errors or 0) for r in recs),
            train_fraction=fraction,
        ))
    entries.sort(key=lambda e: (-e.success.mean, -e.n, e.model, e.label))
    refs = [] if references == "none" else reference_rows(benchmark, include_extra=references == "all")
    notes = []
    if entries:
        notes.append("success %: mean over seeds (each seed once, its latest record) ± the Student-t 95% half-width; "
                     "the CI column clips that interval to [0, 100]; one seed has no interval.")
    if incomplete and not include_incomplete:
        notes.append(f"{len(incomplete)} incomplete record(s) left out (episodes failed by error and were not "
                     "scored); show them with --include-incomplete.")
    elif incomplete:
        notes.append("--include-incomplete: rows with errors > 0 are incomplete (their failed episodes were not "
                     "scored); do not compare them with complete rows.")
    if len({e.protocol_hash for e in entries}) > 1:
        notes.append("--allow-mixed: rows come from different protocols (see the hash column); "
                     "their numbers were not measured the same way.")
    if refs:
        notes.append("Rows labelled 'published' are numbers reported in papers, not measured by opid-gym; "
                     "their protocols (models, training budgets, splits) differ from the measured rows.")
    protocols = sorted({(e.protocol_id, e.protocol_hash) for e in entries})
    return Leaderboard(benchmark, protocols, entries, refs, [k for k in extra_keys
                                                             if any(k in e.extra for e in entries)], types, notes)


def default_protocol(records: Sequence[ResultRecord], benchmark: Any) -> tuple[str, list[tuple[str, str, int]]]:
    """The protocol hash a leaderboard shows by default, and the others as ``(hash, id, records)``.

    The default is the official protocol: the benchmark's whole evaluation split at its
    current version and settings (``protocol_id(benchmark)``, no ``--episodes`` subset,
    no overrides), its newest hash when the data changed; when no record has it, the
    protocol of the newest record.
    """
    from benchmarks.protocols import protocol_id

    mine = sorted((r for r in records if r.benchmark == benchmark.name), key=lambda r: r.created)
    if not mine:
        raise ValueError(f"no records of {benchmark.name}")
    official = [r for r in mine if r.protocol_id == protocol_id(benchmark)]
    chosen = (official or mine)[-1].protocol_hash
    counts: dict[str, list[ResultRecord]] = defaultdict(list)
    for r in mine:
        counts[r.protocol_hash].append(r)
    others = [(h, rs[-1].protocol_id, len(rs)) for h, rs in counts.items() if h != chosen]
    return chosen, sorted(others, key=lambda o: (o[1], o[0]))


# --------------------------------------------------------------------- render
def _pct(x: float | None) -> str:
    return "" if x is None else f"{x:.1f}"


def _ci(m: MeanCI) -> str:
    return "n=1, no CI" if m.low is None else f"[{m.low:.1f}, {m.high:.1f}]"


def _mean_pm(m: MeanCI) -> str:
    """``mean ± half-width`` of the unclipped t interval (the CI column shows the clipped bounds)."""
    if m.std is None:
        return f"{m.mean:.1f}"
    from benchmarks.stats import t_quantile_975

    return f"{m.mean:.1f} ± {t_quantile_975(m.n - 1) * m.std / m.n ** 0.5:.1f}"


def _hours(e: Entry) -> str:
    return f"{e.device_hours:.3g} {e.device_kind}-h"


def rows_for_text(board: Leaderboard) -> tuple[list[str], list[list[str]]]:
    """Header and cells shared by the table, markdown and CSV formats."""
    header = ["rank", "source", "learner", "model", "success %", "95% CI", "seeds", "errors"]
    header += [f"{k} (x100)" for k in board.extra_metrics]
    header += [f"{t} %" for t in board.task_types]
    header += ["train steps", "tokens", "cost", "protocol"]
    cells = []
    for i, e in enumerate(board.entries, 1):
        row = [str(i), "measured", e.label, e.model, _mean_pm(e.success), _ci(e.success),
               str(e.n), str(e.errors)]
        row += [_mean_pm(e.extra[k]) if k in e.extra else "" for k in board.extra_metrics]
        row += [_pct(e.per_type.get(t)) for t in board.task_types]
        row += [f"{e.train_steps:g}", f"{e.tokens:.0f}", _hours(e), f"{e.protocol_id}#{e.protocol_hash}"]
        cells.append(row)
    for r in board.references:
        row = ["", r.label, r.learner or r.method, r.model, _pct(r.values["success_rate"]), "", "paper", ""]
        row += [_pct(r.values.get(k)) for k in board.extra_metrics]
        row += ["" for _ in board.task_types]
        row += ["", "", "", r.note or r.method]
        cells.append(row)
    return header, cells


def _title(board: Leaderboard) -> str:
    prot = ", ".join(f"{pid}#{h}" for pid, h in board.protocols) or "no measured results"
    return f"Leaderboard: {board.benchmark}  (protocol {prot})"


def to_table(board: Leaderboard) -> str:
    """A terminal table; long notes (the last column) become numbered footnotes."""
    header, cells = rows_for_text(board)
    footnotes: list[str] = []
    for row in cells:
        if row[1] != "measured" and row[-1]:
            if row[-1] not in footnotes:
                footnotes.append(row[-1])
            row[-1] = f"[{footnotes.index(row[-1]) + 1}]"
    header[-1] = "protocol / note"
    widths = [max(len(header[j]), *(len(r[j]) for r in cells)) if cells else len(header[j]) for j in range(len(header))]
    lines = [_title(board), "  ".join(h.ljust(w) for h, w in zip(header, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines += [f"[{i}] {n}" for i, n in enumerate(footnotes, 1)]
    lines += [f"note: {n}" for n in board.notes]
    return "\n".join(lines)


def to_markdown(board: Leaderboard) -> str:
    header, cells = rows_for_text(board)
    esc = lambda s: s.replace("|", "\\|")  # noqa: E731
    lines = [f"### {_title(board)}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in cells]
    lines += [""] + [f"*{n}*" for n in board.notes]
    return "\n".join(lines).rstrip() + "\n"


def to_csv(board: Leaderboard) -> str:
    """Machine-readable: numbers unrounded, CI bounds in their own columns."""
    buf = io.StringIO()
    w = csv.writer(buf)
    extra_cols = [c for k in board.extra_metrics for c in (f"{k}_mean", f"{k}_low", f"{k}_high")]
    w.writerow(["benchmark", "source", "learner", "model", "seeds", "errors", "success_mean", "success_low",
                "success_high",
                *extra_cols, *[f"type_{t}" for t in board.task_types], "train_steps", "tokens", "device_hours",
                "device_kind", "protocol_id", "protocol_hash", "note"])
    blank = lambda v: "" if v is None else v  # noqa: E731
    for e in board.entries:
        extra = [x for k in board.extra_metrics for x in
                 ((blank(e.extra[k].mean), blank(e.extra[k].low), blank(e.extra[k].high)) if k in e.extra
                  else ("", "", ""))]
        w.writerow([board.benchmark, "measured", e.label if e.learner or e.eval_mode else "", e.model, e.n,
                    e.errors, e.success.mean,
                    blank(e.success.low), blank(e.success.high), *extra,
                    *[e.per_type.get(t, "") for t in board.task_types], e.train_steps, e.tokens, e.device_hours,
                    e.device_kind, e.protocol_id, e.protocol_hash, ""])
    for r in board.references:
        extra = [x for k in board.extra_metrics for x in (r.values.get(k, ""), "", "")]
        w.writerow([board.benchmark, r.label, r.learner or "", r.model, "", "", r.values["success_rate"], "", "",
                    *extra, *["" for _ in board.task_types], "", "", "", "", "", "", f"{r.method}; {r.note}"])
    return buf.getvalue()


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1d2330}
h1{font-size:20px} table{border-collapse:collapse;font-size:13px} th,td{padding:4px 8px;border-bottom:1px solid #dde}
th{background:#f3f4f8;text-align:left;position:sticky;top:0} td.num{text-align:right;font-variant-numeric:tabular-nums}
td.nw{white-space:nowrap} tr.published td{color:#5b5f6b;font-style:italic;background:#fbfaf4} tr.published td.src{font-weight:600}
.tag{display:inline-block;padding:1px 6px;border-radius:8px;font-size:11px;font-style:normal}
.tag.measured{background:#dff3e4;color:#165c2b} .tag.published{background:#fdf0c9;color:#6b4e00}
.note{color:#555;font-size:12px;max-width:1100px} code{font-size:12px}
"""


def _ci_svg(mean: float, low: float | None, high: float | None, published: bool = False) -> str:
    """A 0-100 scale bar: the mean as a dot, the CI as a line."""
    x = lambda v: 4 + 1.52 * max(0.0, min(100.0, v))  # noqa: E731
    color = "#b08400" if published else "#2458b3"
    parts = ['<svg class="cibar" width="160" height="14" viewBox="0 0 160 14" role="img">',
             '<line x1="4" y1="7" x2="156" y2="7" stroke="#e3e5ec" stroke-width="6"/>']
    if low is not None and high is not None:
        parts.append(f'<line x1="{x(low):.1f}" y1="7" x2="{x(high):.1f}" y2="7" stroke="{color}" '
                     'stroke-width="2"/>')
    parts.append(f'<circle cx="{x(mean):.1f}" cy="7" r="3.5" fill="{color}"/></svg>')
    return "".join(parts)


def to_html(board: Leaderboard) -> str:
    """A self-contained page (inline CSS and SVG, no scripts, no network)."""
    e_ = html.escape
    head = ["#", "source", "learner", "model", "success % (mean ± 95% CI half-width)", "95% CI", "", "seeds",
            "errors"]
    head += [f"{k} ×100" for k in board.extra_metrics] + [f"{t} %" for t in board.task_types]
    head += ["train steps", "tokens", "cost", "protocol"]
    rows = []
    for i, e in enumerate(board.entries, 1):
        cells = [f'<td class="num">{i}</td>', '<td class="src"><span class="tag measured">measured</span></td>',
                 f"<td>{e_(e.label)}</td>", f'<td class="nw">{e_(e.model)}</td>',
                 f'<td class="num">{e_(_mean_pm(e.success))}</td>', f'<td class="num nw">{e_(_ci(e.success))}</td>',
                 f"<td>{_ci_svg(e.success.mean, e.success.low, e.success.high)}</td>",
                 f'<td class="num seeds">{e.n}</td>', f'<td class="num errors">{e.errors}</td>']
        cells += [f'<td class="num">{e_(_mean_pm(e.extra[k])) if k in e.extra else ""}</td>'
                  for k in board.extra_metrics]
        cells += [f'<td class="num">{_pct(e.per_type.get(t))}</td>' for t in board.task_types]
        cells += [f'<td class="num">{e.train_steps:g}</td>', f'<td class="num">{e.tokens:.0f}</td>',
                  f'<td class="nw">{e_(_hours(e))}</td>', f"<td><code>{e_(e.protocol_id)}#{e_(e.protocol_hash)}</code></td>"]
        rows.append(f'<tr class="measured">{"".join(cells)}</tr>')
    for r in board.references:
        v = r.values["success_rate"]
        cells = ['<td></td>', f'<td class="src"><span class="tag published">{e_(r.label)}</span></td>',
                 f"<td>{e_(r.learner or r.method)}</td>", f'<td class="nw">{e_(r.model)}</td>',
                 f'<td class="num">{v:.1f}</td>', '<td class="num">—</td>', f"<td>{_ci_svg(v, None, None, True)}</td>",
                 '<td class="num">paper</td>', '<td></td>']
        cells += [f'<td class="num">{_pct(r.values.get(k))}</td>' for k in board.extra_metrics]
        cells += ["<td></td>" for _ in board.task_types]
        cells += ["<td></td>", "<td></td>", "<td></td>", f"<td>{e_(r.note or r.method)}</td>"]
        rows.append(f'<tr class="published">{"".join(cells)}</tr>')
    notes = "".join(f'<p class="note">{e_(n)}</p>' for n in board.notes)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{e_(_title(board))}</title><style>{_CSS}</style></head>
<body><h1 id="title">{e_(_title(board))}</h1>
<p class="note">Measured rows: mean over seeds with a Student-t 95% confidence interval, clipped to [0, 100]
(no interval for a single seed). Each seed counts once (its latest record).</p>
<table id="leaderboard"><thead><tr>{"".join(f"<th>{e_(h)}</th>" for h in head)}</tr></thead>
<tbody>{"".join(rows)}</tbody></table>{notes}</body></html>
"""


def render(board: Leaderboard, fmt: str) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    return {"table": to_table, "md": to_markdown, "csv": to_csv, "html": to_html}[fmt](board)
