"""``opid-bench report RUN_DIR``: one self-contained HTML page per run.

The page holds:

* the run's config, final summary, protocol and budget;
* training curves from ``metrics.jsonl`` (success, episode length, invalid-action
  rate, loss terms, skill-advantage statistics, optimiser statistics, phase times),
  with the periodic evaluations' success drawn over the rollout success;
* per-task-type success bars for the evaluations;
* a trajectory viewer: pick a source (an evaluation or a training step's rollouts), a
  trajectory and a step, and read the prompt, the response, the parsed action, the
  observation and the reward; for learners that annotate steps (OPID) also the routed
  skill and the per-token skill advantage as a heat map over the response tokens.

Plots are matplotlib SVG written inline (text kept as text), the viewer is inline
JavaScript over an inline JSON block: the page needs no network and no other file.
The viewer reads its position from the URL fragment
(``report.html#src=1&traj=0&step=2``, 0-based) and writes what it shows into
``#viewer-status``, so a headless browser can check it.
"""

from __future__ import annotations

import html
import io
import json
import math
import re
from pathlib import Path
from typing import Any, Sequence

from benchmarks.runfolder import RunFolder, load_run, read_jsonl

MAX_TRAJECTORIES = 12
"""Trajectories per viewer source (the page must stay small enough to open)."""
MAX_ROLLOUT_STEPS = 4
"""Training steps whose rollouts the viewer offers (first, last and evenly between)."""
MAX_TEXT = 20_000
"""Characters kept of one prompt / observation in the viewer."""

_CURVES: list[tuple[str, str, Any]] = [
    # (title, y label, selector of metric keys)
    ("Success rate", "success", ["rollout/success_rate"]),
    ("Episode length", "steps", ["rollout/episode_length"]),
    ("Invalid-action rate", "invalid / steps", ["rollout/invalid_rate"]),
    ("Loss terms", "loss", lambda k: k.startswith("loss/")),
    ("Skill advantage", "value", lambda k: "skill_adv" in k or k.startswith("opid/")),
    ("Optimisation", "value", ["kl", "clip_frac", "grad_norm"]),
    ("Time per phase", "seconds", lambda k: k.startswith("time/")),
]


def _import_pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("reports need matplotlib: pip install 'opid-gym[report]'") from exc
    return plt


def _svg(fig: Any, salt: str) -> str:
    plt = _import_pyplot()
    with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}):
        buf = io.StringIO()
        fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    # matplotlib numbers its element ids per figure (figure_1, axes_1, ...): make them
    # unique within the page, with every in-SVG reference to them
    text = re.sub(r'(\sid=")([^"]+)"', lambda m: f'{m.group(1)}{salt}-{m.group(2)}"', text)
    text = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{salt}-{m.group(1)})", text)
    return re.sub(r'(href=")#([^"]+)"', lambda m: f'{m.group(1)}#{salt}-{m.group(2)}"', text)


def _keys(metrics: Sequence[dict[str, Any]], selector: Any) -> list[str]:
    present = sorted({k for row in metrics for k, v in row.items() if isinstance(v, (int, float))
                      and not isinstance(v, bool)})
    if callable(selector):
        return [k for k in present if selector(k)]
    return [k for k in selector if k in present]


MAX_SERIES = 8
"""Most series one chart draws (and lists in its legend); more are split over charts."""
_KINDS = (  # how a chart with too many series is split: (title suffix, test on the key), first match wins
    ("advantage", lambda k: "adv" in k or "delta" in k),
    ("fractions", lambda k: k.endswith(("_frac", "_rate"))),
    ("seconds", lambda k: "seconds" in k or k.startswith("time")),
    ("counts", lambda k: True),
)


def curve_groups(metrics: Sequence[dict[str, Any]]) -> list[tuple[str, str, list[str]]]:
    """(title, y label, keys) of every chart: the :data:`_CURVES` selections, each with at
    most :data:`MAX_SERIES` keys (a larger one is split by kind of value, then in chunks)."""
    out = []
    for title, ylabel, selector in _CURVES:
        keys = _keys(metrics, selector)
        if len(keys) <= MAX_SERIES:
            out.append((title, ylabel, keys))
            continue
        kinds: dict[str, list[str]] = {}
        for k in keys:
            kinds.setdefault(next(name for name, test in _KINDS if test(k)), []).append(k)
        for kind, members in kinds.items():
            parts = math.ceil(len(members) / MAX_SERIES)
            per = math.ceil(len(members) / parts)
            for j in range(parts):
                part = f" {j + 1}/{parts}" if parts > 1 else ""
                name = f"{title}{part}" if kind == "advantage" else f"{title}: {kind}{part}"
                out.append((name, ylabel if kind in ("advantage", "counts") else kind, members[j * per:(j + 1) * per]))
    return out


