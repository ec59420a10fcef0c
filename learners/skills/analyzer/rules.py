"""``hindsight-rules``: an analyzer that needs no model.

It derives the analysis from what the environment knows in hindsight, deterministically:

* a response that broke the action format (``Step.valid`` False, ``Step.parse_error``);
* an action the environment answered with "Nothing happens." (no effect);
* an action that had already failed earlier in the episode (repeated failure);
* the same action again in the same situation (same observation): a loop;
* the first step where the trajectory left the expert plan, when the environment has
  one (``Trajectory.expert_plan``, e.g. ALFWorld's walkthrough from the start state);
* the final outcome and the task type.

Critical steps: the steps with such a finding, the most severe first (repeated failure
and invalid format, then no effect and the plan deviation, then loops), ties by step
index, at most K; each gets one imperative sentence. The episode skill is the workflow
that worked (success: the effective actions in order) or the core mistake and its
warning signs (failure: the most frequent kind of finding, plus the expert plan when
known). Used by tests, CPU runs and as a cheap baseline analyzer.
"""

from __future__ import annotations

from dataclasses import dataclass

from learners.skills.analyzer.parse import Analysis, clip_text
from opid_gym.types import Step, Trajectory

NO_EFFECT = "nothing happens"
MAX_WORKFLOW = 12
SEVERITY = {"repeated_failure": 3, "invalid": 3, "no_effect": 2, "deviation": 2, "loop": 1}


@dataclass(frozen=True)
class Finding:
    """One hindsight fact about one step."""

    step: int
    kind: str  # repeated_failure | invalid | no_effect | deviation | loop
    advice: str


def _norm(action: str) -> str:
    return " ".join(action.lower().split())


def _no_effect(step: Step) -> bool:
    return step.next_observation.strip().lower().rstrip(".! ").startswith(NO_EFFECT)


def _failed(step: Step) -> bool:
    return not step.valid or _no_effect(step)


def _q(action: str) -> str:
    return "'" + clip_text(action, 80) + "'"


def step_findings(traj: Trajectory) -> list[Finding]:
    """Every finding of the trajectory, at most one per step (its most severe)."""
    plan = traj.expert_plan or []
    deviation = next((i for i, s in enumerate(traj.steps) if i < len(plan) and _norm(s.action) != _norm(plan[i])),
                     None)
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
        if not step.valid:
            reason = f" ({step.parse_error})" if step.parse_error else ""
            found.append(Finding(t, "invalid", "Follow the response format exactly: the response at this step "
                                               f"could not be read as an action{reason}."))
        if step.valid and _no_effect(step):
            found.append(Finding(t, "no_effect",
                                 f"Do not use {_q(step.action)} here: the environment answered \"Nothing happens.\"; "
                                 "pick an admissible action that changes the situation."))
        if t == deviation:
            found.append(Finding(t, "deviation",
                                 f"Do {_q(plan[t])} here instead of {_q(step.action)}: it is the next move of an "
                                 "efficient plan for this task."))
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
        if step.valid and not _no_effect(step) and (not actions or _norm(actions[-1]) != _norm(step.action)):
            actions.append(step.action)
    if len(actions) > MAX_WORKFLOW:
        actions = actions[: MAX_WORKFLOW // 2] + ["…"] + actions[-(MAX_WORKFLOW // 2 - 1):]
    return actions


def _kind(traj: Trajectory) -> str:
    return f"{traj.task_type} task" if traj.task_type else "task"


def rules_analysis(traj: Trajectory, max_step_skills: int = 5) -> Analysis:
    """The deterministic hindsight analysis of ``traj`` (see the module docstring)."""
    findings = step_findings(traj)
    counts = {k: sum(f.kind == k for f in findings) for k in SEVERITY}
    n = traj.length
    summary = (f"{'Succeeded' if traj.won else 'Failed'} after {n} step(s): {counts['invalid']} unreadable "
               f"response(s), {counts['no_effect']} action(s) with no effect, "
               f"{counts['repeated_failure'] + counts['loop']} repeated action(s).")
    plan = traj.expert_plan or []
    if traj.won:
        flow = " -> ".join(_workflow(traj)) or "(no effective action recorded)"
        skill = (f"This {_kind(traj)} was solved in {n} step(s). Workflow that worked: {flow}. Reuse this order of "
                 "actions on similar tasks and skip actions that have no effect.")
    else:
        mistakes = {
            "invalid": f"{counts['invalid']} response(s) broke the action format, so the environment could not act",
            "no_effect": f"{counts['no_effect']} action(s) had no effect (\"Nothing happens.\")",
            "repeated_failure": f"{counts['repeated_failure']} time(s) an action that had already failed was tried "
                                "again",
            "loop": f"{counts['loop']} time(s) the same action was repeated in the same situation",
        }
        deviation = next((f for f in findings if f.kind == "deviation"), None)
        worst = max((k for k in mistakes if counts[k]), key=lambda k: (counts[k], SEVERITY[k]), default=None)
        if worst is not None:
            core = mistakes[worst]
        elif deviation is not None:
            core = f"the episode left the efficient plan at step {deviation.step}"
        else:
            core = ("the step limit ran out before the task was completed" if traj.truncated
                    else "the episode ended before the task was completed")
        skill = (f"This {_kind(traj)} failed: {core}. Warning signs: a response the environment cannot read as an "
                 "action, \"Nothing happens.\", or the same action twice in the same situation; when you see one, "
                 "change your plan instead of repeating it.")
        if plan:
            shown = plan if len(plan) <= MAX_WORKFLOW else plan[:MAX_WORKFLOW] + ["…"]
            skill += f" An efficient plan for this task: {' -> '.join(shown)}."
    steps = {f.step: f.advice for f in critical_findings(traj, max_step_skills)}
    return Analysis(summary, clip_text(skill), steps)
