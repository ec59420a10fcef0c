"""``hindsight-rules``: an analyzer that needs no model.

It derives the analysis from the trajectory itself, deterministically, in hindsight: the
actions, the observations, the admissible actions the environment listed and the
outcome. It never reads the environment's expert (``Trajectory.expert_plan``,
``Step.expert_action``); that is the ``oracle`` ablation (:mod:`.oracle`).

Step findings (at most one per step, its most severe), all of them things that went
wrong:

* an action that had already failed earlier in the episode (repeated failure);
* an action the environment answered with "Nothing happens." (no effect);
* the same action again in the same situation (same observation): a loop;
* a response that broke the action format AND so had no effect (the environment
  answered "Nothing happens." to the parser's fallback); only the episode's first such
  response (the format advice is given once, not on every step of an episode whose
  responses are all unreadable), unless it is also a repeated failure. An unreadable
  response that still acted (an environment that executes the fallback text) is judged
  by what it did, not by its format.

Critical steps: the steps with a finding, the most severe first (repeated failure,
then no effect, then loops and the format), ties by step index, at most K; each gets
one imperative sentence. A step without a finding never is.

Episode skill:

* **won**: the action sequence that reached the goal (effective actions, repeats and
  no-ops dropped), then the same sequence generalised: every word the task names is
  shown as a slot (``take <mug> 1 from <fridge> 1``), so the skill reads as a recipe
  for the task type rather than for this instance;
* **lost**: the core mistake (the most frequent kind of finding), then what the
  episode covered and missed: the places visited and not visited (``go to X`` among
  the admissible actions seen), the objects taken and the ones seen but never taken,
  the admissible actions never tried (when there are at most 12), what was tried and
  what the environment answered, the actions that failed repeatedly, the step where
  the agent began to loop.

Used by tests, CPU runs and as a cheap baseline analyzer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from learners.skills.analyzer.parse import Analysis, clip_text
from opid_gym.types import Step, Trajectory

NO_EFFECT = "nothing happens"
MAX_WORKFLOW = 12
MAX_LISTED = 12
SEVERITY = {"repeated_failure": 3, "no_effect": 2, "loop": 1, "invalid": 1}
_GO = re.compile(r"^go to (.+)$")
_TAKE = re.compile(r"^(?:take|pick up) (.+?)(?: from .+)?$")
_SEEN = re.compile(r"\b(?:a|an) ([a-z]+(?: [a-z]+)? \d+)\b")
_WORD = re.compile(r"[a-z]+")


@dataclass(frozen=True)
class Finding:
    """One hindsight fact about one step."""

    step: int
    kind: str  # repeated_failure | invalid | no_effect | loop
    advice: str


def _norm(action: str) -> str:
    return " ".join(action.lower().split())


def _no_effect(step: Step) -> bool:
    return step.next_observation.strip().lower().rstrip(".! ").startswith(NO_EFFECT)


def _failed(step: Step) -> bool:
    return not step.valid or _no_effect(step)


def _q(action: str) -> str:
    return "'" + clip_text(action, 80) + "'"


def _listing(items: list[str]) -> str:
    shown = items[:MAX_LISTED] + ([f"… ({len(items) - MAX_LISTED} more)"] if len(items) > MAX_LISTED else [])
    return ", ".join(shown)


def step_findings(traj: Trajectory) -> list[Finding]:
    """Every finding of the trajectory, at most one per step (its most severe)."""
    first_invalid = next((s.index for s in traj.steps if not s.valid and _no_effect(s)), None)
    out: list[Finding] = []
    for t, step in enumerate(traj.steps):
        act = _norm(step.action)
        earlier = traj.steps[:t]
        failed_before = next((s.index for s in earlier if _norm(s.action) == act and _failed(s)), None)
        looped = next((s.index for s in earlier if _norm(s.action) == act and s.observation == step.observation),
                      None)
        found: list[Finding] = []
        if failed_before is not None:
            found.append(Finding(t, "repeated_failure",
                                 f"Do not try {_q(step.action)} again: it already failed at step {failed_before}; "
                                 "choose a different action."))
        if step.index == first_invalid:
            reason = f" ({step.parse_error})" if step.parse_error else ""
            found.append(Finding(t, "invalid", "Follow the response format exactly: the response at this step "
                                               f"could not be read as an action{reason}."))
        if step.valid and _no_effect(step):
            found.append(Finding(t, "no_effect",
                                 f"Do not use {_q(step.action)} here: the environment answered \"Nothing happens.\"; "
                                 "pick an admissible action that changes the situation."))
        if looped is not None and failed_before is None:
            found.append(Finding(t, "loop", f"Stop repeating {_q(step.action)} (already done at step {looped} in the "
                                            "same situation); move on to the next part of the task."))
        if found:
            out.append(max(found, key=lambda f: SEVERITY[f.kind]))  # first of the most severe
    return out


def critical_findings(traj: Trajectory, max_step_skills: int) -> list[Finding]:
    """The K most severe findings (ties: earlier step first), in step order."""
    ranked = sorted(step_findings(traj), key=lambda f: (-SEVERITY[f.kind], f.step))[:max_step_skills]
    return sorted(ranked, key=lambda f: f.step)


def _workflow(traj: Trajectory) -> list[str]:
    actions: list[str] = []
    for step in traj.steps:
        if not _no_effect(step) and (not actions or _norm(actions[-1]) != _norm(step.action)):
            actions.append(step.action)
    return actions


def _shorten(actions: list[str]) -> list[str]:
    if len(actions) > MAX_WORKFLOW:
        return actions[: MAX_WORKFLOW // 2] + ["…"] + actions[-(MAX_WORKFLOW // 2 - 1):]
    return actions


def generalise(action: str, task: str) -> str:
    """``action`` with every word that the task also names shown as a slot (``<mug>``)."""
    words = {w for w in _WORD.findall(task.lower()) if len(w) > 2}
    return _WORD.sub(lambda m: f"<{m.group(0)}>" if m.group(0) in words else m.group(0), _norm(action))


def loop_start(traj: Trajectory) -> tuple[int, int] | None:
    """(s, t): the first step t that repeats an earlier step s (same action, same observation)."""
    for t, step in enumerate(traj.steps):
        for s in traj.steps[:t]:
            if _norm(s.action) == _norm(step.action) and s.observation == step.observation:
                return s.index, t
    return None


def coverage(traj: Trajectory) -> dict[str, list[str]]:
    """What a trajectory covered and missed, from its actions, observations and admissible actions.

    Keys: ``visited`` / ``not_visited`` (targets of ``go to X`` that had an effect / that
    were admissible and never reached), ``taken`` / ``not_taken`` (objects taken / seen
    in observations but never taken), ``untried``
    (admissible actions never executed). Lists keep first-seen order.
    """
    admissible: list[str] = []
    for step in traj.steps:
        for a in step.info.get("admissible_actions") or []:
            if isinstance(a, str) and _norm(a) not in admissible:
                admissible.append(_norm(a))
    done = [_norm(s.action) for s in traj.steps]
    effective = [_norm(s.action) for s in traj.steps if not _failed(s)]
    visited = list(dict.fromkeys(m.group(1) for a in effective if (m := _GO.match(a))))
    places = list(dict.fromkeys(m.group(1) for a in admissible if (m := _GO.match(a))))
    taken = list(dict.fromkeys(m.group(1) for a in effective if (m := _TAKE.match(a))))
    seen = list(dict.fromkeys(m.group(1) for s in traj.steps
                              for m in _SEEN.finditer((s.observation + " " + s.next_observation).lower())))
    return {
        "visited": visited,
        "not_visited": [p for p in places if p not in visited],
        "taken": taken,
        "not_taken": [o for o in seen if o not in taken],
        "untried": [a for a in admissible if a not in done],
    }


def _kind(traj: Trajectory) -> str:
    return f"{traj.task_type} task" if traj.task_type else "task"


def _lost_details(traj: Trajectory, findings: list[Finding]) -> list[str]:
    cov = coverage(traj)
    parts: list[str] = []
    if cov["visited"] or cov["not_visited"]:
        parts.append(f"Visited: {_listing(cov['visited']) or 'nothing'}; never visited: "
                     f"{_listing(cov['not_visited']) or 'nothing'}.")
    if cov["taken"] or cov["not_taken"]:
        parts.append(f"Objects taken: {_listing(cov['taken']) or 'none'}; seen but never taken: "
                     f"{_listing(cov['not_taken']) or 'none'}.")
    if cov["untried"] and len(cov["untried"]) <= MAX_LISTED:
        parts.append(f"Admissible actions never tried: {', '.join(cov['untried'])}.")
    tried = list(dict.fromkeys(s.action for s in traj.steps if s.action.strip()))
    if tried and not traj.won:
        outcome = {s.action: s.next_observation for s in traj.steps}
        shown = [f"{_q(a)} -> \"{clip_text(outcome[a], 80)}\"" for a in tried[:4]]
        parts.append(f"Tried without success: {'; '.join(shown)}{' …' if len(tried) > 4 else ''}.")
    repeated = list(dict.fromkeys(traj.steps[f.step].action for f in findings if f.kind == "repeated_failure"))
    if repeated:
        parts.append(f"Failed again and again: {', '.join(_q(a) for a in repeated[:4])}.")
    loop = loop_start(traj)
    if loop is not None:
        parts.append(f"The agent began to loop at step {loop[0]} (step {loop[1]} repeated it in the same situation).")
    return parts


def rules_analysis(traj: Trajectory, max_step_skills: int = 5) -> Analysis:
    """The deterministic hindsight analysis of ``traj`` (see the module docstring)."""
    findings = step_findings(traj)
    counts = {k: sum(f.kind == k for f in findings) for k in SEVERITY}
    invalid = traj.invalid_steps
    n = traj.length
    summary = (f"{'Succeeded' if traj.won else 'Failed'} after {n} step(s): {invalid} unreadable "
               f"response(s), {counts['no_effect']} action(s) with no effect, "
               f"{counts['repeated_failure'] + counts['loop']} repeated action(s).")
    if traj.won:
        flow = _workflow(traj)
        shown = " -> ".join(_shorten(flow)) or "(no effective action recorded)"
        general = " -> ".join(_shorten([generalise(a, traj.task) for a in flow]))
        skill = (f"This {_kind(traj)} was solved in {n} step(s) with: {shown}. In general: {general} "
                 "(<word> = what the task names). Reuse this order of actions on similar tasks and skip actions "
                 "that have no effect.")
    else:
        mistakes = {
            "no_effect": f"{counts['no_effect']} action(s) had no effect (\"Nothing happens.\")",
            "repeated_failure": f"{counts['repeated_failure']} time(s) an action that had already failed was tried "
                                "again",
            "loop": f"{counts['loop']} time(s) the same action was repeated in the same situation",
        }
        worst = max((k for k in mistakes if counts[k]), key=lambda k: (counts[k], SEVERITY[k]), default=None)
        if worst is not None:
            core = mistakes[worst]
        elif invalid:
            core = f"{invalid} response(s) broke the action format"
        else:
            core = ("the step limit ran out before the task was completed" if traj.truncated
                    else "the episode ended before the task was completed")
        skill = " ".join([f"This {_kind(traj)} failed: {core}.", *_lost_details(traj, findings),
                          "Next time, try what was not tried instead of repeating what failed."])
    steps = {f.step: f.advice for f in critical_findings(traj, max_step_skills)}
    return Analysis(summary, clip_text(skill), steps)