def curve_figures(run: RunFolder) -> list[tuple[str, str]]:
    """(title, inline SVG) for every curve with data."""
    if not run.metrics:
        return []
    plt = _import_pyplot()
    out = []
    evals = [(e.step, e.summary.get("success_rate")) for e in run.evals.values() if e.step is not None]
    for i, (title, ylabel, keys) in enumerate(curve_groups(run.metrics)):
        extra_eval = title == "Success rate" and evals
        if not keys and not extra_eval:
            continue
        fig, ax = plt.subplots(figsize=(4.6, 2.9))
        for k in keys:
            pts = [(row["step"], row[k]) for row in run.metrics if k in row and "step" in row
                   and isinstance(row[k], (int, float)) and math.isfinite(row[k])]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, marker="." if len(pts) < 40 else None, linewidth=1.4, label=k)
        if extra_eval:
            xs, ys = zip(*[(s, v) for s, v in evals if v is not None]) if any(v is not None for _, v in evals) else ((), ())
            if xs:
                ax.plot(xs, ys, "s--", color="#c0392b", markersize=5, linewidth=1, label="eval success")
        ax.set_title(title, fontsize=11)
        ax.set_xlabel("training step")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if len(ax.get_lines()) > 0:  # below the axes, never over the curves
            ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=2, frameon=False)
        out.append((title, _svg(fig, f"curve{i}")))
    return out


def type_bars_figure(run: RunFolder, max_evals: int = 4) -> str | None:
    """Grouped bars: success per task type for the last ``max_evals`` evaluations."""
    evals = list(run.evals.values())[-max_evals:]
    types = sorted({t for e in evals for t in (e.summary.get("per_type") or {})})
    if not types:
        return None
    plt = _import_pyplot()
    fig, ax = plt.subplots(figsize=(max(4.6, 1.1 * len(types) + 2), 3.0))
    width = 0.8 / len(evals)
    for j, e in enumerate(evals):
        per = e.summary.get("per_type") or {}
        vals = [100 * float(per.get(t, {}).get("success_rate", 0.0)) for t in types]
        xs = [i + (j - (len(evals) - 1) / 2) * width for i in range(len(types))]
        bars = ax.bar(xs, vals, width=width * 0.95, label=e.tag)
        for b, t in zip(bars, types):
            n = int(per.get(t, {}).get("episodes", 0))
            ax.annotate(f"n={n}", (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom",
                        fontsize=6)
    ax.set_xticks(range(len(types)), types)
    ax.set_ylabel("success %")
    ax.set_ylim(0, 105)
    ax.set_title("Success per task type", fontsize=11)
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    return _svg(fig, "typebars")


# -------------------------------------------------------------------- viewer data
def _clip(text: Any) -> str:
    s = "" if text is None else str(text)
    return s if len(s) <= MAX_TEXT else s[:MAX_TEXT] + f"\n… [{len(s) - MAX_TEXT} more characters]"


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, list):
        if len(prompt) == 1 and isinstance(prompt[0], dict):
            return str(prompt[0].get("content", ""))
        return "\n\n".join(f"[{m.get('role', '?')}]\n{m.get('content', '')}" for m in prompt if isinstance(m, dict))
    return str(prompt or "")


def viewer_trajectory(t: dict[str, Any]) -> dict[str, Any]:
    """The compact form of one trajectory dict (``Trajectory.to_dict()`` + annotations)."""
    ann = t.get("annotations") or {}
    steps = []
    for s in t.get("steps", []):
        a = ann.get(str(s.get("index"))) or ann.get(s.get("index")) or {}
        step = {
            "prompt": _clip(_prompt_text(s.get("prompt"))), "response": _clip(s.get("response")),
            "action": s.get("action", ""), "valid": bool(s.get("valid", True)), "parse_error": s.get("parse_error"),
            "obs": _clip(s.get("next_observation")), "reward": s.get("reward", 0.0),
            "terminated": bool(s.get("terminated")), "truncated": bool(s.get("truncated")),
        }
        if a:
            step["ann"] = a
        steps.append(step)
    return {
        "id": t.get("traj_id", ""), "task": t.get("task", ""), "task_type": t.get("task_type", ""),
        "task_id": t.get("task_id", ""), "won": bool(t.get("won")), "error": t.get("error"),
        "reward": sum(float(s.get("reward", 0.0)) for s in t.get("steps", [])), "steps": steps,
    }


def _spread(items: Sequence[Any], k: int) -> list[Any]:
    """``k`` items evenly spread over ``items`` (first and last included)."""
    if len(items) <= k:
        return list(items)
    if k == 1:
        return [items[-1]]
    return [items[round(i * (len(items) - 1) / (k - 1))] for i in range(k)]


def viewer_sources(run: RunFolder, max_trajectories: int = MAX_TRAJECTORIES,
                   max_rollout_steps: int = MAX_ROLLOUT_STEPS) -> list[dict[str, Any]]:
    sources = []
    for e in reversed(list(run.evals.values())[-2:]):
        trajs = e.trajectories()
        sources.append({"name": f"eval: {e.tag}", "total": len(trajs),
                        "trajs": [viewer_trajectory(t) for t in trajs[:max_trajectories]]})
    for step, path in _spread(run.rollouts, max_rollout_steps):
        trajs = []
        total = 0
        for t in read_jsonl(path):
            total += 1
            if len(trajs) < max_trajectories:
                trajs.append(viewer_trajectory(t))
        sources.append({"name": f"rollouts: step {step}", "total": total, "trajs": trajs})
    return sources


# --------------------------------------------------------------------------- page
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;background:#fafbfc}
header{background:#1f3b66;color:#fff;padding:14px 24px} header h1{margin:0;font-size:20px}
header .sub{opacity:.85;font-size:13px;margin-top:4px}
main{padding:8px 24px 40px} h2{font-size:17px;border-bottom:1px solid #dde;padding-bottom:4px;margin-top:28px}
.kv{border-collapse:collapse;font-size:13px} .kv td{padding:2px 10px 2px 0;vertical-align:top} .kv td:first-child{color:#666}
.grid{display:flex;flex-wrap:wrap;gap:12px} .plot{background:#fff;border:1px solid #e3e5ec;border-radius:6px;padding:6px}
.plot svg{max-width:100%;height:auto}
#viewer{background:#fff;border:1px solid #e3e5ec;border-radius:6px;padding:12px}
.controls{display:flex;flex-wrap:wrap;gap:10px;align-items:center;margin-bottom:8px}
.controls select{max-width:460px} .vbody{display:flex;gap:14px}
.steplist{list-style:none;padding:0;margin:0;min-width:230px;max-width:280px;max-height:640px;overflow:auto;font-size:12px}
.steplist li{padding:3px 6px;border-radius:4px;cursor:pointer;border-left:3px solid transparent}
.steplist li:hover{background:#eef2fa} .steplist li.current{background:#dbe6fb;border-left-color:#2458b3}
.steplist li.invalid{color:#b03a2e} .steplist li.win{font-weight:600;color:#1e7b34}
.stepview{flex:1;min-width:0} .stepview h4{margin:10px 0 4px;font-size:13px;color:#444}
pre{white-space:pre-wrap;word-wrap:break-word;background:#f5f6f8;border:1px solid #e6e8ee;border-radius:4px;padding:8px;
font-size:12px;max-height:360px;overflow:auto;margin:0}
.response{white-space:pre-wrap;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;background:#f5f6f8;
border:1px solid #e6e8ee;border-radius:4px;padding:8px;line-height:1.7}
.tok{border-radius:2px} .facts{border-collapse:collapse;font-size:13px} .facts td{padding:2px 12px 2px 0}
.facts td:first-child{color:#666} .badge{display:inline-block;padding:1px 7px;border-radius:8px;font-size:11px}
.ok{background:#dff3e4;color:#165c2b} .bad{background:#fbe0dd;color:#8a2318} .skill{background:#efe3fb;color:#5a2a8a}
.legend{font-size:11px;color:#555;margin-top:4px} .legend span{padding:0 6px;margin-right:4px;border-radius:2px}
#viewer-status{font-size:11px;color:#777;margin-top:8px}
"""

_JS = r"""
(function(){
  const data = JSON.parse(document.getElementById('viewer-data').textContent);
  const $ = id => document.getElementById(id);
  const srcSel = $('v-source'), trajSel = $('v-traj');
  let cur = {src:0, traj:0, step:0};
  function parseHash(){
    const out = {};
    (location.hash||'').replace(/^#/,'').split('&').forEach(kv => {
      const [k,v] = kv.split('='); if (k && v !== undefined && /^\d+$/.test(v)) out[k] = parseInt(v,10);
    });
    return out;
  }
  function clamp(x, n){ return Math.max(0, Math.min(n-1, x|0)); }
  function color(v, scale){
    if (!scale) return 'transparent';
    const a = Math.min(1, Math.abs(v)/scale) * 0.75;
    return v >= 0 ? `rgba(34,139,74,${a.toFixed(3)})` : `rgba(200,45,40,${a.toFixed(3)})`;
  }
  function fill(sel, items){
    sel.innerHTML = '';
    items.forEach((label,i) => { const o = document.createElement('option'); o.value = i; o.textContent = label; sel.appendChild(o); });
  }
  function renderResponse(step){
    const box = $('v-response'); box.innerHTML = ''; $('v-legend').textContent = '';
    const ann = step.ann || {};
    const toks = ann.response_tokens, adv = ann.skill_adv;
    if (Array.isArray(toks) && Array.isArray(adv) && toks.length === adv.length && toks.length > 0){
      const scale = Math.max(...adv.map(x => Math.abs(+x) || 0));
      toks.forEach((t,i) => {
        const s = document.createElement('span'); s.className = 'tok'; s.textContent = t;
        s.dataset.adv = (+adv[i]).toFixed(4); s.title = `token ${i}: skill advantage ${(+adv[i]).toFixed(4)}`;
        s.style.background = color(+adv[i], scale); box.appendChild(s);
      });
      $('v-legend').innerHTML = '<span style="background:rgba(34,139,74,.6)">+</span>positive skill advantage ' +
        '<span style="background:rgba(200,45,40,.6)">&minus;</span>negative (shade: |value| / max |value| = ' + scale.toFixed(3) + ')';
      return toks.length;
    }
    box.textContent = step.response;
    if (Array.isArray(adv)) $('v-legend').textContent = `per-token skill advantage: ${adv.length} values (no decoded tokens to draw them on)`;
    return 0;
  }
  function render(){
    const src = data[cur.src]; const traj = src.trajs[cur.traj];
    srcSel.value = cur.src; trajSel.value = cur.traj;
    const list = $('v-steps'); list.innerHTML = '';
    traj.steps.forEach((s,i) => {
      const li = document.createElement('li');
      li.textContent = `${i+1}. ${s.action}` + (s.reward ? `  (r=${s.reward})` : '');
      if (!s.valid) li.classList.add('invalid');
      if (s.terminated && traj.won && i === traj.steps.length-1) li.classList.add('win');
      if (i === cur.step) li.classList.add('current');
      li.onclick = () => go({step:i});
      list.appendChild(li);
    });
    const meta = $('v-meta');
    meta.innerHTML = '';
    const add = (k, v) => { const tr = document.createElement('tr'); const a = document.createElement('td'); a.textContent = k;
      const b = document.createElement('td'); if (v instanceof Node) b.appendChild(v); else b.textContent = v; tr.appendChild(a); tr.appendChild(b); meta.appendChild(tr); };
    const badge = (txt, cls) => { const s = document.createElement('span'); s.className = 'badge ' + cls; s.textContent = txt; return s; };
    add('task', `${traj.task} [${traj.task_type}]`);
    add('outcome', traj.error ? badge('error: ' + traj.error, 'bad') : badge(traj.won ? 'success' : 'failure', traj.won ? 'ok' : 'bad'));
    add('trajectory', `${traj.id} — ${traj.steps.length} steps, total reward ${traj.reward}`);
    if (!traj.steps.length){ $('v-stepno').textContent = 'no steps'; status(src, traj, 0); return; }
    const step = traj.steps[cur.step];
    $('v-stepno').textContent = `step ${cur.step+1} / ${traj.steps.length}`;
    $('v-prompt').textContent = step.prompt;
    const ntok = renderResponse(step);
    const facts = $('v-facts'); facts.innerHTML = '';
    const fact = (k, v) => { const tr = document.createElement('tr'); tr.innerHTML = '<td></td><td></td>';
      tr.children[0].textContent = k; if (v instanceof Node) tr.children[1].appendChild(v); else tr.children[1].textContent = v; facts.appendChild(tr); };
    const act = document.createElement('code'); act.id = 'v-action'; act.textContent = step.action;
    fact('parsed action', act);
    fact('format', step.valid ? badge('valid', 'ok') : badge('invalid' + (step.parse_error ? ': ' + step.parse_error : ''), 'bad'));
    fact('reward', String(step.reward));
    fact('episode end', step.terminated ? 'terminated' : (step.truncated ? 'truncated (step limit)' : '—'));
    const ann = step.ann || {};
    if (ann.routed_skill !== undefined && ann.routed_skill !== null){
      const sk = badge(typeof ann.routed_skill === 'string' ? ann.routed_skill : JSON.stringify(ann.routed_skill), 'skill');
      sk.id = 'v-skill'; fact('routed skill', sk);
    }
    Object.keys(ann).filter(k => !['routed_skill','skill_adv','response_tokens'].includes(k)).forEach(k =>
      fact(k, typeof ann[k] === 'string' ? ann[k] : JSON.stringify(ann[k])));
    $('v-obs').textContent = step.obs;
    status(src, traj, ntok);
  }
  function status(src, traj, ntok){
    const v = $('viewer'); v.dataset.state = 'ready'; v.dataset.src = cur.src; v.dataset.traj = cur.traj; v.dataset.step = cur.step;
    $('viewer-status').textContent = `viewer ok: source "${src.name}", trajectory ${traj.id}, step ${cur.step+1} of ${traj.steps.length}; ` +
      `heat-map tokens: ${ntok}; ${src.trajs.length} of ${src.total} trajectories of this source embedded`;
  }
  function go(change, fromHash){
    const next = Object.assign({}, cur, change);
    next.src = clamp(next.src, data.length);
    if (change.src !== undefined && change.src !== cur.src && change.traj === undefined) next.traj = 0;
    const src = data[next.src];
    next.traj = clamp(next.traj, src.trajs.length);
    if ((change.traj !== undefined && change.traj !== cur.traj || change.src !== undefined && change.src !== cur.src) && change.step === undefined) next.step = 0;
    next.step = clamp(next.step, Math.max(1, src.trajs[next.traj].steps.length));
    const srcChanged = next.src !== cur.src || !trajSel.options.length;
    cur = next;
    if (srcChanged) fill(trajSel, src.trajs.map(t => `${t.won ? '✓' : '✗'} ${t.task_type} — ${t.task} (${t.steps.length} steps) [${t.id}]`));
    const h = `#src=${cur.src}&traj=${cur.traj}&step=${cur.step}`;
    if (!fromHash && location.hash !== h) history.replaceState(null, '', h);
    render();
  }
  const usable = data.map((s,i) => [s,i]).filter(([s]) => s.trajs.length);
  if (!usable.length){ $('viewer-status').textContent = 'viewer ok: no trajectories in this run folder'; $('viewer').dataset.state = 'empty'; return; }
  fill(srcSel, data.map(s => `${s.name} (${s.trajs.length}${s.total > s.trajs.length ? ' of ' + s.total : ''})`));
  srcSel.onchange = () => go({src: +srcSel.value});
  trajSel.onchange = () => go({traj: +trajSel.value});
  $('v-prev').onclick = () => go({step: cur.step - 1});
  $('v-next').onclick = () => go({step: cur.step + 1});
  document.addEventListener('keydown', e => { if (e.key === 'ArrowRight') go({step: cur.step+1}); if (e.key === 'ArrowLeft') go({step: cur.step-1}); });
  window.addEventListener('hashchange', () => go(parseHash(), true));
  const h = parseHash();
  cur = {src: -1, traj: 0, step: 0};
  go({src: h.src !== undefined ? h.src : usable[0][1], traj: h.traj || 0, step: h.step || 0}, true);
})();
"""


def _kv_table(items: Sequence[tuple[str, Any]], table_id: str = "") -> str:
    rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>" for k, v in items)
    return f'<table class="kv"{f" id={table_id!r}" if table_id else ""}>{rows}</table>'


def _flatten(d: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(d, dict):
        out = []
        for k, v in d.items():
            out += _flatten(v, f"{prefix}{k}.")
        return out
    return [(prefix[:-1], json.dumps(d) if isinstance(d, (list, dict)) else d)]


def _overview(run: RunFolder) -> str:
    parts = []
    try:
        ev = run.main_eval()
    except ValueError:
        ev = None
    if ev is not None:
        s = ev.summary
        items = [("evaluation", ev.tag), ("benchmark", s.get("benchmark")),
                 ("protocol", f"{s.get('protocol_id')}#{s.get('protocol_hash')}"),
                 ("agent", s.get("agent")), ("episodes", s.get("episodes")),
                 ("success", f"{100 * float(s.get('success_rate', 0)):.1f}%"),
                 ("mean length", f"{float(s.get('mean_length', 0)):.2f}"),
                 ("invalid-action rate", f"{float(s.get('invalid_rate', 0)):.3f}"), ("errors", s.get("errors"))]
        items += [(k, f"{v:.4g}") for k, v in (s.get("metrics") or {}).items()]
        parts.append(_kv_table(items, "overview"))
    if run.summary and run.summary is not (ev.summary if ev else None):
        # the run's own numbers (budget, time); the final eval's are shown above
        from opid_gym.evaluate import EvalSummary

        shown = set(EvalSummary.__dataclass_fields__) - {"seconds", "env_steps", "generated_tokens"}
        budget = {k: v for k, v in run.summary.items() if k not in shown and not isinstance(v, list)}
        if budget:
            parts.append("<h4>Run summary</h4>" + _kv_table(_flatten(budget), "run-summary"))
    if run.config:
        parts.append(f"<details><summary>config.json ({len(_flatten(run.config))} settings)</summary>"
                     f"{_kv_table(_flatten(run.config), 'config')}</details>")
    return "".join(parts) or "<p>No summary found.</p>"


def build_report(run_dir: str | Path, *, max_trajectories: int = MAX_TRAJECTORIES,
                 max_rollout_steps: int = MAX_ROLLOUT_STEPS) -> str:
    """The HTML page of ``run_dir`` as a string."""
    run = load_run(run_dir)
    curves = curve_figures(run)
    bars = type_bars_figure(run)
    sources = viewer_sources(run, max_trajectories, max_rollout_steps)
    e = html.escape
    title = f"opid-gym report: {run.name}"
    curve_html = ("".join(f'<div class="plot" data-title="{e(t)}">{svg}</div>' for t, svg in curves)
                  if curves else "<p>No metrics.jsonl: no training curves (an evaluation-only folder).</p>")
    bar_html = f'<div class="plot" id="type-bars">{bars}</div>' if bars else "<p>No per-task-type results.</p>"
    data_json = json.dumps(sources, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title><style>{_CSS}</style></head>
<body>
<header><h1>{e(title)}</h1><div class="sub">{e(str(run.path))}</div></header>
<main>
<h2>Overview</h2>{_overview(run)}
<h2>Training curves</h2><div class="grid" id="curves">{curve_html}</div>
<h2>Success per task type</h2>{bar_html}
<h2>Trajectory viewer</h2>
<section id="viewer" data-state="loading">
<div class="controls">
<label>source <select id="v-source"></select></label>
<label>trajectory <select id="v-traj"></select></label>
<button id="v-prev" type="button">&#9664; step</button><span id="v-stepno"></span>
<button id="v-next" type="button">step &#9654;</button>
</div>
<table class="facts" id="v-meta"></table>
<div class="vbody"><ol class="steplist" id="v-steps"></ol>
<div class="stepview">
<h4>Prompt</h4><pre id="v-prompt"></pre>
<h4>Response</h4><div class="response" id="v-response"></div><div class="legend" id="v-legend"></div>
<h4>Step</h4><table class="facts" id="v-facts"></table>
<h4>Observation</h4><pre id="v-obs"></pre>
</div></div>
<p id="viewer-status">viewer did not run (JavaScript disabled?)</p>
</section>
</main>
<script type="application/json" id="viewer-data">{data_json}</script>
<script>{_JS}</script>
</body></html>
"""


def write_report(run_dir: str | Path, out: str | Path | None = None, **options: Any) -> Path:
    """Write the report of ``run_dir`` (default ``<run_dir>/report.html``); return its path."""
    out_path = Path(out) if out is not None else Path(run_dir) / "report.html"
    page = build_report(run_dir, **options)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out_path)
    return out_path
